"""Run every benchmark in ``benchmarks/`` and write ``benchmarks/RESULTS.md``.

Sections, in order: framework overhead against a plain loop over the DataLoader, a tensor-indexing loop and
bare Lightning (``overhead.py``), the core's overhead fixes before/after (``attribution.py``), start-up
(``startup.py``), where an epoch goes (``epoch_breakdown.py``), the README's command (``readme_run.py``), the optimizer's implementation and torch.compile
(``training_options.py``), data loading (``data_loading.py``), export speed (``export_speed.py``), GPU
throughput (``gpu_throughput.py``) and detection (``detection.py``: YOLO's time to quality, FCOS in the same
time, YOLO's step time against a raw loop). The file starts with the machine (CPU
model, cores, memory, load average at the start and end and around each section), the versions, and a
summary of the headline figures.

Run: ``nox -s bench`` or ``python benchmarks/run_all.py [--quick] [--output PATH] [--only overhead,startup]``.
``--quick`` is a smoke run with tiny settings (about a minute on an idle 2-core machine); its figures are
not measurements. Exits 1 when a benchmark failed (its section says why; the others are still written).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _common import HERE, Section, load_average, machine_info, md_table, versions

SECTIONS = ("overhead", "breakdown", "attribution", "startup", "readme", "options", "data", "export", "gpu", "detection")


def _runners(args: argparse.Namespace, state: dict[str, Any]) -> dict[str, Callable[[], Section]]:
    import attribution
    import data_loading
    import detection
    import epoch_breakdown
    import export_speed
    import gpu_throughput
    import overhead
    import readme_run
    import startup
    import training_options

    def first_steps() -> dict[str, dict[str, float]] | None:
        data = state.get("overhead")
        return {m: v["first_step"] for m, v in data["models"].items()} if data else None

    return {
        "overhead": lambda: overhead.run_benchmark(args.quick, threads=args.threads),
        "breakdown": lambda: epoch_breakdown.run_benchmark(args.quick, threads=args.threads),
        "attribution": lambda: attribution.run_benchmark(args.quick, threads=args.threads),
        "startup": lambda: startup.run_benchmark(args.quick, first_steps=first_steps()),
        "readme": lambda: readme_run.run_benchmark(args.quick),
        "options": lambda: training_options.run_benchmark(args.quick, threads=args.threads),
        "data": lambda: data_loading.run_benchmark(args.quick, threads=args.threads),
        "export": lambda: export_speed.run_benchmark(args.quick, threads=args.export_threads),
        "gpu": lambda: gpu_throughput.run_benchmark(args.quick),
        "detection": lambda: detection.run_benchmark(args.quick, threads=args.threads),
    }


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its finished children (0 where the OS does not tell)."""
    try:
        import resource
    except ImportError:
        return 0.0
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _load(value: tuple[float, float, float] | None) -> str:
    return " / ".join(f"{x:.2f}" for x in value) if value else "n/a"


def _header(args: argparse.Namespace, machine: dict[str, Any], end_load: Any, minutes: float) -> str:
    cmd = "python benchmarks/run_all.py" + (" --quick" if args.quick else "") + (f" --only {args.only}" if args.only else "")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"# lightplug benchmarks\n\nWritten by `{cmd}` on {now} in {minutes:.1f} min (`nox -s bench` runs it). "
           "Every figure below comes from this run."]
    if args.quick:
        out.append("\n**`--quick`: a smoke run with tiny settings (one round, a few epochs): these figures are not measurements.**")
    rows = [["CPU", machine["cpu"]], ["logical cores", f"{machine['cores']} ({machine['usable_cores']} usable by this process)"],
            ["memory", f"{machine['memory_gb']} GB"], ["OS", machine["os"]], ["Python", machine["python"]],
            ["load average (1/5/15 min) at the start", _load(machine["load_average"])], ["load average at the end", _load(end_load)]]
    out.append("\n## Machine and versions\n\n" + md_table(["", ""], rows))
    one = (machine["load_average"] or (0.0,))[0]
    if one > 0.5 * (machine["cores"] or 1):
        out.append(f"\nThe machine was busy while this ran (1-minute load average {one:.2f} on {machine['cores']} cores, from other "
                   "processes): wall-clock figures carry that noise; the CPU-time columns and the timings of single pieces are less "
                   "affected. The load around each section is given at its end.")
    out.append("\n" + md_table(["package", "version"], [[k, v or "not installed"] for k, v in versions().items()]))
    return "\n".join(out) + "\n"


