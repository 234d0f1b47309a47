"""GPU throughput: images per second of a timm ResNet-50 in bf16, ``lightplug train`` against a raw loop.

``lightplug train model=timm model.arch=resnet50 data=synthetic (3x224x224) trainer.precision=bf16-mixed
trainer.accelerator=gpu`` with the ``bench_timer`` callback (it synchronises the GPU at each epoch start and
validation start), against a hand-written loop on the same synthetic tensors with ``torch.autocast(bf16)``,
Adam with the same learning rate, the same batch size and the same model (``lightplug.build_model``).
Images per second of training, validation and the first epoch left out, several interleaved rounds.

Without a GPU it writes "no GPU available on this machine; not measured" and exits 0. ``--cpu-smoke``
runs the same code on the CPU with a tiny model, to check the script where no GPU is available.

Run: ``python benchmarks/gpu_throughput.py [--quick] [--rounds 3] [--epochs 4] [--batch-size 64]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import HERE, Section, bench_env, install_step_timer, lightplug_cmd, md_table, median, run

__all__ = ["gpu_name", "raw_loop", "run_lightplug", "run_benchmark", "NO_GPU"]

NO_GPU = "no GPU available on this machine; not measured"


def gpu_name() -> str | None:
    """The first CUDA device's name, or ``None`` (in a subprocess unless torch is already imported here)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    code, text, _ = run([sys.executable, "-c", "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"])
    name = text.strip().splitlines()[-1].strip() if code == 0 and text.strip() else ""
    return name or None


def _synthetic(samples: int, classes: int, size: int, seed: int = 0) -> tuple[Any, Any]:
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(samples, 3, size, size, generator=g), torch.randint(0, classes, (samples,), generator=g)


def raw_loop(arch: str, epochs: int, batch_size: int, samples: int, classes: int, size: int, device: str, lr: float = 1e-3) -> dict[str, Any]:
    """Train with autocast bf16 on ``device``; returns images/s of each epoch after the first."""
    import torch
    import torch.nn.functional as F

    import lightplug

    torch.manual_seed(0)
    net = lightplug.build_model("timm", arch=arch, num_classes=classes, in_channels=3).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    x_all, y_all = _synthetic(samples, classes, size)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    rates = []
    for epoch in range(epochs):
        net.train()
        perm = torch.randperm(samples)
        sync()
        start, seen = time.perf_counter(), 0
        for i in range(0, samples, batch_size):
            idx = perm[i:i + batch_size]
            x, y = x_all[idx], y_all[idx]
            if device == "cuda":  # as a loader with pin_memory=True: pinned batches, asynchronous copies
                x, y = x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device, dtype=torch.bfloat16):
                loss = F.cross_entropy(net(x), y)
            loss.backward()
            opt.step()
            seen += len(idx)
        sync()
        if epoch >= 1:
            rates.append(seen / (time.perf_counter() - start))
    return {"images_per_s": rates}


