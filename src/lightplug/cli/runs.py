"""``lightplug runs``: list, show and compare the runs recorded in ``runs.db`` (see :mod:`lightplug.runs`).

    lightplug runs [--model X] [--status S] [--limit N] [--db PATH]      (default: ~/.lightplug/runs.db)
    lightplug runs show ID [--json] [--db PATH]
    lightplug runs compare ID ID [...] [--out PNG] [--db PATH]

Reads the database with sqlite3 and prints with Rich; torch is never imported, matplotlib only by
``compare`` to draw the learning curves.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LightplugError
from ..runs import ENV_DB, STATUSES, RunStore, db_path, flatten
from ._args import positive_int

__all__ = ["main"]

_STYLE = {"running": "yellow", "completed": "green", "failed": "red", "interrupted": "magenta", "crashed": "red"}


class NoRuns(LightplugError):
    """The runs database does not exist (yet)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"no runs database at {path}", hint="`lightplug train` records every run there; give --db PATH for another one")
        self.path = path


def _db(given: str | None) -> RunStore:
    """The database to read: ``--db``, else the runs index (``$LIGHTPLUG_RUNS_DB``, else ``$LIGHTPLUG_HOME/runs.db``)."""
    path = Path(given).expanduser() if given else db_path()
    if path is None:
        raise LightplugError(f"{ENV_DB}={os.environ.get(ENV_DB)} switches the runs index off", hint="unset it, or give --db PATH")
    if path.is_dir():
        raise LightplugError(f"--db {given}: is a folder" if given else f"{path}: is a folder, not a runs database",
                             hint=f"give the database file, e.g. --db {path / 'runs.db'}")
    if not path.is_file():
        raise NoRuns(path)
    store = RunStore(path, create=False)
    try:  # a file that is not a runs database: one line, not sqlite's traceback
        store.list_runs(limit=1)
    except sqlite3.DatabaseError as exc:
        raise LightplugError(f"{path}: not a lightplug runs database ({exc})", hint="give --db PATH of a runs.db written by `lightplug train`") from exc
    return store


def _console() -> Any:
    from rich.console import Console

    console = Console(highlight=False)
    if not console.is_terminal:  # pipes and CI get full-width rows instead of wrapped cells
        console = Console(highlight=False, width=max(console.width, 160))
    return console


def _t(value: Any) -> Any:
    """A table cell that shows ``value`` as it is (no Rich markup: ``logger=[csv,wandb]`` stays)."""
    from rich.text import Text

    return Text("" if value is None else str(value))


def _duration(row: dict[str, Any]) -> str:
    if not row.get("ended"):
        return ""
    seconds = (datetime.fromisoformat(row["ended"]) - datetime.fromisoformat(row["started"])).total_seconds()
    minutes, sec = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{sec:02d}s" if minutes else f"{sec}s"


