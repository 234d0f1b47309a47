"""Framework overhead: ``lightplug train`` against a hand-written PyTorch loop doing the same work.

For each model (digits ``mlp`` and ``simple_cnn``) and each round, three processes run interleaved (the
order flips every round): ``lightplug train`` with its defaults (Rich progress bar, drawn in a
pseudo-terminal as in a shell, CSV logger, LR monitor, best/last checkpoints, evaluation callbacks),
``_lightning_loop.py`` (a bare ``lightning.Trainer`` on the same loader: the floor of any Lightning-based
trainer) and ``_raw_loop.py`` (plain PyTorch, tensors indexed directly). All train the same model on the
same tensors with the same batch size, Adam learning rate, epochs and ``torch.set_num_threads``.

Figures (the first ``--skip-epochs`` epochs are warm-up and left out):
    per step: mean time between consecutive training-step starts inside an epoch (forward, backward,
        optimizer, every per-step hook and logging call, fetching the next batch), wall and CPU time of
        the process (CPU time is less disturbed by other processes on a loaded machine);
    per epoch: wall time of an epoch minus its validation (adds the per-epoch work: checkpoint files,
        epoch-end logging, the LR monitor);
    validation: wall time of each epoch's validation (metrics, confusion matrix, per-sample results);
    first step: seconds from spawning the process to its first training step.

Run: ``python benchmarks/overhead.py [--quick] [--rounds 5] [--epochs 30] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import HERE, Section, bench_env, fmt_ms, fmt_ratio, install_step_timer, lightplug_cmd, md_table, median, run

__all__ = ["summarize", "run_lightplug", "run_script", "measure", "render", "run_benchmark"]

MODELS = ("mlp", "simple_cnn")
#: Per-step ratio lightplug / raw loop that simple_cnn must stay under.
TARGET = 1.05


def _figures(timing: dict[str, Any], skip_epochs: int, clock: int) -> tuple[list[float], list[float]]:
    """Step intervals and epoch times (minus validation) on one clock (1: wall, 2: CPU time of the process)."""
    by_epoch: dict[int, list[float]] = {}
    for row in timing["batches"]:
        by_epoch.setdefault(int(row[0]), []).append(float(row[clock]))
    val = {int(v[0]): (float(v[2 * clock - 1]), float(v[2 * clock])) for v in timing["val"]}
    counted = sorted(e for e in by_epoch if e >= skip_epochs)
    intervals = [b - a for e in counted for a, b in zip(by_epoch[e], by_epoch[e][1:])]
    epochs = [by_epoch[e + 1][0] - by_epoch[e][0] - (val[e][1] - val[e][0]) for e in counted
              if e + 1 in by_epoch and e in val and not math.isnan(val[e][1])]
    return intervals, epochs


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarize(timing: dict[str, Any], skip_epochs: int = 1) -> dict[str, Any]:
    """Per-step and per-epoch figures of one run's timestamps (the JSON of ``_step_timer.py``).

    Returns:
        ``per_step`` (mean wall seconds between step starts within the counted epochs), ``per_step_median``,
        ``per_step_cpu`` (the same in CPU seconds of the process: less disturbed by other processes on a
        loaded machine), ``steps`` (intervals counted), ``per_epoch`` and ``per_epoch_cpu`` (mean epoch time
        minus validation, for counted epochs followed by another one), ``epochs``, ``val`` (mean seconds of
        a validation run).
    """
    intervals, epochs = _figures(timing, skip_epochs, 1)
    cpu_intervals, cpu_epochs = _figures(timing, skip_epochs, 2)
    val = [float(v[2]) - float(v[1]) for v in timing["val"] if int(v[0]) >= skip_epochs]
    return {"per_step": _mean(intervals), "per_step_median": median(intervals), "per_step_cpu": _mean(cpu_intervals),
            "steps": len(intervals), "per_epoch": _mean(epochs), "per_epoch_cpu": _mean(cpu_epochs), "epochs": len(epochs),
            "val": _mean(val)}


def run_lightplug(model: str, epochs: int, threads: int, workdir: Path, env: dict[str, str], tag: str,
                  extra: list[str] | None = None, terminal: bool = True) -> dict[str, Any]:
    """One ``lightplug train`` process with the ``bench_timer`` callback; its timestamps and summary."""
    out = workdir / f"{tag}.json"
    cmd = lightplug_cmd("train", f"model={model}", "trainer=cpu", f"trainer.max_epochs={epochs}", f"threads={threads}", "seed=0",
                        "callbacks=[default,bench_timer]", f"callbacks.bench_timer.path={out}", f"hydra.run.dir={workdir / tag}",
                        *(extra or []))
    spawned = time.time()
    code, text, wall = run(cmd, env=env, cwd=workdir, terminal=terminal)
    if code != 0 or not out.is_file():
        raise RuntimeError(f"lightplug train failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
    timing = json.loads(out.read_text())
    return {"first_step": timing["first_step_wall"] - spawned, "wall": wall, "timing": timing}


#: The scripts of the non-lightplug sides.
SCRIPTS = {"lightning": "_lightning_loop.py", "raw": "_raw_loop.py"}


def run_script(side: str, model: str, epochs: int, threads: int, workdir: Path, env: dict[str, str], tag: str) -> dict[str, Any]:
    """One process of the bare Lightning loop or of the raw loop; its timestamps."""
    import sys

    out = workdir / f"{tag}.json"
    cmd = [sys.executable, str(HERE / SCRIPTS[side]), "--model", model, "--epochs", str(epochs), "--threads", str(threads), "--out", str(out)]
    spawned = time.time()
    code, text, wall = run(cmd, env=env, cwd=workdir)
    if code != 0:
        raise RuntimeError(f"{side} loop failed ({code}): {' '.join(cmd)}\n{text[-3000:]}")
    timing = json.loads(out.read_text())
    return {"first_step": timing["first_step_wall"] - spawned, "wall": wall, "timing": timing}


def measure(models: tuple[str, ...], rounds: int, epochs: int, threads: int, workdir: Path, skip_epochs: int = 1,
            variants: dict[str, list[str]] | None = None, terminal: bool = True, log: Any = print) -> dict[str, Any]:
    """Interleaved rounds of every (model, side); returns ``{model: {side: [summary per round]}}``.

    ``variants`` adds ``lightplug train`` runs with extra overrides (name -> overrides), for attributing overhead.
    """
    site, cache = workdir / "site", workdir / "cache"
    install_step_timer(site)
    env = bench_env(site, cache, threads)
    sides: dict[str, list[str] | None] = {"lightplug": [], **(variants or {}), "lightning": None, "raw": None}
    results: dict[str, dict[str, list[dict[str, Any]]]] = {m: {s: [] for s in sides} for m in models}
    for r in range(rounds):
        order = list(sides.items()) if r % 2 == 0 else list(reversed(sides.items()))
        for model in models:
            for side, extra in order:
                tag = f"{model}-{side}-r{r}"
                if extra is None:
                    res = run_script(side, model, epochs, threads, workdir, env, tag)
                else:
                    res = run_lightplug(model, epochs, threads, workdir, env, tag, extra, terminal)
                res.update(summarize(res.pop("timing"), skip_epochs))
                results[model][side].append(res)
                log(f"  overhead round {r + 1}/{rounds} {model:10s} {side:12s} per step {fmt_ms(res['per_step'])} ms, "
                    f"first step after {res['first_step']:.2f} s")
    return results


def _ratios(runs: list[dict[str, Any]], raw: list[dict[str, Any]], key: str) -> list[float]:
    return [a[key] / b[key] for a, b in zip(runs, raw) if b[key] > 0]


def _label(side: str) -> str:
    return {"lightplug": "`lightplug train`", "lightning": "bare Lightning", "raw": "raw PyTorch loop"}.get(side, f"`lightplug train` ({side})")


def headline(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """model -> per-step ratios of lightplug over the raw loop (wall, CPU) and over bare Lightning (wall)."""
    return {m: {k: v["lightplug"][k] for k in ("per_step_ratio", "per_step_cpu_ratio", "per_step_ratio_vs_lightning", "per_epoch_ratio")}
            for m, v in data["models"].items()}


def render(results: dict[str, Any], settings: dict[str, Any]) -> Section:
    """The Markdown section: per-step and per-epoch times and ratios, validation, start-up."""
    rows, start_rows, data = [], [], {"settings": settings, "models": {}}
    for model, sides in results.items():
        raw, bare = sides["raw"], sides["lightning"]
        for side, runs in sides.items():
            step_r, cpu_r, epoch_r = _ratios(runs, raw, "per_step"), _ratios(runs, raw, "per_step_cpu"), _ratios(runs, raw, "per_epoch")
            ratio = "x1 (reference)" if side == "raw" else f"**{fmt_ratio(median(step_r))}**"
            span = "-" if side == "raw" else f"{fmt_ratio(min(step_r, default=None))}-{fmt_ratio(max(step_r, default=None))}"
            rows.append([f"`{model}`", _label(side), fmt_ms(median([x["per_step"] for x in runs])), ratio, span,
                         fmt_ms(median([x["per_step_cpu"] for x in runs])), "-" if side == "raw" else fmt_ratio(median(cpu_r)),
                         fmt_ms(median([x["per_epoch"] for x in runs]), 1), "-" if side == "raw" else fmt_ratio(median(epoch_r)),
                         fmt_ms(median([x["val"] for x in runs]), 1)])
            data["models"].setdefault(model, {})[side] = {
                "per_step_ratio": median(step_r), "per_step_ratios": step_r, "per_step_cpu_ratio": median(cpu_r),
                "per_step_ratio_vs_lightning": median(_ratios(runs, bare, "per_step")), "per_epoch_ratio": median(epoch_r), "runs": runs}
        first = {s: median([x["first_step"] for x in sides[s]]) for s in ("lightplug", "lightning", "raw")}
        data["models"][model]["first_step"] = first
        start_rows.append([f"`{model}`", f"{first['lightplug']:.2f}", f"{first['lightning']:.2f}", f"{first['raw']:.2f}"])
    s = settings
    steps = sum(x["steps"] for m in results.values() for x in m["raw"][:1])
    body = (f"`lightplug train` with its defaults (Rich progress bar drawn in a pseudo-terminal, CSV logger, LR monitor, best and last "
            f"checkpoints, evaluation callbacks), a bare `lightning.Trainer` on the same loader with everything optional off "
            f"(`benchmarks/_lightning_loop.py`: the floor of any Lightning-based trainer) and a hand-written loop "
            f"(`benchmarks/_raw_loop.py`), each in its own process, on the same digits tensors: same model (`lightplug.build_model`), "
            f"batch size 64, Adam lr 1e-3, `torch.set_num_threads({s['threads']})`, {s['epochs']} epochs (the first {s['skip_epochs']} "
            f"left out as warm-up: {steps} steps counted per run), {s['rounds']} interleaved rounds, the order flipped every round. "
            f"Ratios are over the raw loop, median of the rounds' ratios (range: min-max). Target: per-step ratio <= {TARGET} for "
            f"`simple_cnn`.\n\n"
            + md_table(["model", "run", "per step ms", "ratio", "range", "CPU per step ms", "CPU ratio", "epoch ms (no val)", "epoch ratio",
                        "validation ms"], rows)
            + "\n\nPer step: mean time between consecutive training-step starts within an epoch (forward, backward, optimizer, every "
              "per-step hook and log call, fetching the next batch); CPU: the same in CPU time of the process (a busy machine disturbs "
              "it less than wall time). Epoch: wall time of an epoch minus its validation, so it adds the per-epoch work the loops "
              "without lightplug do not do (checkpoint files written and fsynced, epoch-end logging). Validation: one validation run "
              "(lightplug computes the metrics, the confusion matrix and the per-sample results there).\n\n"
              "Seconds from spawning the process to its first training step (median of the rounds):\n\n"
            + md_table(["model", "lightplug train", "bare Lightning", "raw loop (torch, no lightning)"], start_rows))
    return Section("Framework overhead: lightplug train vs a raw PyTorch loop", body, data)


def run_benchmark(quick: bool = False, workdir: Path | None = None, rounds: int | None = None, epochs: int | None = None,
                  threads: int = 1, skip_epochs: int = 1, models: tuple[str, ...] = MODELS, variants: dict[str, list[str]] | None = None,
                  terminal: bool = True, log: Any = print) -> Section:
    """Measure and render; ``quick``: ``simple_cnn`` only, one round of 2 epochs (a smoke run, not a measurement)."""
    rounds = rounds or (1 if quick else 5)
    epochs = epochs or (2 if quick else 30)
    models = models[-1:] if quick and models == MODELS else models
    with tempfile.TemporaryDirectory(prefix="lp-overhead-") as tmp:
        base = Path(workdir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        results = measure(models, rounds, epochs, threads, base, skip_epochs, variants, terminal, log)
    settings = {"rounds": rounds, "epochs": epochs, "threads": threads, "skip_epochs": skip_epochs, "terminal": terminal,
                "variants": variants or {}}
    return render(results, settings)


def main() -> None:
    """Command line: print the section (and write JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-epochs", type=int, default=1)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--variant", action="append", default=[], metavar="NAME=OVERRIDE[ OVERRIDE]",
                   help="also time lightplug train with these overrides (space-separated), e.g. 'nobar=trainer.enable_progress_bar=false'")
    p.add_argument("--pipe", action="store_true", help="run lightplug train with pipes instead of a pseudo-terminal")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    variants = {v.split("=", 1)[0]: v.split("=", 1)[1].split() for v in a.variant}
    section = run_benchmark(a.quick, a.workdir, a.rounds, a.epochs, a.threads, a.skip_epochs, tuple(a.models.split(",")), variants,
                            terminal=not a.pipe)
    print(section.markdown())
    if a.json:
        a.json.write_text(json.dumps(section.data, indent=2, default=str))


if __name__ == "__main__":
    main()
