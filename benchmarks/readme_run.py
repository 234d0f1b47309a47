"""The README's command as a newcomer runs it: ``lightplug train model=mlp +preset=easy``, wall clock.

The command exactly as printed (only ``hydra.run.dir`` added so that each run has its own folder), in a
pseudo-terminal (the progress bar drawn as in a shell), with ``OMP_NUM_THREADS`` and ``MKL_NUM_THREADS`` unset
(torch uses every core, as for a newcomer), a private plugin cache, from a fresh process each time. The first
run is the cold one (plugin cache empty, files not yet in the OS cache) and is reported apart; the figure is
the median of the next ``--runs`` (5). Also per run: CPU time of the process (user + system, which a busy
machine disturbs less than wall time), the best ``val/acc`` from ``summary.json``, and the 1-minute load
average before it started. Target: a median of 10 s or less on a quiet 2-core machine.

Run: ``python benchmarks/readme_run.py [--quick] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from _common import Section, bench_env, lightplug_cmd, load_average, md_table, median, run

__all__ = ["COMMAND", "TARGET_S", "measure", "render", "run_benchmark"]

#: The README's command (after ``lightplug``).
COMMAND = ("train", "model=mlp", "+preset=easy")
#: Seconds (median wall clock) the README promises.
TARGET_S = 10.0


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(runs: int, workdir: Path, extra: tuple[str, ...] = (), log: Any = print) -> dict[str, Any]:
    """Run the command ``runs + 1`` times; the first is the cold run."""
    env = bench_env(None, workdir / "cache")
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(key, None)
    out: dict[str, Any] = {"runs": []}
    for i in range(runs + 1):
        folder = workdir / f"run{i}"
        load = (load_average() or (float("nan"),))[0]
        cpu0 = _children_cpu()
        code, text, wall = run(lightplug_cmd(*COMMAND, *extra, f"hydra.run.dir={folder}"), env=env, cwd=workdir, terminal=True)
        if code != 0:
            raise RuntimeError(f"the README's command failed ({code}):\n{text[-3000:]}")
        summary = json.loads((folder / "summary.json").read_text())
        res = {"wall": wall, "cpu": _children_cpu() - cpu0, "val_acc": summary.get("best"), "load": load, "cold": i == 0}
        out["runs"].append(res)
        log(f"  readme run {i}{' (cold)' if i == 0 else ''}: {wall:.2f} s wall, {res['cpu']:.2f} s CPU, val/acc {res['val_acc']:.3f}, "
            f"load {load:.2f}")
    warm = [r for r in out["runs"] if not r["cold"]]
    out["median_wall"], out["median_cpu"] = median([r["wall"] for r in warm]), median([r["cpu"] for r in warm])
    out["threads"] = os.environ.get("OMP_NUM_THREADS") or f"unset ({os.cpu_count()} cores)"
    return out


def render(data: dict[str, Any]) -> Section:
    """The Markdown section."""
    runs = data["runs"]
    rows = [[("cold (excluded)" if r["cold"] else str(i)), f"{r['wall']:.2f}", f"{r['cpu']:.2f}", f"{r['val_acc']:.3f}", f"{r['load']:.2f}"]
            for i, r in enumerate(runs)]
    met = "met" if data["median_wall"] <= TARGET_S else "**not met**"
    busy = max(r["load"] for r in runs if not r["cold"]) > 0.5
    body = (f"`lightplug {' '.join(COMMAND)}` exactly as the README prints it (plus `hydra.run.dir`), in a pseudo-terminal, "
            f"`OMP_NUM_THREADS` unset (torch uses every core), a fresh process each time: spawn to exit. The first run (empty plugin "
            f"cache, cold files) is excluded; **median of {len(runs) - 1}: {data['median_wall']:.2f} s wall** (target <= {TARGET_S:.0f} s: "
            f"{met}), {data['median_cpu']:.2f} s CPU (user + system).\n\n"
            + md_table(["run", "wall s", "CPU s", "best val/acc", "1-min load before"], rows))
    if busy:
        body += ("\n\nThe machine was busy during these runs (1-minute load average above 0.5 before some of them): with every core "
                 "in use by torch, each of its steps waits for the other processes, so the wall figures are above a quiet machine's; "
                 "the CPU column is the steadier one.")
    return Section("The README's command", body, data)


def run_benchmark(quick: bool = False, workdir: Path | None = None, runs: int | None = None, log: Any = print) -> Section:
    """Measure and render; ``quick``: one warm run of 2 epochs (a smoke run, not a measurement)."""
    runs = runs or (1 if quick else 5)
    extra = ("trainer.max_epochs=2",) if quick else ()
    with tempfile.TemporaryDirectory(prefix="lp-readme-") as tmp:
        base = Path(workdir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        data = measure(runs, base, extra, log)
    data["quick"] = quick
    return render(data)


def main() -> None:
    """Command line: print the section (and write JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--runs", type=int)
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    section = run_benchmark(a.quick, a.workdir, a.runs)
    print(section.markdown())
    if a.json:
        a.json.write_text(json.dumps(section.data, indent=2, default=str))


if __name__ == "__main__":
    main()
