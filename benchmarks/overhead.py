"""Framework overhead: ``lightplug train`` against what a user would otherwise write, doing the same work.

For each model (digits ``mlp`` and ``simple_cnn``) and each round, four processes run interleaved (the
order flips every round): ``lightplug train`` with its defaults (Rich progress bar, drawn in a
pseudo-terminal as in a shell, CSV logger, LR monitor, best/last checkpoints, evaluation callbacks),
``_lightning_loop.py`` (a bare ``lightning.Trainer`` on the same loader: the floor of any Lightning-based
trainer), ``_dataloader_loop.py`` (a plain PyTorch loop over the same ``DataLoader``: the reference of the
targets) and ``_raw_loop.py`` (plain PyTorch, tensors indexed directly). All train the same model on the
same data with the same batch size, Adam learning rate, epochs and ``torch.set_num_threads``.

Figures (the first ``--skip-epochs`` epochs are warm-up and left out):
    per step: mean time between consecutive training-step starts inside an epoch (forward, backward,
        optimizer, every per-step hook and logging call, fetching the next batch), wall and CPU time of
        the process (CPU time is less disturbed by other processes on a loaded machine);
    per epoch: from an epoch's first step to the next epoch's first step (validation included), and the same
        minus the validation (the per-epoch work: checkpoint files, epoch-end logging, the LR monitor);
    validation: wall time of each epoch's validation (metrics, confusion matrix, per-sample results);
    first step: seconds from spawning the process to its first training step.

Run: ``python benchmarks/overhead.py [--quick] [--rounds 5] [--epochs 30] [--threads 1] [--variant NAME=OVERRIDES]``.
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

__all__ = ["summarize", "run_lightplug", "run_script", "measure", "render", "run_benchmark", "headline", "BASELINES", "TARGETS", "VAL_TARGET"]

MODELS = ("mlp", "simple_cnn")
#: The baselines, what a user would otherwise write: a plain loop over the same DataLoader (the reference of
#: the targets), a loop that indexes the tensors itself, and a bare lightning.Trainer.
BASELINES = ("dataloader", "raw", "lightning")
#: Targets of lightplug train over the plain DataLoader loop: (model, figure) -> ratio.
TARGETS = {("simple_cnn", "per_step"): 1.10, ("simple_cnn", "per_epoch_full"): 1.15, ("mlp", "per_step"): 1.5, ("mlp", "per_epoch_full"): 2.0}
#: Target of lightplug's validation run over a bare Lightning validation run (forward only).
VAL_TARGET = 1.3
#: lightplug train with extra overrides, timed beside the defaults: its optimizer stepping as the baselines' does.
DEFAULT_VARIANTS = {"for_loop": ["optimizer.impl=for_loop"]}


def _figures(timing: dict[str, Any], skip_epochs: int, clock: int) -> tuple[list[float], list[float], list[float]]:
    """Step intervals, epoch times minus validation, and whole epochs (first step to the next epoch's first step:
    training, validation and every per-epoch piece of work) on one clock (1: wall, 2: CPU time of the process)."""
    by_epoch: dict[int, list[float]] = {}
    for row in timing["batches"]:
        by_epoch.setdefault(int(row[0]), []).append(float(row[clock]))
    val = {int(v[0]): (float(v[2 * clock - 1]), float(v[2 * clock])) for v in timing["val"]}
    counted = sorted(e for e in by_epoch if e >= skip_epochs)
    intervals = [b - a for e in counted for a, b in zip(by_epoch[e], by_epoch[e][1:])]
    full = [by_epoch[e + 1][0] - by_epoch[e][0] for e in counted if e + 1 in by_epoch]
    epochs = [by_epoch[e + 1][0] - by_epoch[e][0] - (val[e][1] - val[e][0]) for e in counted
              if e + 1 in by_epoch and e in val and not math.isnan(val[e][1])]
    return intervals, epochs, full


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def summarize(timing: dict[str, Any], skip_epochs: int = 1) -> dict[str, Any]:
    """Per-step and per-epoch figures of one run's timestamps (the JSON of ``_step_timer.py``).

    Returns:
        ``per_step`` (mean wall seconds between step starts within the counted epochs), ``per_step_median``,
        ``per_step_cpu`` (the same in CPU seconds of the process: less disturbed by other processes on a
        loaded machine), ``steps`` (intervals counted), ``per_epoch`` and ``per_epoch_cpu`` (mean epoch time
        minus validation, for counted epochs followed by another one), ``per_epoch_full`` and ``per_epoch_full_cpu``
        (whole epochs, validation included), ``epochs``, ``val`` and ``val_cpu`` (mean seconds of a validation run).
    """
    intervals, epochs, full = _figures(timing, skip_epochs, 1)
    cpu_intervals, cpu_epochs, cpu_full = _figures(timing, skip_epochs, 2)
    counted = [v for v in timing["val"] if int(v[0]) >= skip_epochs]
    val = [float(v[2]) - float(v[1]) for v in counted]
    val_cpu = [float(v[4]) - float(v[3]) for v in counted]
    return {"per_step": _mean(intervals), "per_step_median": median(intervals), "per_step_cpu": _mean(cpu_intervals),
            "steps": len(intervals), "per_epoch": _mean(epochs), "per_epoch_cpu": _mean(cpu_epochs), "per_epoch_full": _mean(full),
            "per_epoch_full_cpu": _mean(cpu_full), "epochs": len(epochs), "val": _mean(val), "val_cpu": _mean(val_cpu)}


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
SCRIPTS = {"lightning": "_lightning_loop.py", "dataloader": "_dataloader_loop.py", "raw": "_raw_loop.py"}


def run_script(side: str, model: str, epochs: int, threads: int, workdir: Path, env: dict[str, str], tag: str) -> dict[str, Any]:
    """One process of a baseline (bare Lightning, the plain DataLoader loop, the tensor-indexing loop); its timestamps."""
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
    sides: dict[str, list[str] | None] = {"lightplug": [], **(variants or {}), **{b: None for b in BASELINES}}
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


def _ratios(runs: list[dict[str, Any]], base: list[dict[str, Any]], key: str) -> list[float]:
    """Ratios of ``runs`` over ``base`` round by round (both ran side by side in each round)."""
    return [a[key] / b[key] for a, b in zip(runs, base) if b[key] > 0 and a[key] == a[key]]


_LABELS = {"lightplug": "`lightplug train`", "lightning": "bare Lightning", "dataloader": "plain loop over the DataLoader",
           "raw": "tensor-indexing loop"}


def _label(side: str) -> str:
    return _LABELS.get(side, f"`lightplug train` ({side})")


def _r(values: list[float]) -> str:
    return fmt_ratio(median(values)) if values else "-"


def headline(data: dict[str, Any]) -> dict[str, dict[str, float]]:
    """model -> lightplug's ratios: per step and per whole epoch over the DataLoader loop, validation over bare Lightning."""
    return {m: {k: v["lightplug"]["ratios"][k] for k in ("per_step/dataloader", "per_epoch_full/dataloader", "val/lightning")}
            for m, v in data["models"].items()}


