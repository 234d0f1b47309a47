"""The runs under the UI's outputs folder, read from their folders: ``config.json``, ``summary.json``,
``metrics.csv``, ``launch.json`` and the optional ``confusion_matrix.png``, ``val_predictions.csv`` and
``export/export_report.json``. When :mod:`lightplug.runs` records runs in ``runs.db``, its status and
times are used for the runs this UI did not start (see :func:`index_rows`). No torch here.
"""

from __future__ import annotations

import csv
import json
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any

from ..runs import flatten
from .checks import command_line
from .launcher import Job, read_launch, status_of_exit

__all__ = ["safe_path", "run_id", "find_runs", "index_rows", "read_metrics", "summarize", "details", "compare", "flatten", "RESUMABLE"]

_MARKERS = ("config.json", "launch.json", "summary.json")
_SKIP = {"checkpoints", "export", ".hydra", "val_predictions", "tensorboard", "wandb", "mlruns", "lightning_logs", "__pycache__"}
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_MAX_POINTS = 2000
_LOWER_IS_BETTER = ("loss", "mse", "mae", "rmse", "error", "nll")
#: The states a run can be resumed from (with its ``last.ckpt``): stopped, or ended without recording its end.
RESUMABLE = ("interrupted", "crashed")
#: Config keys the compare view leaves out: the plugin names (shown as the model and data columns), the data facts
#: the run found, and the checkpoint a run resumed from.
_INTERNAL = re.compile(r"(^|\.)_plugin_$|^facts\.|^resume$")


def safe_path(outputs: Path, rel: str) -> Path | None:
    """``outputs/rel`` with every symlink resolved, or None when it is not inside ``outputs``."""
    if not rel or "\0" in rel:
        return None
    root = outputs.resolve()
    path = (root / rel).resolve()
    return path if path == root or path.is_relative_to(root) else None


def run_id(outputs: Path, run_dir: Path) -> str:
    """The id of a run: its folder relative to the outputs folder (``2026-01-02/10-11-12``)."""
    return run_dir.resolve().relative_to(outputs.resolve()).as_posix()


def find_runs(outputs: Path, max_depth: int = 4) -> list[Path]:
    """Run folders under ``outputs`` (a folder with config.json, launch.json or summary.json), newest first."""
    root = outputs.resolve()
    found = []
    for folder, dirs, files in os.walk(root):
        depth = len(Path(folder).relative_to(root).parts)
        dirs[:] = [d for d in dirs if d not in _SKIP and not d.startswith(".") and depth < max_depth]
        if depth and any(m in files for m in _MARKERS):
            found.append(Path(folder))
    return sorted(found, key=lambda p: (_mtime(p), str(p)), reverse=True)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def index_rows(outputs: Path) -> dict[str, dict[str, Any]]:
    """The latest row of :mod:`lightplug.runs`' index for each run folder (resolved path -> row); {} without it."""
    try:
        from ..runs import RunStore, db_path
    except ImportError:
        return {}
    db = db_path()  # the runs index of this user, wherever the runs wrote
    if db is None or not db.is_file():
        return {}
    try:
        rows = RunStore(db, create=False).list_runs()
    except Exception:  # noqa: BLE001 - an unreadable index only loses the statuses
        return {}
    return {str(Path(r["run_dir"]).resolve()): r for r in rows}


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


_CACHE: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """``metrics.csv`` as one series per metric: ``{"series": {"val/acc": [[step, value, epoch], ...]}, ...}``.

    Read again only when the file changed (the page polls it while the run goes on).
    """
    file = run_dir / "metrics.csv"
    try:
        stat = file.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        return {"series": {}, "last_epoch": None, "last_step": None}
    cached = _CACHE.get(file)
    if cached and cached[0] == stamp:
        return cached[1]
    result = _read_metrics(file)
    if len(_CACHE) > 256:
        _CACHE.clear()
    _CACHE[file] = (stamp, result)
    return result


