"""The runs index: every training run recorded in one local SQLite database per user, ``runs.db``.

A run is written twice: as ``running`` when its training starts (rank 0 only) and once more when it ends, as
``completed``, ``failed`` (with the first line of the error) or ``interrupted``. A process killed with
SIGKILL (or by the out-of-memory killer, or a power cut) writes no end: the next reader on the same host
sees that the recorded process is gone (or its pid now belongs to a newer process) and records the run as
``crashed``, with the command that resumes it when a ``last.ckpt`` was left. Each write is one
short transaction on a database in WAL mode with a busy timeout, so the jobs of a parallel multirun,
or any number of ``lightplug train`` processes, can record into the same file without losing a row.

Where the database is (see :func:`db_path`): ``$LIGHTPLUG_RUNS_DB`` when set (``off`` records nothing), else
``$LIGHTPLUG_HOME/runs.db``, that is ``~/.lightplug/runs.db`` by default: one index per user, whatever folder a
run writes into (``outputs/DATE/TIME``, a multirun's ``multirun/DATE/TIME/N``, any ``hydra.run.dir``), which
``lightplug runs`` and the web UI read. A row keeps the absolute path of its run folder; a folder deleted since
is shown as missing.

Nothing here imports torch: ``lightplug runs`` reads the index with sqlite3 only.

Example:
    >>> store = RunStore(db_path())                                 # doctest: +SKIP
    >>> [r["id"] for r in store.list_runs(model="mlp", status="completed")]  # doctest: +SKIP
    [1, 3]
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from ._home import home_dir
from ._liveness import crash_note, last_sign_of_life, process_alive

__all__ = ["RunStore", "STATUSES", "db_path", "default_db_path", "record_run", "flatten", "process_alive", "ENV_DB"]

log = logging.getLogger("lightplug")

#: Environment variable that names the database (``off``, ``none`` or empty: record nothing).
ENV_DB = "LIGHTPLUG_RUNS_DB"
#: The states of a run (``crashed``: the process ended without recording an end, see :func:`process_alive`).
STATUSES = ("running", "completed", "failed", "interrupted", "crashed")
#: Seconds a writer waits for another one's lock before giving up.
BUSY_TIMEOUT = 30.0
_SCHEMA_VERSION = 1
_JSON_COLUMNS = ("overrides", "config", "metrics", "exports")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_dir TEXT NOT NULL,
    started TEXT NOT NULL,          -- ISO 8601, local time with offset
    ended TEXT,
    status TEXT NOT NULL,           -- running | completed | failed | interrupted | crashed
    model TEXT,
    plugin_dist TEXT,
    plugin_version TEXT,
    data TEXT,
    task TEXT,
    preset TEXT,
    overrides TEXT,                 -- JSON list of the command-line overrides
    config TEXT,                    -- JSON object: the resolved config
    monitor TEXT,
    monitor_mode TEXT,
    best REAL,                      -- best value of the monitored metric
    metrics TEXT,                   -- JSON object: the final metrics
    checkpoint TEXT,                -- the best checkpoint
    exports TEXT,                   -- JSON list of exported files
    error TEXT,                     -- first line of the error of a failed or interrupted run
    host TEXT,
    pid INTEGER
);
CREATE INDEX IF NOT EXISTS runs_model ON runs (model);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
"""


def default_db_path() -> Path:
    """The database every run records into when ``$LIGHTPLUG_RUNS_DB`` is not set: ``$LIGHTPLUG_HOME/runs.db``.

    Example:
        >>> default_db_path() == home_dir() / "runs.db"   # ~/.lightplug/runs.db unless LIGHTPLUG_HOME is set
        True
    """
    return home_dir() / "runs.db"


def db_path() -> Path | None:
    """The runs index: ``$LIGHTPLUG_RUNS_DB`` or :func:`default_db_path`; None when recording is off."""
    env = os.environ.get(ENV_DB)
    if env is not None:
        return None if env.strip().lower() in ("", "off", "none", "0", "false") else Path(env).expanduser()
    return default_db_path()


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