def _verdict(value: float, target: float | None) -> str:
    if target is None or value != value:
        return ""
    return f" (target <= {target}: {'met' if value <= target else '**not met**'})"


def render(results: dict[str, Any], settings: dict[str, Any]) -> Section:
    """The Markdown section: per step, per epoch and validation against every baseline, and start-up."""
    step_rows, epoch_rows, start_rows, data = [], [], [], {"settings": settings, "models": {}}
    for model, sides in results.items():
        for side, runs in sides.items():
            ratios = {f"{key}/{b}": median(_ratios(runs, sides[b], key)) for key in ("per_step", "per_step_cpu", "per_epoch_full",
                                                                                      "per_epoch_full_cpu", "per_epoch", "val", "val_cpu")
                      for b in BASELINES}
            spans = {f"per_step/{b}": _ratios(runs, sides[b], "per_step") for b in BASELINES}
            data["models"].setdefault(model, {})[side] = {"ratios": ratios, "spans": spans, "runs": runs}

            def cell(key: str, base: str, side: str = side, runs: list[dict[str, Any]] = runs,
                     sides: dict[str, list[dict[str, Any]]] = sides) -> str:
                return "x1 (reference)" if side == base else _r(_ratios(runs, sides[base], key))

            step_target = TARGETS.get((model, "per_step")) if side == "lightplug" else None
            step_rows.append([f"`{model}`", _label(side), fmt_ms(median([x["per_step"] for x in runs])),
                              f"**{cell('per_step', 'dataloader')}**{_verdict(ratios['per_step/dataloader'], step_target)}",
                              cell("per_step", "raw"), cell("per_step", "lightning"), fmt_ms(median([x["per_step_cpu"] for x in runs])),
                              cell("per_step_cpu", "dataloader")])
            epoch_target = TARGETS.get((model, "per_epoch_full")) if side == "lightplug" else None
            val_target = VAL_TARGET if side == "lightplug" else None
            epoch_rows.append([f"`{model}`", _label(side), fmt_ms(median([x["per_epoch_full"] for x in runs]), 1),
                               f"**{cell('per_epoch_full', 'dataloader')}**{_verdict(ratios['per_epoch_full/dataloader'], epoch_target)}",
                               cell("per_epoch_full", "raw"), cell("per_epoch_full", "lightning"),
                               fmt_ms(median([x["per_epoch"] for x in runs]), 1), fmt_ms(median([x["val"] for x in runs]), 1),
                               fmt_ms(median([x["val_cpu"] for x in runs]), 1), cell("val", "dataloader"),
                               f"**{cell('val', 'lightning')}**{_verdict(ratios['val/lightning'], val_target)}"])
        first = {s: median([x["first_step"] for x in sides[s]]) for s in ("lightplug", *BASELINES)}
        data["models"][model]["first_step"] = first
        start_rows.append([f"`{model}`", *[f"{first[s]:.2f}" for s in ("lightplug", *BASELINES)]])
    s = settings
    steps = sum(x["steps"] for m in results.values() for x in m["raw"][:1])
    variants = "".join(f"; `lightplug train` ({k}) adds `{' '.join(v)}`" for k, v in (s.get("variants") or {}).items())
    body = (f"Four processes per model and round, each on the same digits data: `lightplug train` with its defaults (Rich progress bar "
            f"drawn in a pseudo-terminal, CSV logger, LR monitor, best and last checkpoints, evaluation callbacks, `optimizer.impl=auto`), "
            f"a bare `lightning.Trainer` with everything optional off (`benchmarks/_lightning_loop.py`: the floor of any Lightning-based "
            f"trainer), a plain PyTorch loop over the same `DataLoader` (`benchmarks/_dataloader_loop.py`: what a user writes without a "
            f"framework; the reference of the targets) and a loop that indexes the tensors itself (`benchmarks/_raw_loop.py`). Same model "
            f"(`lightplug.build_model`), batch size 64, Adam lr 1e-3 (the baselines with torch's default implementation, as a user writes "
            f"it), `torch.set_num_threads({s['threads']})`, {s['epochs']} epochs (the first {s['skip_epochs']} left out as warm-up: {steps} "
            f"steps counted per run), {s['rounds']} interleaved rounds, the order flipped every round{variants}. Every ratio is the "
            f"median over the rounds of the ratio of two processes of the same round.\n\n"
            "**Per training step** (mean time between consecutive step starts within an epoch: forward, backward, optimizer, every "
            "per-step hook and log call, fetching the next batch; CPU: the same in CPU time of the process, less disturbed by a busy "
            "machine):\n\n"
            + md_table(["model", "run", "per step ms", "vs DataLoader loop", "vs tensor loop", "vs bare Lightning", "CPU per step ms",
                        "CPU vs DataLoader loop"], step_rows)
            + "\n\n**Per epoch, validation included** (first step of an epoch to the first step of the next: training, validation, "
              "checkpoint files, epoch-end logging), the epoch without its validation, and **one validation run** (lightplug: the loss, "
              "the task's metrics, per-class accuracy, the confusion matrix and the per-sample results accumulated; their files are "
              "written when the run ends; the loops: loss and accuracy; bare Lightning: the forward pass only):\n\n"
            + md_table(["model", "run", "epoch ms", "vs DataLoader loop", "vs tensor loop", "vs bare Lightning", "epoch without val ms",
                        "validation ms", "validation CPU ms", "validation vs DataLoader loop", "validation vs bare Lightning"], epoch_rows)
            + "\n\nSeconds from spawning the process to its first training step (median of the rounds):\n\n"
            + md_table(["model", "lightplug train", "DataLoader loop (imports lightning for the loader)", "tensor loop (torch, no lightning)",
                        "bare Lightning"], start_rows))
    return Section("Framework overhead: lightplug train vs a plain PyTorch loop", body, data)


