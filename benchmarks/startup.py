"""Start-up: ``lightplug --help`` and ``lightplug models`` with 20 extra plugins installed, the time
from ``lightplug train`` to its first training step beside a bare ``import torch, lightning``, and what
``lightplug train`` imports before its first step (``python -X importtime``), by package.

20 throw-away plugin distributions (a dist-info with an entry point in ``lightplug.models`` and a tier-1
plugin module each, as pip would install them) are written into a temporary folder put first on
PYTHONPATH, with a private, empty plugin cache. Each command runs in a fresh process: the first run (empty
cache) is reported apart from the median of the next ``--runs``. ``python -X importtime`` shows whether a
command imports torch or lightning, and which imports cost most.

Run: ``python benchmarks/startup.py [--quick] [--runs 10]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import Section, bench_env, make_dist, md_table, median, run

__all__ = ["write_plugins", "import_report", "importtime_rows", "train_imports", "measure", "render", "run_benchmark", "N_PLUGINS", "TARGET_S",
           "TARGET_BEYOND_S"]

N_PLUGINS = 20
#: Seconds within which ``lightplug --help`` and ``lightplug models`` should answer.
TARGET_S = 0.3
#: Seconds of ``lightplug train`` to its first step beyond ``import torch, lightning``.
TARGET_BEYOND_S = 0.3
#: Top-level imports whose whole subtree is the floor of any Lightning-based trainer.
UPSTREAM = ("torch", "lightning")

PLUGIN = '''
"""Throw-away model plugin {i} of the start-up benchmark (torch is imported only by build)."""
from dataclasses import dataclass
from typing import Annotated

from lightplug import ModelPlugin, Param


@dataclass
class Config:
    hidden: Annotated[int, Param(ge=1, help="hidden units")] = 16
    num_classes: Annotated[int, Param(ge=2, help="classes (bound to the data)")] = 10


class Model(ModelPlugin):
    """Benchmark plugin {i}: a linear classifier."""

    task = "classification"
    Config = Config

    def build(self, cfg):
        from torch import nn

        return nn.Sequential(nn.Flatten(), nn.LazyLinear(cfg.num_classes))
'''


def write_plugins(site: Path, n: int = N_PLUGINS) -> list[str]:
    """Install ``n`` plugin distributions into ``site``; return the plugin names."""
    names = []
    for i in range(n):
        name, module = f"bench_{i:02d}", f"lp_bench_plugin_{i:02d}"
        make_dist(site, f"lp-bench-plugin-{i:02d}", entry_points={"lightplug.models": {name: f"{module}:Model"}},
                  modules={f"{module}.py": PLUGIN.format(i=i)}, summary=f"start-up benchmark plugin {i}")
        names.append(name)
    return names


def _lightplug() -> list[str]:
    """The ``lightplug`` console script next to this interpreter (what users run), else ``python -m lightplug``."""
    script = Path(sys.executable).parent / "lightplug"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "lightplug"]


def importtime_rows(text: str) -> list[tuple[int, int, str]]:
    """``(self us, cumulative us, name with its indentation)`` of each line ``python -X importtime`` printed."""
    rows = []
    for line in text.splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line.split(":", 1)[1].split("|")
            if parts[0].strip().isdigit():
                rows.append((int(parts[0]), int(parts[1]), parts[2].rstrip("\n")[1:]))
    return rows


def _importer_chain(rows: list[tuple[int, int, str]], module: str) -> list[str]:
    """Who imported ``module`` first: the module, its importer, ... up to a top-level import."""
    for i, (_, _, name) in enumerate(rows):
        if name.strip() == module:
            depth, chain = len(name) - len(name.lstrip()), [module]
            for _, _, other in rows[i + 1:]:
                d = len(other) - len(other.lstrip())
                if d < depth:
                    chain.append(other.strip())
                    depth = d
            return chain
    return []


def train_imports(env: dict[str, str], workdir: Path) -> dict[str, Any]:
    """``python -X importtime -m lightplug train model=mlp`` (1 epoch): self time of every import summed by top-level
    package, split into what ``import lightning`` brings (upstream) and the rest, and who imports matplotlib,
    scikit-learn and scipy."""
    code, text, _ = run([sys.executable, "-X", "importtime", "-m", "lightplug", "train", "model=mlp", "trainer.max_epochs=1",
                         "trainer.enable_progress_bar=false", f"hydra.run.dir={workdir / 'importtime'}"], env=env, cwd=workdir)
    if code != 0:
        raise RuntimeError(f"lightplug train failed under -X importtime ({code}):\n{text[-2000:]}")
    rows = importtime_rows(text)
    # importtime prints a module after everything it imported: a top-level import's subtree is the run of
    # deeper lines just above it
    subtree_self: dict[str, int] = {}
    pending = 0
    for own, _, name in rows:
        pending += own
        if not name.startswith(" "):
            root = name.strip().split(".")[0]
            subtree_self[root] = subtree_self.get(root, 0) + pending
            pending = 0
    upstream = {k: v for k, v in subtree_self.items() if k in UPSTREAM}
    rest = {k: v for k, v in subtree_self.items() if k not in UPSTREAM}
    chains = {m: _importer_chain(rows, m) for m in ("matplotlib", "sklearn", "scipy", "torchvision", "torch._dynamo", "rich")}
    return {"upstream_s": sum(upstream.values()) / 1e6, "rest_s": sum(rest.values()) / 1e6,
            "top_rest": sorted(((k, v / 1e6) for k, v in rest.items()), key=lambda kv: -kv[1])[:8], "chains": chains}


def import_report(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Run ``python -X importtime -m lightplug ARGS``: whether torch/lightning were imported, the top imports."""
    code, text, _ = run([sys.executable, "-X", "importtime", "-m", "lightplug", *args], env=env)
    rows = [(cum, name) for _, cum, name in importtime_rows(text)]
    names = {name.strip() for _, name in rows}
    top = [name.strip() for _, name in sorted((r for r in rows if not r[1].startswith(" ")), reverse=True)[:4]]
    total = sum(us for us, name in rows if not name.startswith(" "))
    return {"torch": any(n == "torch" or n.startswith("torch.") for n in names),
            "lightning": any(n.split(".")[0] in ("lightning", "pytorch_lightning") for n in names),
            "top_level_imports_s": total / 1e6, "top": top, "exit_code": code}