def _num(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _started(row: dict[str, Any]) -> str:
    return datetime.fromisoformat(row["started"]).strftime("%Y-%m-%d %H:%M:%S")


def _folder(row: dict[str, Any]) -> str:
    """The run folder, relative to the current folder when inside it, and ``(missing)`` when it was deleted."""
    path = Path(row["run_dir"])
    try:
        shown = str(path.relative_to(Path.cwd()))
    except ValueError:
        shown = str(path)
    return shown if path.is_dir() else f"{shown} (missing)"


def _status(row: dict[str, Any]) -> str:
    return f"[{_STYLE.get(row['status'], 'white')}]{row['status']}[/]"


def _get(store: RunStore, run_id: str) -> dict[str, Any]:
    if not run_id.isdigit():
        raise ConfigError(f"run id {run_id!r} is not a number (see `lightplug runs` for the ids)")
    row = store.get(int(run_id))
    if row is None:
        raise LightplugError(f"no run {run_id} in {store.path}", hint="`lightplug runs` lists the ids")
    return row


# ---------------------------------------------------------------- list
def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    console = _console()
    try:
        store = _db(args.db)
    except NoRuns as exc:
        if args.db:
            raise
        console.print(f"no runs recorded yet: {exc.path} does not exist (`lightplug train` records every run there)")
        return 0
    rows = store.list_runs(model=args.model, status=args.status, limit=args.limit)
    if not rows:
        console.print(f"no runs in {store.path}" + (" match" if args.model or args.status else ""))
        return 0
    table = Table(title=f"runs in {store.path}", title_justify="left")
    for name, justify in (("ID", "right"), ("STARTED", "left"), ("MODEL", "left"), ("PRESET", "left"), ("STATUS", "left"),
                          ("MONITOR", "left"), ("BEST", "right"), ("DURATION", "right"), ("RUN DIR", "left")):
        table.add_column(name, justify=justify, no_wrap=name in ("ID", "STARTED", "STATUS", "BEST", "DURATION"),  # type: ignore[arg-type]
                         overflow="fold" if name == "RUN DIR" else "ellipsis", min_width=12 if name == "RUN DIR" else None)
    for r in rows:
        table.add_row(str(r["id"]), _started(r), _t(r["model"]), _t(r["preset"]), _status(r), _t(r["monitor"]), _num(r["best"]), _duration(r),
                      _t(_folder(r)))
    console.print(table)
    return 0


# ---------------------------------------------------------------- show
def _show(args: argparse.Namespace) -> int:
    from rich.table import Table

    store = _db(args.db)
    row = _get(store, args.id)
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    console = _console()
    info = Table(show_header=False, box=None, title=f"run {row['id']}", title_justify="left")
    info.add_column(style="bold")
    info.add_column()
    plugin = " ".join(x for x in (row["plugin_dist"], row["plugin_version"]) if x)
    for key, value in (("status", _status(row)), ("error", row["error"]), ("run dir", row["run_dir"] + ("" if Path(row["run_dir"]).is_dir() else " (missing)")), ("started", _started(row)),
                       ("duration", _duration(row)), ("model", f"{row['model']} ({plugin})" if plugin else row["model"]), ("data", row["data"]),
                       ("task", row["task"]), ("preset", row["preset"]), ("overrides", " ".join(row["overrides"] or [])),
                       ("monitor", f"{row['monitor']} ({row['monitor_mode']})"), ("best", _num(row["best"])), ("checkpoint", row["checkpoint"]),
                       ("exports", "\n".join(row["exports"] or [])), ("host", f"{row['host']} (pid {row['pid']})")):
        if value:
            info.add_row(key, value if key == "status" else _t(value))
    console.print(info)
    if row["metrics"]:
        metrics = Table(title="final metrics", title_justify="left")
        metrics.add_column("METRIC")
        metrics.add_column("VALUE", justify="right")
        for key, value in sorted(row["metrics"].items()):
            metrics.add_row(_t(key), _num(value))
        console.print(metrics)
    if row["config"]:
        config = Table(title="resolved config", title_justify="left")
        config.add_column("KEY")
        config.add_column("VALUE")
        for key, value in flatten(row["config"]).items():
            config.add_row(_t(key), _t(json.dumps(value) if not isinstance(value, str) else value))
        console.print(config)
    return 0


# ---------------------------------------------------------------- compare
def differing(configs: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The flattened keys whose values are not the same in every config (missing keys count as ``None``).

    Example:
        >>> differing([{"model": {"hidden": 16}, "seed": 1}, {"model": {"hidden": 32}, "seed": 1}])
        {'model.hidden': [16, 32]}
    """
    flat = [flatten(c or {}) for c in configs]
    keys = sorted({k for f in flat for k in f})
    out = {}
    for key in keys:
        values = [f.get(key) for f in flat]
        if any(json.dumps(v, sort_keys=True, default=str) != json.dumps(values[0], sort_keys=True, default=str) for v in values[1:]):
            out[key] = values
    return out


def read_curves(metrics_csv: Path) -> dict[str, list[tuple[float, float]]]:
    """Per metric, (epoch, value) points from a CSVLogger ``metrics.csv``: the last value logged in each epoch."""
    curves: dict[str, dict[float, float]] = {}
    with metrics_csv.open(newline="") as fh:
        for rec in csv.DictReader(fh):
            epoch = rec.get("epoch")
            if not epoch:
                continue
            for key, value in rec.items():
                if key in ("epoch", "step") or not value or key.startswith("lr-"):
                    continue
                try:
                    curves.setdefault(key, {})[float(epoch)] = float(value)
                except ValueError:
                    continue
    return {k: sorted(v.items()) for k, v in curves.items()}


def plot_curves(rows: list[dict[str, Any]], out: Path) -> list[str]:
    """Draw the monitored metric, ``val/loss`` and ``train/loss`` of each run against the epoch into ``out`` (PNG).

    Returns:
        the runs (as ``#ID``) that had no ``metrics.csv``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    curves, missing = {}, []
    for r in rows:
        path = Path(r["run_dir"]) / "metrics.csv"
        if path.is_file():
            curves[r["id"]] = read_curves(path)
        else:
            missing.append(f"#{r['id']}")
    wanted = list(dict.fromkeys([*(r["monitor"] for r in rows if r["monitor"]), "val/loss", "train/loss"]))
    metrics = [m for m in wanted if any(m in c for c in curves.values())] or ["val/loss"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 4), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for r in rows:
            points = curves.get(r["id"], {}).get(metric)
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=f"#{r['id']} {r['model']}" + (f" ({r['preset']})" if r["preset"] else ""))
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return missing


def _compare(args: argparse.Namespace) -> int:
    from rich.table import Table

    if len(args.ids) < 2:
        raise ConfigError("runs compare needs at least two run ids", hint="e.g. lightplug runs compare 3 4")
    store = _db(args.db)
    rows = [_get(store, i) for i in args.ids]
    console = _console()
    heads = [f"#{r['id']} {r['model']}".replace("[", r"\[") for r in rows]

    diff = differing([r["config"] for r in rows])
    table = Table(title="hyperparameters that differ", title_justify="left")
    table.add_column("KEY")
    for head in heads:
        table.add_column(head)
    for key, values in diff.items():
        table.add_row(_t(key), *(_t("" if v is None else json.dumps(v) if not isinstance(v, str) else v) for v in values))
    console.print(table if diff else "the resolved configs are the same")

    metrics = Table(title="final metrics", title_justify="left")
    metrics.add_column("METRIC")
    for head in heads:
        metrics.add_column(head, justify="right")
    metrics.add_row("status", *(_status(r) for r in rows))
    metrics.add_row("best (monitor)", *(_t(f"{_num(r['best'])} ({r['monitor']})" if r["monitor"] else _num(r["best"])) for r in rows))
    for key in sorted({k for r in rows for k in (r["metrics"] or {})}):
        metrics.add_row(_t(key), *(_num((r["metrics"] or {}).get(key)) for r in rows))
    console.print(metrics)

    out = Path(args.out or f"compare_{'_'.join(str(r['id']) for r in rows)}.png")
    missing = plot_curves(rows, out)
    if missing:
        console.print(f"no metrics.csv for {', '.join(missing)} (trained with logger=none or ~logger.csv, or the folder is gone): left out of the curves")
    console.print(f"learning curves: {out.resolve()}")
    return 0


# ---------------------------------------------------------------- entry point
def _parser(command: str) -> argparse.ArgumentParser:
    from .main import _argparser as parser

    if command == "show":
        p = parser("runs show", "Everything recorded about one run: config, metrics, checkpoint, exports.")
        p.add_argument("id", help="the run id (first column of `lightplug runs`)")
        p.add_argument("--json", action="store_true", help="print the record as JSON")
    elif command == "compare":
        p = parser("runs compare", "The hyperparameters that differ and the final metrics side by side, and a PNG of the learning curves.")
        p.add_argument("ids", nargs="+", help="two or more run ids")
        p.add_argument("--out", help="where to write the PNG (default: ./compare_ID_ID.png)")
    else:
        p = parser("runs", "List the recorded runs, oldest first. `runs show ID` for one, `runs compare ID ID ...` to compare.")
        p.add_argument("--model", help="only runs of this model")
        p.add_argument("--status", choices=STATUSES, help="only runs in this state")
        p.add_argument("--limit", type=positive_int, help="only the newest N runs")
    p.add_argument("--db", help=f"the database (default: ${ENV_DB}, else $LIGHTPLUG_HOME/runs.db, that is ~/.lightplug/runs.db)")
    return p


def main(args: list[str]) -> int:
    """Run ``lightplug runs`` with ``args`` (everything after ``runs``); returns the exit code."""
    command = args[0] if args and args[0] in ("show", "compare") else "list"
    rest = args[1:] if command != "list" else args
    ns = _parser(command).parse_args(rest)
    return {"list": _list, "show": _show, "compare": _compare}[command](ns)