class RunStore:
    """The runs table of one SQLite file; each call is one short transaction.

    Args:
        path: the database file.
        create: make the file (and its folder) if it does not exist; when False a missing file raises
            :class:`FileNotFoundError`.
    """

    def __init__(self, path: str | os.PathLike[str], create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(str(self.path))
        self._create = create

    @contextmanager
    def _connect(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One connection; a write runs in ``BEGIN IMMEDIATE`` and commits on leaving."""
        if self._create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
            if self._create:
                self._prepare(con)
            if write:
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
                con.execute("COMMIT")
            else:
                yield con
        finally:
            con.close()

    @staticmethod
    def _prepare(con: sqlite3.Connection) -> None:
        """WAL mode and the table, once per file; retried while another process holds the lock."""
        if con.execute("PRAGMA user_version").fetchone()[0] == _SCHEMA_VERSION:
            return
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                con.execute("PRAGMA journal_mode = WAL")
                con.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {_SCHEMA_VERSION}; COMMIT;")
                return
            except sqlite3.OperationalError as exc:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    # ------------------------------------------------------------ writing
    def start(self, run_dir: str | os.PathLike[str], **fields: Any) -> int:
        """Record a run as ``running``; return its id. ``fields`` are columns of the table (JSON ones as Python values)."""
        row = {"run_dir": str(run_dir), "started": _now(), "status": "running", "host": socket.gethostname(), "pid": os.getpid(), **fields}
        row = _encode(row)
        with self._connect(write=True) as con:
            cur = con.execute(f"INSERT INTO runs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", list(row.values()))
            return int(cur.lastrowid or 0)

    def finish(self, run_id: int, status: str, **fields: Any) -> None:
        """Record the end of run ``run_id``: its status and any other columns (``best``, ``metrics``, ``error``, ...)."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
        row = _encode({"ended": _now(), "status": status, **fields})
        with self._connect(write=True) as con:
            con.execute(f"UPDATE runs SET {', '.join(f'{k} = ?' for k in row)} WHERE id = ?", [*row.values(), run_id])

    def mark_crashed(self) -> int:
        """Record as ``crashed`` the ``running`` runs of this host whose process is gone; return how many.

        The run's ``ended`` becomes the last time it wrote a file in its folder (none: unknown).

        Readers call it, so ``lightplug runs``, the UI and :meth:`list_runs` never show a dead run as running.
        A database that cannot be written (read-only file) is left as it is.
        """
        host = socket.gethostname()
        with self._connect(write=False) as con:
            running = [dict(r) for r in con.execute("SELECT id, run_dir, pid, started, overrides FROM runs WHERE status = 'running' AND host = ?",
                                                    (host,))]
        dead = [r for r in running if not process_alive(r["pid"], r["started"])]
        if not dead:
            return 0
        try:
            with self._connect(write=True) as con:
                for r in dead:  # only if still running: a writer that finished meanwhile wins
                    con.execute("UPDATE runs SET status = 'crashed', error = ?, ended = ? WHERE id = ? AND status = 'running'",
                                (crash_note(r["pid"], r["run_dir"], _decode(r).get("overrides") or []), last_sign_of_life(r["run_dir"]), r["id"]))
        except sqlite3.Error as exc:
            log.debug("could not record crashed runs in %s: %s", self.path, exc)
            return 0
        return len(dead)

    # ------------------------------------------------------------ reading
    def list_runs(self, model: str | None = None, status: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Runs, oldest first (the newest ``limit`` when given), optionally of one model and one status."""
        where, args = [], []
        if model:
            where.append("model = ?")
            args.append(model)
        if status:
            where.append("status = ?")
            args.append(status)
        self.mark_crashed()
        sql = "SELECT * FROM runs" + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY id DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        with self._connect(write=False) as con:
            rows = [_decode(dict(r)) for r in con.execute(sql, args)]
        return rows[::-1]

    def get(self, run_id: int) -> dict[str, Any] | None:
        """One run by id, or None."""
        self.mark_crashed()
        with self._connect(write=False) as con:
            row = con.execute("SELECT * FROM runs WHERE id = ?", (int(run_id),)).fetchone()
        return _decode(dict(row)) if row is not None else None


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v, default=str) if k in _JSON_COLUMNS and v is not None else v for k, v in row.items()}


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_COLUMNS:
        if row.get(key):
            row[key] = json.loads(row[key])
    return row


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys.

    Example:
        >>> flatten({"model": {"hidden": 16}, "seed": 1})
        {'model.hidden': 16, 'seed': 1}
    """
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


# ---------------------------------------------------------------- the hook of run_training
def _is_rank_zero() -> bool:
    """Whether this process is global rank 0 (the environment variables Lightning reads, in its order)."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return os.environ[key] == "0"
    return True


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _start_fields(run: Any) -> dict[str, Any]:
    cfg = run.cfg
    dist = version = None
    try:
        from .registry import get_registry

        ref = get_registry().find("model", run.model_name)
        dist, version = ref.dist, ref.version
    except Exception:  # noqa: BLE001 - the record must never stop a run
        pass
    return {"model": run.model_name, "plugin_dist": dist, "plugin_version": version, "data": run.data_name, "task": run.task,
            "preset": run.preset, "overrides": list(run.overrides), "config": cfg, "monitor": cfg.get("monitor"),
            "monitor_mode": cfg.get("monitor_mode")}


def _end_fields(run_dir: Path, score: float | None) -> dict[str, Any]:
    """What the finished run left in its folder: summary.json (metrics, best checkpoint) and exported files."""
    fields: dict[str, Any] = {"best": score}
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        fields["metrics"] = summary.get("metrics")
        fields["checkpoint"] = str(Path(summary["best_checkpoint"]).resolve()) if summary.get("best_checkpoint") else None
        if score is None:
            fields["best"] = summary.get("best")
    except (OSError, ValueError):
        pass
    if not fields.get("checkpoint") and (run_dir / "checkpoints" / "best.ckpt").is_file():
        fields["checkpoint"] = str(run_dir / "checkpoints" / "best.ckpt")
    export = run_dir / "export"
    if export.is_dir():
        fields["exports"] = sorted(str(p) for p in export.iterdir() if p.is_file())
    return fields


F = TypeVar("F", bound=Callable[..., Any])


def record_run(fn: F) -> F:
    """Decorate the fit of a run, ``fn(run, run_dir, ...)``: record the run as ``running`` before, and its end after
    (a run that fails before training starts is not recorded, see :func:`lightplug.training.run_training`).

    Only global rank 0 records. A database that cannot be written is logged as a warning and never
    stops the run; the run's own exception is re-raised unchanged.
    """

    @functools.wraps(fn)
    def wrapper(run: Any, run_dir: str | os.PathLike[str], *args: Any, **kwargs: Any) -> Any:
        path = db_path() if _is_rank_zero() else None
        store, run_id = None, None
        out = Path(run_dir).resolve()
        if path is not None:
            try:
                store = RunStore(path)
                run_id = store.start(out, **_start_fields(run))
            except (sqlite3.Error, OSError) as exc:
                log.warning("the run is not recorded in %s: %s", path, exc)
                store = None

        def finish(status: str, **fields: Any) -> None:
            if store is None or run_id is None:
                return
            try:
                store.finish(run_id, status, **_end_fields(out, fields.pop("score", None)), **fields)
            except (sqlite3.Error, OSError) as exc:
                log.warning("the end of run %s is not recorded in %s: %s", run_id, path, exc)

        try:
            score = fn(run, run_dir, *args, **kwargs)
        except BaseException as exc:
            from .errors import Interrupted

            # Lightning turns a KeyboardInterrupt during fit into sys.exit(1)
            interrupted = isinstance(exc, (Interrupted, KeyboardInterrupt)) or isinstance(exc.__context__, KeyboardInterrupt)
            finish("interrupted" if interrupted else "failed", error=_first_line(exc))
            raise
        finish("completed", score=score)
        return score

    return wrapper  # type: ignore[return-value]