def measure(runs: int, torch_runs: int, workdir: Path, log: Any = print) -> dict[str, Any]:
    """Time the commands; return their figures."""
    site, cache = workdir / "site", workdir / "cache"
    names = write_plugins(site)
    env = bench_env(site, cache)
    cmds = {"lightplug --help": [*_lightplug(), "--help"], "lightplug models": [*_lightplug(), "models"]}
    out: dict[str, Any] = {"plugins": len(names), "commands": {}}
    for label, cmd in cmds.items():
        code, text, first = run(cmd, env=env)
        if code != 0:
            raise RuntimeError(f"{label} failed ({code}):\n{text[-2000:]}")
        if label == "lightplug models":
            missing = [n for n in names if n not in text]
            if missing:
                raise RuntimeError(f"lightplug models does not list {missing[:3]}...:\n{text[-2000:]}")
        times = [run(cmd, env=env)[2] for _ in range(runs)]
        out["commands"][label] = {"first": first, "median": median(times), "min": min(times), "runs": runs,
                                  "imports": import_report(cmd[-1:], env)}
        log(f"  startup {label}: first {first:.3f} s, median {median(times):.3f} s")
    floor = {"python -c pass": "pass", "python -c 'import torch'": "import torch", "python -c 'import torch, lightning'": "import torch, lightning",
             "the same, collector paused (as lightplug train)": "import gc; gc.disable(); import torch, lightning; gc.enable(); gc.freeze()"}
    out["imports"] = {}
    for label, snippet in floor.items():
        done, whole = [], []
        if snippet == "import torch" and torch_runs < 2:  # --quick: torch with lightning is enough
            continue
        for _ in range(runs if snippet == "pass" else torch_runs):
            spawned = time.time()
            rc, text, wall = run([sys.executable, "-c", f"import time; {snippet}; print(repr(time.time()))"], env=env)
            if rc != 0:
                raise RuntimeError(f"{label} failed ({rc}):\n{text[-2000:]}")
            done.append(float(text.strip().splitlines()[-1]) - spawned)
            whole.append(wall)
        out["imports"][label] = {"median": median(done), "process_median": median(whole), "runs": len(done)}
        log(f"  startup {label}: imported after {median(done):.3f} s (process {median(whole):.3f} s)")
    out["train_imports"] = train_imports(env, workdir)
    return out