def _summary(state: dict[str, Any]) -> str:
    lines = []
    ov = state.get("overhead")
    if ov:
        from overhead import TARGETS, VAL_TARGET

        def verdict(value: float, target: float | None) -> str:
            return "" if target is None else f" (target <= {target}: {'met' if value <= target else '**not met**'})"

        for model, sides in ov["models"].items():
            r = sides["lightplug"]["ratios"]
            lines.append(f"- `{model}`, `lightplug train` with its defaults over a plain PyTorch loop over the same DataLoader: per step "
                         f"x{r['per_step/dataloader']:.3f}{verdict(r['per_step/dataloader'], TARGETS.get((model, 'per_step')))} "
                         f"(CPU x{r['per_step_cpu/dataloader']:.3f}; over the tensor loop x{r['per_step/raw']:.3f}, over bare Lightning "
                         f"x{r['per_step/lightning']:.3f}); per epoch with validation x{r['per_epoch_full/dataloader']:.3f}"
                         f"{verdict(r['per_epoch_full/dataloader'], TARGETS.get((model, 'per_epoch_full')))}; a validation run "
                         f"x{r['val/lightning']:.3f} of bare Lightning's{verdict(r['val/lightning'], VAL_TARGET)}.")
    at = state.get("attribution")
    if at:
        from _common import median

        for model, variants in at["results"].items():
            b, a = (median([x["per_step_cpu"] for x in variants[v]]) for v in ("all reverted", "current"))
            lines.append(f"- `{model}`: the core's overhead fixes took a training step from {b * 1e3:.3f} to {a * 1e3:.3f} ms of CPU "
                         f"({(b - a) / b:.0%} less).")
    st = state.get("startup")
    if st:
        c = st["commands"]
        tl = st["imports"]["python -c 'import torch, lightning'"]["median"]
        lines.append(f"- Start-up with {st['plugins']} extra plugins: `lightplug --help` {c['lightplug --help']['median']:.3f} s, "
                     f"`lightplug models` {c['lightplug models']['median']:.3f} s (target < 0.3 s; torch imported: "
                     f"{'yes' if any(v['imports']['torch'] for v in c.values()) else 'no'}, lightning: "
                     f"{'yes' if any(v['imports']['lightning'] for v in c.values()) else 'no'}); a process that only imports torch and lightning "
                     f"has them after {tl:.2f} s.")
        from startup import TARGET_BEYOND_S

        for model, v in (st.get("first_steps") or {}).items():
            beyond = v["lightplug"] - tl
            lines.append(f"- `lightplug train model={model}` to its first training step: {v['lightplug']:.2f} s ({beyond:+.2f} s beyond the "
                         f"imports, target <= {TARGET_BEYOND_S}: {'met' if beyond <= TARGET_BEYOND_S else '**not met**'}; bare Lightning "
                         f"{v['lightning']:.2f} s, raw loop {v['raw']:.2f} s).")
    rd = state.get("readme")
    if rd:
        from readme_run import COMMAND, TARGET_S

        lines.append(f"- The README's command `lightplug {' '.join(COMMAND)}`: median {rd['median_wall']:.2f} s wall of {len(rd['runs']) - 1} "
                     f"runs after a cold one ({rd['median_cpu']:.2f} s CPU), target <= {TARGET_S:.0f} s: "
                     f"{'met' if rd['median_wall'] <= TARGET_S else '**not met**'}.")
    op = state.get("options")
    if op:
        parts = [f"`{m}` Adam fused x{v['adam']['for_loop'] / v['adam']['fused']:.2f} faster than for_loop" for m, v in op["optimizer_steps"].items()]
        parts += [f"`{m}` compiled x{v['speedup']:.2f} per step after {v['compile_s']:.0f} s of compiling" for m, v in op["compile"].items()]
        lines.append("- Training options (CPU, 1 thread): " + "; ".join(parts) + ".")
    ex = state.get("export")
    if ex:
        parts = []
        for model, rep in ex["reports"].items():
            for key, r in rep["ratios"].items():
                parts.append(f"`{model}` {key.split('_vs_')[0]} p50 x{r['latency_p50'] or 0:.2f} / throughput x{r['throughput'] or 0:.2f}")
        lines.append("- Export speed-ups over eager PyTorch (latency at batch 1, throughput at batch 32): " + "; ".join(parts) + ".")
    gpu = state.get("gpu")
    if gpu is not None:
        if gpu.get("measured"):
            res = gpu["images_per_s"]
            from _common import median

            lines.append(f"- GPU ({gpu['gpu']}): ResNet-50 bf16 {median(res['lightplug']):.0f} images/s through `lightplug train`, "
                         f"{median(res['raw']):.0f} with a raw loop.")
        else:
            lines.append("- GPU: no GPU available on this machine; not measured.")
    det = state.get("detection")
    if det:
        from detection import TARGET_MAP50, TARGET_SECONDS

        y, f, st = det["yolo"], det["fcos"], det["steps"]
        reached = (f"{TARGET_MAP50} first reached by epoch {y['target_epoch']}'s validation, "
                   + (f"{y['target_reached_at']:.0f} s after the start" if y["target_reached_at"] is not None else "time unknown")
                   if y["target_epoch"] is not None else f"never reached {TARGET_MAP50}")
        fcos = f"{f['best_map_50']:.3f}" if f["best_map_50"] is not None else "no validation finished"
        lines.append(f"- Detection (`{y['command']}`): best val/map_50 {y['best_map_50']:.3f}, the command took {y['wall']:.0f} s ({reached}); "
                     f"target >= {TARGET_MAP50} in under {TARGET_SECONDS / 60:.0f} min: {'met' if y['met'] else '**not met**'}. FCOS (torchvision "
                     f"plugin) in the same time: best val/map_50 {fcos}. YOLO per-step time of `lightplug train` x{st['per_step_ratio']:.3f} of a "
                     f"raw PyTorch loop (CPU time x{st['per_step_cpu_ratio']:.3f}).")
    return "## Summary\n\n" + "\n".join(lines) + "\n" if lines else ""


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, write the results; return the exit code."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run with tiny settings (not a measurement)")
    p.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--json", type=Path, help="also write every figure as JSON")
    p.add_argument("--only", help=f"comma-separated sections (of {', '.join(SECTIONS)})")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the training runs (default 1: steadier on a shared machine)")
    p.add_argument("--export-threads", type=int, default=1, help="torch and onnxruntime threads of the export timings")
    args = p.parse_args(argv)
    chosen = [s for s in SECTIONS if not args.only or s in args.only.split(",")]
    machine, start = machine_info(), time.perf_counter()
    state: dict[str, Any] = {}
    runners = _runners(args, state)
    sections, failed = [], []
    for name in chosen:
        before = load_average()
        print(f"== {name} (load average {_load(before)})", flush=True)
        t0, cpu0 = time.perf_counter(), _cpu_seconds()
        try:
            section = runners[name]()
            state[name] = section.data
        except Exception as exc:  # noqa: BLE001 - one failing benchmark must not lose the others' figures
            traceback.print_exc()
            failed.append(name)
            section = Section(name, f"**failed**: `{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}`")
        section.body += (f"\n\n_Load average (1/5/15 min) before: {_load(before)}, after: {_load(load_average())}; "
                         f"{time.perf_counter() - t0:.0f} s wall, {_cpu_seconds() - cpu0:.0f} s CPU (this process and its children)._")
        sections.append(section)
    text = _header(args, machine, load_average(), (time.perf_counter() - start) / 60) + "\n" + _summary(state)
    text += "\n" + "\n".join(s.markdown() for s in sections)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "versions": versions(), "sections": {s.title: s.data for s in sections}},
                                        indent=1, default=str))
    print(f"wrote {args.output}" + (f"; failed: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
