"""How far the learned metric of each threshold test spreads over seeds and thread counts (issue 26).

Every test that asserts a learned metric against a threshold trains from scratch for a few hundred steps.
Where such a run lands depends on the seed, and through floating-point summation order on the CPU, its
kernels and the thread count. This script runs each test's exact command with several seeds and with 1 and
2 threads, and prints the best value of the metric the test asserts on (and the epoch-1 value), so that a
threshold can be set far inside the distribution and its comment can state the spread.

    python benchmarks/metric_spread.py                       # every case, seeds 42 (the tests' own) 1 2, threads 1 2
    python benchmarks/metric_spread.py yolo fcos --seeds 0 1 2 3 --threads 1
    python benchmarks/metric_spread.py --json benchmarks/results/metric_spread.json

The command line of a case is the test's own (see CASES): change the test and the case together.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]

#: name -> (the test, the metric it asserts on, the overrides of its `lightplug train` command)
CASES: dict[str, tuple[str, str, list[str]]] = {
    "readme_mlp": ("tests/test_train.py (README command)", "val/acc", ["model=mlp", "+preset=easy"]),
    "yolo": ("example_plugins/lightplug-ultralytics/tests/test_yolo.py::test_yolo_learns_shapes", "val/map_50",
             ["model=yolo", "data=shapes", "data.task=detection", "data.image_size=96", "data.num_samples=1000", "data.val_fraction=0.2",
              "data.test_fraction=0.0", "data.batch_size=16", "trainer.max_epochs=3", "optimizer.lr=2e-3"]),
    "fcos": ("example_plugins/lightplug-tvdet/tests/test_tvdet.py::test_fcos_learns_shapes_through_lightplug_train", "val/map_50",
             ["model=fcos", "data=shapes", "data.task=detection", "data.image_size=64", "data.num_samples=2500", "data.val_fraction=0.1",
              "data.test_fraction=0.02", "data.batch_size=16", "optimizer.lr=2e-3", "trainer.max_epochs=2"]),
    "unet": ("example_plugins/lightplug-unet/tests/test_unet.py::test_unet_learns_shapes", "val/miou",
             ["model=unet", "data=shapes", "data.num_samples=2000", "data.image_size=24", "data.val_fraction=0.15", "data.test_fraction=0.05",
              "data.batch_size=8", "optimizer.lr=2e-3", "scheduler=cosine", "trainer.max_epochs=5"]),
    "simple_cnn": ("example_plugins/lightplug-convnets/tests/test_convnets.py", "val/acc", ["model=simple_cnn", "+preset=easy"]),
}


def run_case(overrides: list[str], seed: int, threads: int, metric: str) -> dict[str, object]:
    """One training run in a temporary folder; the metric per epoch, the loss at the first and last logged step."""
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": str(threads)}
        cmd = [sys.executable, "-m", "lightplug", "train", *overrides, f"seed={seed}", f"threads={threads}", *QUIET, f"hydra.run.dir={run}"]
        started = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=folder, timeout=3600)
        seconds = time.perf_counter() - started
        if out.returncode != 0:
            return {"seed": seed, "threads": threads, "error": out.stderr.strip().splitlines()[-1:], "seconds": seconds}
        rows = list(csv.DictReader((run / "metrics.csv").open()))
        values = [float(r[metric]) for r in rows if r.get(metric)]
        losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
        return {"seed": seed, "threads": threads, "per_epoch": [round(v, 4) for v in values], "best": max(values) if values else None,
                "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None, "seconds": round(seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    args = parser.parse_args()
    report: dict[str, object] = {"load_average_at_start": os.getloadavg(), "cpu_count": os.cpu_count(), "cases": {}}
    for name in args.cases or list(CASES):
        test, metric, overrides = CASES[name]
        runs = [run_case(overrides, seed, threads, metric) for threads in args.threads for seed in args.seeds]
        bests = [float(r["best"]) for r in runs if r.get("best") is not None]  # type: ignore[arg-type]
        summary = {"test": test, "metric": metric, "runs": runs}
        if bests:
            summary.update(min=min(bests), median=statistics.median(bests), max=max(bests))
        report["cases"][name] = summary  # type: ignore[index]
        print(f"{name}: {metric} best over {len(bests)} runs: min {min(bests, default=float('nan')):.3f}, "
              f"median {statistics.median(bests) if bests else float('nan'):.3f}, max {max(bests, default=float('nan')):.3f}", flush=True)
        for r in runs:
            print(f"  seed {r['seed']} threads {r['threads']}: {r.get('per_epoch', r.get('error'))} ({r['seconds']} s)", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