def render(data: dict[str, Any], first_steps: dict[str, dict[str, float]] | None = None) -> Section:
    """The Markdown section; ``first_steps``: model -> {"lightplug": s, "raw": s} from the overhead benchmark."""
    rows = []
    for label, c in data["commands"].items():
        imp = c["imports"]
        ok = "yes" if c["median"] < TARGET_S else "**no**"
        rows.append([f"`{label}`", f"{c['first']:.3f}", f"{c['median']:.3f}", f"{c['min']:.3f}", ok,
                     "**yes**" if imp["torch"] else "no", "**yes**" if imp["lightning"] else "no", ", ".join(imp["top"])])
    body = (f"{data['plugins']} throw-away plugin distributions installed (on PYTHONPATH, private plugin cache). Seconds of wall time "
            f"per process; median of {next(iter(data['commands'].values()))['runs']} runs after the first (empty cache) run. "
            f"Target: under {TARGET_S} s, importing neither torch nor lightning (checked with `python -X importtime`).\n\n"
            + md_table(["command", "first run s", "median s", "min s", f"< {TARGET_S} s", "imports torch", "imports lightning",
                        "costliest imports"], rows))
    imp_rows = [[f"`{label}`", f"{v['median']:.3f}", f"{v['process_median']:.3f}", v["runs"]] for label, v in data["imports"].items()]
    body += ("\n\nImporting the heavy libraries alone (the floor of any training command): seconds from spawning the process to the "
             "end of the imports, and to the end of the process (interpreter shutdown included), medians:\n\n"
             + md_table(["command", "imported after s", "whole process s", "runs"], imp_rows))
    if first_steps:
        tl = data["imports"]["python -c 'import torch, lightning'"]["median"]
        paused = data["imports"].get("the same, collector paused (as lightplug train)", {}).get("median", float("nan"))
        fs_rows = [[f"`{m}`", f"{v['lightplug']:.2f}", f"{tl:.2f}", f"**{v['lightplug'] - tl:.2f}**"
                    f"{'' if v['lightplug'] - tl <= TARGET_BEYOND_S else ' (target <= ' + str(TARGET_BEYOND_S) + ': **not met**)'}",
                    f"{v['lightplug'] - paused:.2f}", f"{v.get('lightning', float('nan')):.2f}", f"{v.get('dataloader', float('nan')):.2f}",
                    f"{v['raw']:.2f}"] for m, v in first_steps.items()]
        body += ("\n\nFrom spawning `lightplug train model=NAME` to its first training step (median over the overhead rounds), beside "
                 "the imports alone (above), a bare `lightning.Trainer` script, the plain loop over the DataLoader (which imports "
                 "lightning for lightplug's data module) and the tensor loop (torch and scikit-learn, no lightning). Beyond the imports "
                 "lightplug composes and checks the config (once, then Hydra's job runner), builds the data and the model, checks a first "
                 f"batch, and Lightning runs the sanity validation and the model summary. Target: at most {TARGET_BEYOND_S} s beyond "
                 "`import torch, lightning`; lightplug imports them with the garbage collector paused, so the last but three column "
                 "counts what that saves:\n\n"
                 + md_table(["model", "lightplug train s", "import torch, lightning s", "lightplug beyond the imports s",
                             "beyond the imports with the collector paused s", "bare Lightning s", "DataLoader loop s", "tensor loop s"], fs_rows))
    ti = data.get("train_imports")
    if ti:
        top_rest = ", ".join(f"{k} {v:.3f}" for k, v in ti["top_rest"])
        chains = "; ".join(f"`{m}` <- {' <- '.join(c[1:4])}{' ...' if len(c) > 4 else ''}" for m, c in ti["chains"].items() if len(c) > 1)
        body += (f"\n\nWhat `lightplug train model=mlp` imports before it trains (`python -X importtime`, self time of every module "
                 f"summed under each top-level import; importtime itself slows imports down): **{ti['upstream_s']:.2f} s under `import torch` "
                 f"and `import lightning`** and **{ti['rest_s']:.2f} s under every other import** ({top_rest}). Who imports what "
                 f"(first importer first): {chains}. Lightning imports torchmetrics, whose `functional.image` imports torchvision "
                 "(whose `ops` import `torch._dynamo`, hence sympy) and whose plotting utilities import matplotlib and pyplot whenever "
                 "matplotlib is installed; neither has a switch to skip that. lightplug's own modules import no plotting, "
                 "scikit-learn or table code before they are used (the digits are read from scikit-learn's data file without "
                 "importing it).")
    return Section("Start-up", body, {**data, "first_steps": first_steps or {}})


def run_benchmark(quick: bool = False, workdir: Path | None = None, runs: int | None = None,
                  first_steps: dict[str, dict[str, float]] | None = None, log: Any = print) -> Section:
    """Measure and render; ``quick``: 2 runs per command and one import of torch and lightning."""
    runs = runs or (2 if quick else 10)
    with tempfile.TemporaryDirectory(prefix="lp-startup-") as tmp:
        base = Path(workdir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        data = measure(runs, 1 if quick else 5, base, log)
    return render(data, first_steps)


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
