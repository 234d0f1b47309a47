"""Data loading: loader workers for in-memory tensors (digits) and for image files (``image_folder``).

``num_workers``, ``pin_memory`` and ``persistent_workers`` are data settings (``data.num_workers=2``); the
defaults follow the data: in-memory tensors load in the main process (0 workers: a batch is one indexing
op, a worker would only add inter-process copies), image folders decode and augment in 2 persistent
workers. Each configuration trains ``simple_cnn`` through ``lightplug train`` (one Hydra multirun per data
set, the ``bench_timer`` callback in every job) and reports the mean training time per epoch, validation
left out, the first epoch (worker start-up, warm-up) left out.

Run: ``python benchmarks/data_loading.py [--quick] [--epochs 6] [--images 150]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from _common import Section, bench_env, install_step_timer, lightplug_cmd, md_table, run

__all__ = ["write_images", "loader_seconds", "run_sweep", "measure", "render", "run_benchmark", "IMAGE_SIZE"]

#: Side of the generated PNGs (resized to 32 by the data module): decoding them is the loader's work.
IMAGE_SIZE = 128


def write_images(root: Path, classes: int = 4, per_class: int = 150, size: int = 128, seed: int = 0) -> Path:
    """Write ``classes`` folders of ``per_class`` random RGB PNGs (``size`` px: a class colour plus noise, so
    they compress poorly and cost a real decode)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, size=3)
        for i in range(per_class):
            pixels = np.clip(base + rng.normal(0, 40, size=(size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"{i:04d}.png")
    return root


def _epoch_seconds(timing: dict[str, Any], skip: int = 1) -> list[float]:
    """Training seconds of each epoch after the first ``skip``: from the epoch's start (before its loader
    iterator and workers are created) to the start of its validation (wall clock)."""
    val = {int(v[0]): float(v[1]) for v in timing["val"]}
    return [val[int(e)] - float(t) for e, t, _ in timing["epochs"] if int(e) >= skip and int(e) in val]


def loader_seconds(data: str, values: dict[str, Any], epochs: int, threads: int) -> list[float]:
    """Seconds per epoch of iterating the train loader alone (no model), built from the data plugin as
    ``lightplug train`` builds it; the first epoch (workers starting) left out."""
    import time

    import torch

    from lightplug.registry import get_registry

    torch.set_num_threads(threads)
    plugin = get_registry().get("data", data).instantiate(values)
    loader = plugin.build(plugin.cfg).train_dataloader()  # one loader for all epochs, as Lightning keeps it
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        for _batch in loader:
            pass
        times.append(time.perf_counter() - start)
    del loader
    return times[1:]


def run_sweep(label: str, overrides: list[str], sweep: list[str], workdir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """One ``lightplug train -m`` over ``sweep``; per job: its data loader settings and epoch times."""
    out = workdir / label
    cmd = lightplug_cmd("train", "-m", *overrides, *sweep, "callbacks=[default,bench_timer]", f"hydra.sweep.dir={out}")
    code, text, _ = run(cmd, env=env, cwd=workdir)
    if code != 0:
        raise RuntimeError(f"{label}: lightplug train -m failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
    jobs = []
    for job in sorted((p for p in out.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name)):
        data = json.loads((job / "config.json").read_text())["data"]
        epochs = _epoch_seconds(json.loads((job / "bench_steps.json").read_text()))
        jobs.append({"data": label, "num_workers": data["num_workers"], "persistent_workers": data["persistent_workers"],
                     "pin_memory": data["pin_memory"], "epoch_s": sum(epochs) / len(epochs) if epochs else float("nan"), "epochs": epochs})
    return jobs


def measure(quick: bool, epochs: int, images: int, threads: int, workdir: Path, log: Any = print) -> dict[str, Any]:
    """Both sweeps (``quick``: the image folder's only) and the loaders alone; returns the jobs and the settings."""
    site, cache = workdir / "site", workdir / "cache"
    install_step_timer(site)
    env = bench_env(site, cache, threads)
    common = ["model=simple_cnn", "trainer=cpu", f"trainer.max_epochs={epochs}", f"threads={threads}", "seed=0",
              "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
    if quick:  # one training multirun only (the image folder); digits get the loader-alone figures
        digits: list[dict[str, Any]] = [{"data": "digits", "num_workers": n, "persistent_workers": False, "pin_memory": False,
                                         "epoch_s": float("nan")} for n in (0, 2)]
    else:
        digits = run_sweep("digits", common, ["data.num_workers=0,2", "data.persistent_workers=false,true"], workdir, env)
    log(f"  data digits: {[(j['num_workers'], j['persistent_workers'], round(j['epoch_s'], 3)) for j in digits]}")
    root = write_images(workdir / "images", per_class=images, size=IMAGE_SIZE)
    folder = run_sweep("image_folder", [*common, "data=image_folder", f"data.root={root}"], ["data.num_workers=0,2"], workdir, env)
    log(f"  data image_folder: {[(j['num_workers'], j['persistent_workers'], round(j['epoch_s'], 3)) for j in folder]}")
    digits = [j for j in digits if j["num_workers"] or not j["persistent_workers"]]  # persistence means nothing without workers
    for j in digits + folder:
        values = {"num_workers": j["num_workers"], "persistent_workers": j["persistent_workers"], **({"root": str(root)} if j["data"] == "image_folder" else {})}
        t = loader_seconds(j["data"], values, epochs, threads)
        j["loader_s"] = sum(t) / len(t) if t else float("nan")
    return {"jobs": digits + folder, "epochs": epochs, "images": images * 4, "threads": threads}


def render(data: dict[str, Any]) -> Section:
    """The Markdown section."""
    base = {j["data"]: j["epoch_s"] for j in data["jobs"] if j["num_workers"] == 0 and j["epoch_s"] == j["epoch_s"]}  # not nan
    default = {"digits": (0, False), "image_folder": (2, True)}
    rows = []
    for j in data["jobs"]:
        mark = " (default)" if default[j["data"]] == (j["num_workers"], j["persistent_workers"]) else ""
        persistent = str(j["persistent_workers"]).lower() if j["num_workers"] else "-"
        rows.append([f"`{j['data']}`{mark}", j["num_workers"], persistent, str(j["pin_memory"]).lower(),
                     "not run (--quick)" if j["epoch_s"] != j["epoch_s"] else f"{j['epoch_s'] * 1000:.0f}",
                     f"x{j['epoch_s'] / base[j['data']]:.2f}" if base.get(j["data"]) else "-",
                     f"{j['loader_s'] * 1000:.1f}"])
    body = (f"`simple_cnn` trained by `lightplug train` for {data['epochs']} epochs per configuration (the first left out), "
            f"`threads={data['threads']}`; training time per epoch, validation excluded. Digits: 1,797 8x8 images held as tensors "
            f"(17 batches of 64 per epoch). Image folder: {data['images']} generated {IMAGE_SIZE}x{IMAGE_SIZE} RGB PNGs in 4 class folders, resized to 32x32, "
            f"decoded with PIL in the loader.\n\n"
            + md_table(["data", "num_workers", "persistent_workers", "pin_memory", "training ms per epoch", "vs 0 workers",
                        "loader alone ms per epoch"], rows)
            + "\n\nLoader alone: the same train loader iterated without a model (in the benchmark process), to show what "
              "loading costs by itself; training overlaps it with compute when workers load ahead.\n\nThe defaults come from each data plugin's config (`lightplug data show NAME`): 0 workers for in-memory tensors, "
              "2 persistent workers for image folders; `data.num_workers`, `data.pin_memory` and `data.persistent_workers` override "
              "them. `pin_memory` only matters for copies to a GPU.")
    return Section("Data loading: workers", body, data)


def run_benchmark(quick: bool = False, workdir: Path | None = None, epochs: int | None = None, images: int | None = None,
                  threads: int = 1, log: Any = print) -> Section:
    """Measure and render; ``quick``: 2 epochs, 40 images, digits not trained (loader alone) (a smoke run)."""
    epochs = epochs or (2 if quick else 6)
    images = images or (10 if quick else 150)
    with tempfile.TemporaryDirectory(prefix="lp-data-") as tmp:
        base = Path(workdir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        data = measure(quick, epochs, images, threads, base, log)
    return render(data)


def main() -> None:
    """Command line: print the section (and write JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--epochs", type=int)
    p.add_argument("--images", type=int, help="images per class (4 classes)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    section = run_benchmark(a.quick, a.workdir, a.epochs, a.images, a.threads)
    print(section.markdown())
    if a.json:
        a.json.write_text(json.dumps(section.data, indent=2, default=str))


if __name__ == "__main__":
    main()
