"""Training options that change speed: the optimizer's implementation (``optimizer.impl``) and ``torch.compile``
(``compile.enabled``).

1. Optimizer step: ``optimizer.step()`` alone, in this process, for each model's parameters (gradients set),
   each optimizer of the ``optimizer`` group that torch fuses and each implementation, built by lightplug's own
   ``build_optimizer``; CPU time of the thread per step, the best of 5 repetitions of 200 steps.
2. ``torch.compile``: ``lightplug train model=NAME`` with ``compile.enabled=false`` and ``=true`` (the compile
   section's defaults: inductor, mode ``default``), interleaved rounds, ``threads`` torch threads, the
   ``bench_timer`` callback: steady per-step time (the first ``--skip-epochs`` epochs left out: they compile the
   training graph, the evaluation graph and the graph of the last, smaller batch), the first epoch (first step
   to the next epoch's first step: compilation included) and the start-up to the first step. The compile cost
   is the first epoch's excess over the uncompiled run's plus the difference in start-up.

Run: ``python benchmarks/training_options.py [--quick] [--rounds 2] [--epochs 5] [--models mlp,simple_cnn,tiny_resnet]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from _common import Section, bench_env, fmt_ms, fmt_ratio, install_step_timer, md_table, median

__all__ = ["optimizer_steps", "compile_runs", "render", "run_benchmark"]

MODELS = ("mlp", "simple_cnn", "tiny_resnet")
OPTIMIZERS = ("adam", "adamw", "sgd")
IMPLS = ("for_loop", "foreach", "fused")


def optimizer_steps(models: tuple[str, ...], threads: int = 1, steps: int = 200) -> dict[str, Any]:
    """model -> optimizer -> impl -> CPU seconds per ``step()``, and what ``optimizer.impl=auto`` picks."""
    import time

    import torch

    import lightplug
    from lightplug.optim import build_optimizer, optimizer_impl

    torch.set_num_threads(threads)
    out: dict[str, Any] = {}
    for model in models:
        params = list(lightplug.build_model(model).parameters())
        for p in params:
            p.grad = torch.randn_like(p)
        for name in OPTIMIZERS:
            row: dict[str, Any] = {}
            for impl in IMPLS:
                opt = build_optimizer(params, {"name": name, "lr": 1e-3, "momentum": 0.9, "impl": impl})
                for _ in range(20):
                    opt.step()
                best = float("inf")
                for _ in range(5):
                    t = time.thread_time()
                    for _ in range(steps):
                        opt.step()
                    best = min(best, (time.thread_time() - t) / steps)
                row[impl] = best
            row["auto"] = optimizer_impl(build_optimizer(params, {"name": name, "lr": 1e-3, "impl": "auto"}))
            row["params"] = sum(p.numel() for p in params)
            out.setdefault(model, {})[name] = row
    return out


def _first_epoch(timing: dict[str, Any]) -> float:
    """Seconds from the first step of epoch 0 to the first step of epoch 1."""
    starts: dict[int, float] = {}
    for epoch, wall, _ in timing["batches"]:
        starts.setdefault(int(epoch), float(wall))
    return starts[1] - starts[0] if 1 in starts else float("nan")


def compile_runs(models: tuple[str, ...], rounds: int, epochs: int, threads: int, skip_epochs: int, workdir: Path,
                 log: Any = print) -> dict[str, Any]:
    """model -> {"eager": [runs], "compiled": [runs]}, interleaved rounds."""
    from overhead import run_lightplug, summarize

    site, cache = workdir / "site", workdir / "cache"
    install_step_timer(site)
    env = bench_env(site, cache, threads)
    sides = {"eager": ["compile.enabled=false"], "compiled": ["compile.enabled=true"]}
    out: dict[str, Any] = {m: {s: [] for s in sides} for m in models}
    for r in range(rounds):
        order = list(sides.items()) if r % 2 == 0 else list(reversed(sides.items()))
        for model in models:
            for side, extra in order:
                res = run_lightplug(model, epochs, threads, workdir, env, f"{model}-{side}-r{r}", extra, terminal=False)
                timing = res.pop("timing")
                res.update(summarize(timing, skip_epochs))
                res["first_epoch"] = _first_epoch(timing)
                out[model][side].append(res)
                log(f"  compile round {r + 1}/{rounds} {model:12s} {side:9s} per step {fmt_ms(res['per_step'])} ms, first epoch "
                    f"{res['first_epoch']:.1f} s, first step after {res['first_step']:.1f} s")
    return out


def render(steps: dict[str, Any], compiled: dict[str, Any], settings: dict[str, Any]) -> Section:
    """The Markdown section."""
    rows = []
    for model, by_opt in steps.items():
        for name, row in by_opt.items():
            rows.append([f"`{model}`", name, f"{row['params']:,}", *[fmt_ms(row[i], 3) for i in IMPLS],
                         fmt_ratio(row["for_loop"] / row["fused"]), row["auto"]])
    body = ("**Optimizer step** (`optimizer.step()` alone, gradients set, CPU time of the thread, best of 5 x 200 steps, "
            f"{settings['threads']} torch thread; built by lightplug's `build_optimizer`, so `auto` is what a run uses):\n\n"
            + md_table(["model", "optimizer", "parameters", "for_loop ms", "foreach ms", "fused ms", "fused speed-up over for_loop",
                        "optimizer.impl=auto picks"], rows))
    crow, data = [], {"optimizer_steps": steps, "compile": {}, "settings": settings}
    for model, sides in compiled.items():
        e, c = sides["eager"], sides["compiled"]
        speedup = median([a["per_step"] / b["per_step"] for a, b in zip(e, c) if b["per_step"] > 0])
        cost = median([(b["first_epoch"] - a["first_epoch"]) + (b["first_step"] - a["first_step"]) for a, b in zip(e, c)])
        steady = median([x["per_step"] for x in e]) - median([x["per_step"] for x in c])
        steps_to_pay = cost / steady if steady > 0 else float("inf")
        data["compile"][model] = {"speedup": speedup, "compile_s": cost, "runs": sides, "steps_to_pay_back": steps_to_pay}
        crow.append([f"`{model}`", fmt_ms(median([x["per_step"] for x in e])), fmt_ms(median([x["per_step"] for x in c])), fmt_ratio(speedup),
                     f"{median([x['first_epoch'] for x in e]):.1f}", f"{median([x['first_epoch'] for x in c]):.1f}", f"{cost:.1f}",
                     f"{steps_to_pay:,.0f}" if steps_to_pay != float("inf") else "never"])
    s = settings
    body += (f"\n\n**torch.compile** (`lightplug train model=NAME compile.enabled=true` against `=false`: inductor, mode `default`; "
             f"{s['threads']} torch thread, {s['epochs']} epochs, the first {s['skip_epochs']} left out of the per-step figure, "
             f"{s['rounds']} interleaved rounds, medians; speed-up: eager per step over compiled per step, round by round):\n\n"
             + md_table(["model", "eager per step ms", "compiled per step ms", "speed-up", "eager first epoch s", "compiled first epoch s",
                         "compile cost s", "steps to pay it back"], crow)
             + "\n\nCompile cost: the compiled run's first epoch and start-up minus the eager run's (tracing, inductor's code generation "
               "and C++ compilation of the training graph, the evaluation graph and the graph of the last, smaller batch). Checkpoints of "
               "a compiled run hold the plain module's keys, and export rebuilds the plain module from the checkpoint.")
    return Section("Training options: optimizer implementation and torch.compile", body, data)


def run_benchmark(quick: bool = False, workdir: Path | None = None, rounds: int | None = None, epochs: int | None = None,
                  threads: int = 1, skip_epochs: int | None = None, models: tuple[str, ...] = MODELS, log: Any = print) -> Section:
    """Measure and render; ``quick``: ``mlp`` only, one round of 3 epochs (a smoke run, not a measurement)."""
    rounds = rounds or (1 if quick else 2)
    epochs = epochs or (3 if quick else 5)
    skip_epochs = skip_epochs if skip_epochs is not None else (1 if quick else 2)
    models = ("mlp",) if quick and models == MODELS else models
    steps = optimizer_steps(models, threads, 50 if quick else 200)
    with tempfile.TemporaryDirectory(prefix="lp-options-") as tmp:
        base = Path(workdir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        compiled = compile_runs(models, rounds, epochs, threads, skip_epochs, base, log)
    return render(steps, compiled, {"rounds": rounds, "epochs": epochs, "threads": threads, "skip_epochs": skip_epochs})


def main() -> None:
    """Command line: print the section (and write JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--skip-epochs", type=int)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    section = run_benchmark(a.quick, a.workdir, a.rounds, a.epochs, a.threads, a.skip_epochs, tuple(a.models.split(",")))
    print(section.markdown())
    if a.json:
        a.json.write_text(json.dumps(section.data, indent=2, default=str))


if __name__ == "__main__":
    main()
