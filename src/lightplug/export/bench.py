"""Timing exported files against eager PyTorch on the same machine: latency at batch 1 (p50, p95) and
throughput at a larger batch (samples/s).

Made to survive a noisy, shared CPU: every backend is warmed up first; then the backends are timed in
turns, several rounds each (so a burst of load from another process hits all of them, not one), and
the statistics are taken over all rounds (median and 95th percentile of single calls; throughput from
the median time of one batch). Torch's thread count is left as it is, and onnxruntime gets the same
number of intra-op threads (see :func:`lightplug.export.verify.onnx_runner`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["benchmark", "time_calls"]


def time_calls(fn: Callable[[Any], Any], x: Any, seconds: float, min_calls: int = 3, max_calls: int = 5000) -> list[float]:
    """Call ``fn(x)`` until ``seconds`` have passed (at least ``min_calls`` times); return each call's seconds."""
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_calls or (time.perf_counter() - start < seconds and len(times) < max_calls):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return times


def _batch(example: Any, size: int, seed: int) -> Any:
    import torch

    gen = torch.Generator().manual_seed(seed)
    shape = (size, *example.shape[1:])
    if example.dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(example.dtype)
    return torch.zeros(shape, dtype=example.dtype)


def benchmark(runners: dict[str, Callable[[Any], Any]], example: Any, throughput_batch: int = 32, seconds: float = 1.0,
              rounds: int = 3, latency_batch: int = 1, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Time each runner on the same inputs.

    Args:
        runners: name -> function taking a torch batch (eager PyTorch, onnxruntime, TorchScript).
        example: a batch whose shape (after the batch axis) and dtype the timed inputs take.
        throughput_batch: the batch size for throughput.
        seconds: timing budget per runner, split over rounds and the two measurements (plus warm-up).
        rounds: how many turns each runner gets.
        latency_batch: the batch size for latency (1, or the fixed batch of a static export).

    Returns:
        name -> ``latency_p50_ms``, ``latency_p95_ms``, ``latency_batch``, ``latency_calls``, ``throughput``
        (samples/s), ``throughput_batch``, ``throughput_calls``.
    """
    import numpy as np

    x1, xb = _batch(example, latency_batch, seed), _batch(example, throughput_batch, seed + 1)
    for fn in runners.values():  # warm-up: allocations, lazy initialisation, caches
        time_calls(fn, x1, seconds / 20, min_calls=5)
        time_calls(fn, xb, seconds / 20, min_calls=3)
    chunk = seconds / (2 * rounds)
    lat: dict[str, list[float]] = {name: [] for name in runners}
    thr: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, fn in runners.items():
            lat[name] += time_calls(fn, x1, chunk, min_calls=5)
            thr[name] += time_calls(fn, xb, chunk, min_calls=2)
    out = {}
    for name in runners:
        ms = np.asarray(lat[name]) * 1e3
        out[name] = {
            "latency_p50_ms": float(np.percentile(ms, 50)),
            "latency_p95_ms": float(np.percentile(ms, 95)),
            "latency_batch": latency_batch,
            "latency_calls": len(ms),
            "throughput": float(throughput_batch / np.median(thr[name])),
            "throughput_batch": throughput_batch,
            "throughput_calls": len(thr[name]),
        }
    return out