def _read_metrics(file: Path) -> dict[str, Any]:
    series: dict[str, list[list[float | None]]] = {}
    last_epoch = last_step = None
    try:
        with file.open(newline="") as f:
            for row in csv.DictReader(f):
                step, epoch = _float(row.get("step")), _float(row.get("epoch"))
                last_step = step if step is not None else last_step
                last_epoch = epoch if epoch is not None else last_epoch
                for key, text in row.items():
                    value = _float(text)
                    if key in ("step", "epoch") or key is None or value is None or step is None:
                        continue
                    series.setdefault(key, []).append([step, value, epoch])
    except (OSError, csv.Error, UnicodeDecodeError):
        pass  # not written yet, or being rewritten: the next poll reads it
    for key, points in series.items():
        if len(points) > _MAX_POINTS:
            every = len(points) // _MAX_POINTS + 1
            series[key] = points[::every] + ([points[-1]] if (len(points) - 1) % every else [])
    return {"series": series, "last_epoch": last_epoch, "last_step": last_step}


def _mode(monitor: str | None, config: dict[str, Any]) -> str:
    if config.get("monitor_mode") in ("min", "max"):
        return str(config["monitor_mode"])
    return "min" if monitor and any(w in monitor.lower() for w in _LOWER_IS_BETTER) else "max"


def _seconds(start: str | None, end: str | None) -> float | None:
    try:
        begin = datetime.fromisoformat(start) if start else None
        finish = datetime.fromisoformat(end) if end else datetime.now().astimezone()
    except ValueError:
        return None
    return (finish - begin).total_seconds() if begin else None


def _override(overrides: list[str], key: str) -> str | None:
    hits = [a.split("=", 1)[1] for a in overrides if a.split("=", 1)[0] == key]
    return hits[-1] if hits else None