def run_lightplug(arch: str, epochs: int, batch_size: int, samples: int, classes: int, size: int, device: str, workdir: Path,
                  env: dict[str, str], tag: str) -> dict[str, Any]:
    """One ``lightplug train`` process; images/s of each epoch after the first (training only)."""
    run_dir = workdir / tag
    accel = ["trainer.accelerator=gpu", "trainer.devices=1", "data.pin_memory=true"] if device == "cuda" else ["trainer=cpu"]
    # `samples` images for training plus a small validation split (its time is left out)
    total = samples + max(batch_size, samples // 10)
    val_fraction = (total - samples) / total
    train_samples = total - max(1, round(total * val_fraction))  # as lightplug.data.datamodule.split_indices splits
    cmd = lightplug_cmd("train", "model=timm", f"model.arch={arch}", "data=synthetic", "data.in_channels=3", f"data.image_size={size}",
                        f"data.num_classes={classes}", f"data.num_samples={total}", f"data.batch_size={batch_size}",
                        f"data.val_fraction={val_fraction:.6f}", "data.test_fraction=0", "trainer.precision=bf16-mixed", *accel,
                        f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false", "trainer.num_sanity_val_steps=0", "seed=0",
                        "callbacks=[default,bench_timer]", f"callbacks.bench_timer.sync_cuda={'true' if device == 'cuda' else 'false'}",
                        f"hydra.run.dir={run_dir}")
    code, text, _ = run(cmd, env=env, cwd=workdir)
    if code != 0:
        raise RuntimeError(f"lightplug train failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
    timing = json.loads((run_dir / "bench_steps.json").read_text())
    val = {int(v[0]): float(v[1]) for v in timing["val"]}
    rates = [train_samples / (val[int(e)] - float(t)) for e, t, _ in timing["epochs"] if int(e) >= 1 and int(e) in val]
    return {"images_per_s": rates}


def _raw_subprocess(args: argparse.Namespace, device: str, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, str(HERE / "gpu_throughput.py"), "--raw", "--arch", args.arch, "--epochs", str(args.epochs),
           "--batch-size", str(args.batch_size), "--samples", str(args.samples), "--classes", str(args.classes), "--size", str(args.size),
           "--device", device]
    code, text, _ = run(cmd, env=env)
    if code != 0:
        raise RuntimeError(f"raw loop failed ({code}):\n{text[-3000:]}")
    return json.loads(text.strip().splitlines()[-1])


def run_benchmark(quick: bool = False, workdir: Path | None = None, args: argparse.Namespace | None = None,
                  log: Any = print) -> Section:
    """Measure on the GPU (or the CPU with ``args.cpu_smoke``); without a GPU the section says so."""
    args = args or parse_args([])
    if quick:
        args.rounds, args.epochs = 1, 2
    name = "CPU (smoke run, not a GPU figure)" if args.cpu_smoke else gpu_name()
    if name is None:
        return Section("GPU throughput: timm ResNet-50, bf16", NO_GPU + ".", {"gpu": None, "measured": False})
    device = "cpu" if args.cpu_smoke else "cuda"
    with tempfile.TemporaryDirectory(prefix="lp-gpu-") as tmp:
        base = Path(workdir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        site = install_step_timer(base / "site")
        env = bench_env(site, base / "cache")
        res: dict[str, list[float]] = {"lightplug": [], "raw": []}
        for r in range(args.rounds):
            for side in (("lightplug", "raw") if r % 2 == 0 else ("raw", "lightplug")):
                out = (run_lightplug(args.arch, args.epochs, args.batch_size, args.samples, args.classes, args.size, device, base, env, f"r{r}")
                       if side == "lightplug" else _raw_subprocess(args, device, env))
                res[side].append(median(out["images_per_s"]))
                log(f"  gpu round {r + 1}/{args.rounds} {side}: {res[side][-1]:.1f} images/s")
    lp, raw = median(res["lightplug"]), median(res["raw"])
    body = (f"Device: **{name}**. `{args.arch}` (timm, random init), {args.size}x{args.size} RGB synthetic images, batch {args.batch_size}, "
            f"{args.samples} training images per epoch, bf16 autocast (`trainer.precision=bf16-mixed`), Adam lr 1e-3; training images "
            f"per second, first epoch and validation left out, median of {args.rounds} interleaved rounds.\n\n"
            + md_table(["run", "images/s", "vs raw loop"], [["`lightplug train`", f"{lp:.1f}", f"x{lp / raw:.3f}"],
                                                             ["raw PyTorch loop (`torch.autocast`)", f"{raw:.1f}", "x1.000"]]))
    return Section("GPU throughput: timm ResNet-50, bf16", body, {"gpu": name, "measured": True, "images_per_s": res,
                                                                  "settings": {k: v for k, v in vars(args).items()}})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command-line options (also the defaults of :func:`run_benchmark`)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--samples", type=int, default=640, help="training images per epoch")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--cpu-smoke", action="store_true", help="run on the CPU (with --arch resnet18 --size 32 ...) to test the script")
    p.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--device", default="cuda", help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    return p.parse_args(argv)


def main() -> None:
    """Command line: print the section (and write JSON with ``--json``); ``--raw`` is the raw loop's process."""
    a = parse_args()
    if a.raw:
        print(json.dumps(raw_loop(a.arch, a.epochs, a.batch_size, a.samples, a.classes, a.size, a.device)))
        return
    section = run_benchmark(a.quick, a.workdir, a)
    print(section.markdown())
    if a.json:
        a.json.write_text(json.dumps(section.data, indent=2, default=str))


if __name__ == "__main__":
    main()