def run_benchmark(quick: bool = False, workdir: Path | None = None, rounds: int | None = None, epochs: int | None = None,
                  threads: int = 1, skip_epochs: int = 1, models: tuple[str, ...] = MODELS, variants: dict[str, list[str]] | None = None,
                  terminal: bool = True, log: Any = print) -> Section:
    """Measure and render; ``quick``: ``simple_cnn`` only, one round of 3 epochs (a smoke run, not a measurement).
    ``variants``: ``None`` times :data:`DEFAULT_VARIANTS` too, ``{}`` none."""
    rounds = rounds or (1 if quick else 5)
    epochs = epochs or (3 if quick else 30)
    variants = dict(DEFAULT_VARIANTS) if variants is None else variants
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
                   help="also time lightplug train with these overrides (space-separated), e.g. 'nobar=trainer.enable_progress_bar=false'; "
                        "default: for_loop=optimizer.impl=for_loop")
    p.add_argument("--no-variants", action="store_true", help="time lightplug train with its defaults only")
    p.add_argument("--pipe", action="store_true", help="run lightplug train with pipes instead of a pseudo-terminal")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    variants = {v.split("=", 1)[0]: v.split("=", 1)[1].split() for v in a.variant} or (None if not a.no_variants else {})
    section = run_benchmark(a.quick, a.workdir, a.rounds, a.epochs, a.threads, a.skip_epochs, tuple(a.models.split(",")), variants,
                            terminal=not a.pipe)
    print(section.markdown())
    if a.json:
        a.json.write_text(json.dumps(section.data, indent=2, default=str))


if __name__ == "__main__":
    main()