def summarize(outputs: Path, run_dir: Path, job: Job | None, row: dict[str, Any] | None, metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """One line of the runs table: id, status, model, data, monitor, best, duration, progress."""
    config, summary, launch = _json(run_dir / "config.json"), _json(run_dir / "summary.json"), read_launch(run_dir)
    overrides = launch.get("overrides") or []
    if job is not None:
        status = job.status
    elif launch.get("returncode") is not None:
        status = status_of_exit(launch["returncode"])
    elif row:
        status = row["status"]
    else:
        status = "completed" if summary else "unknown"
    monitor = summary.get("monitor") or config.get("monitor") or (row or {}).get("monitor")
    best = summary.get("best") if summary else (row or {}).get("best")
    mode = _mode(monitor, config)
    metrics = metrics or read_metrics(run_dir)
    error = _reason(run_dir, row) if status in ("failed", "crashed") else None
    if best is None or status in ("running", "stopping"):
        values = [p[1] for p in metrics["series"].get(monitor or "", [])]
        best = (min(values) if mode == "min" else max(values)) if values else best
    if launch.get("started"):
        started, ended = launch.get("started"), launch.get("ended")
    elif row:
        started, ended = row.get("started"), row.get("ended")
    else:
        started = ended = None
    seconds = _seconds(started, ended) if started else None
    if seconds is None and summary:
        seconds = _mtime(run_dir / "summary.json") - _mtime(run_dir / "config.json")
    epochs = (config.get("trainer") or {}).get("max_epochs") or _override(overrides, "trainer.max_epochs")
    last_epoch = metrics.get("last_epoch")
    return {
        "id": run_id(outputs, run_dir),
        "status": status,
        "model": (config.get("model") or {}).get("_plugin_") or _override(overrides, "model") or (row or {}).get("model"),
        "data": (config.get("data") or {}).get("_plugin_") or _override(overrides, "data") or (row or {}).get("data") or ("digits" if overrides else None),
        "monitor": monitor,
        "mode": mode,
        "best": best,
        "started": started or datetime.fromtimestamp(_mtime(run_dir)).astimezone().isoformat(timespec="seconds"),
        "seconds": round(seconds, 1) if seconds is not None else None,
        "max_epochs": int(str(epochs)) if str(epochs or "").lstrip("-").isdigit() else None,
        "epoch": int(last_epoch) if last_epoch is not None else None,
        "ours": job is not None,
        "error": error,
    }


def _reason(run_dir: Path, row: dict[str, Any] | None) -> str | None:
    """Why a run failed, in one line: the ``error:`` line ``lightplug train`` printed (with the first problem when it
    lists several), else the runs index's error, else the last line the process printed (a traceback's last line)."""
    lines = _tail(run_dir / "console.log", 200) or _tail(run_dir / "train.log", 200)
    for i in range(len(lines) - 1, -1, -1):
        if lines[i].startswith("error: "):
            text = lines[i].removeprefix("error: ")
            if text.endswith(":") and i + 1 < len(lines):
                text = f"{text} {lines[i + 1].strip()}"
            return text[:500]
    if row and row.get("error"):
        return str(row["error"]).splitlines()[0][:500]
    return lines[-1].strip()[:500] if lines else None


def _tail(path: Path, lines: int = 40) -> list[str]:
    """The last lines a process printed (progress-bar redraws and colours removed)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    parts = [_ANSI.sub("", p).rstrip() for p in re.split(r"[\r\n]+", text)]
    return [p for p in parts if p.strip()][-lines:]


def _worst(run_dir: Path, limit: int = 12) -> dict[str, Any] | None:
    """The validation samples with the largest loss (or error), from ``val_predictions.csv``."""
    try:
        with (run_dir / "val_predictions.csv").open(newline="") as f:
            reader = csv.DictReader(f)
            rows = [r for _, r in zip(range(200_000), reader)]
            columns = list(reader.fieldnames or [])
    except (OSError, csv.Error, UnicodeDecodeError):
        return None
    key: str | None = next((k for k in ("loss", "abs_error", "error", "squared_error") if k in columns), None)
    order = "largest"
    if "ap50" in columns:  # detection: the images with the lowest AP50 are the worst

        def ap50(r: dict[str, Any]) -> float:
            value = _float(r.get("ap50"))
            return 1.0 if value is None else value

        key, order = "ap50", "lowest"
        rows.sort(key=ap50)
    elif key:
        rows.sort(key=lambda r: _float(r.get(key)) or 0.0, reverse=True)
    elif "correct" in columns:
        rows.sort(key=lambda r: str(r.get("correct")).lower() == "true")
    return {"columns": columns, "rows": [[r.get(c, "") for c in columns] for r in rows[:limit]], "sorted_by": key, "order": order,
            "total": len(rows)}


def _files(outputs: Path, run_dir: Path, limit: int = 300) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir)
        if len(out) >= limit or any(p.startswith(".") for p in rel.parts) or not path.is_file() or safe_path(outputs, run_id(outputs, path)) is None:
            continue
        out.append({"name": rel.as_posix(), "path": run_id(outputs, path), "size": path.stat().st_size})
    return out


def details(outputs: Path, run_dir: Path, job: Job | None, row: dict[str, Any] | None) -> dict[str, Any]:
    """Everything the run page shows: the summary line, config, final metrics, command, console tail,
    confusion matrix or precision-recall curve, worst predictions, export report and downloadable files."""
    launch = read_launch(run_dir)
    metrics = read_metrics(run_dir)
    out = summarize(outputs, run_dir, job, row, metrics)
    report_file = run_dir / "export" / "export_report.json"
    out.update(
        run_dir=str(run_dir),
        config=_json(run_dir / "config.json"),
        summary=_json(run_dir / "summary.json"),
        command=launch.get("command") or (command_line([str(a) for a in row.get("overrides") or []]) if row else None),
        overrides=launch.get("overrides") or (row or {}).get("overrides") or [],
        log=_tail(run_dir / "console.log") or _tail(run_dir / "train.log"),
        confusion_matrix=run_id(outputs, run_dir / "confusion_matrix.png") if (run_dir / "confusion_matrix.png").is_file() else None,
        pr_curve=run_id(outputs, run_dir / "pr_curve.png") if (run_dir / "pr_curve.png").is_file() else None,
        worst=_worst(run_dir),
        export_report=_json(report_file) or None,
        files=_files(outputs, run_dir),
        can_resume=(run_dir / "checkpoints" / "last.ckpt").is_file() and out["status"] in RESUMABLE,
        error=out["error"] or ((row or {}).get("error") if out["status"] == "interrupted" else None),
    )
    return out


def compare(outputs: Path, run_dirs: list[Path], jobs: dict[Path, Job | None], rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The runs side by side: their summary lines and every config value that differs between them (internal keys
    left out: ``model._plugin_``, ``data._plugin_``, ``facts.*``, ``resume``)."""
    runs = [summarize(outputs, d, jobs.get(d), rows.get(str(d))) for d in run_dirs]
    configs = [flatten(_json(d / "config.json")) for d in run_dirs]
    written = [c for c in configs if c]  # a run that just started has no config.json yet
    keys = sorted({k for c in written for k in c if not _INTERNAL.search(k)})
    missing = object()
    differ = [k for k in keys if len({json.dumps(c.get(k, missing), default=str, sort_keys=True) for c in written}) > 1]
    return {"runs": runs, "params": [{"key": k, "values": [c.get(k) for c in configs]} for k in differ]}
