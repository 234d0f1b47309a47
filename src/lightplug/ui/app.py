"""The UI's web server: a FastAPI app serving the static page and a small JSON API.

    GET  /api/models[?check=1]      the model plugins (as ``lightplug models --json``)
    GET  /api/models/NAME           a model's JSON Schema (as ``lightplug models show NAME --json``)
    GET  /api/models/NAME/start     what the form starts with: the data ``lightplug train model=NAME`` picks and
                                    the training part of each ``+preset=NAME``
    GET  /api/data, /api/data/NAME  the same for data plugins
    GET  /api/core                  options, rules and defaults of optimizer, scheduler, trainer, run keys
    POST /api/check                 {"overrides": [...]} -> {"problems": [...], "command": "lightplug train ..."}
    POST /api/runs                  launch ``lightplug train`` with the overrides (422 with the problems)
    GET  /api/runs                  every run under the outputs folder
    GET  /api/run?id=ID             one run; /api/run/metrics?id=ID its curves
    POST /api/run/stop, /api/run/resume   {"id": ID}
    GET  /api/compare?id=A&id=B     runs side by side; GET /api/file?path=REL a file inside the outputs folder

Every route takes plugin names only (installed, or of the local plugin folder), never a module path, and
imports nothing it is sent; path fields must lie inside the working folder, the outputs folder or an
``--allow-dir`` (resolved, symlinks and ``..`` included).

With a token every request must carry it (``X-Lightplug-Token`` header or the ``lightplug_token``
cookie that ``/?token=T`` sets). On loopback the Host header must name the loopback address (no DNS
rebinding), and POSTs must be JSON from the page's own origin.
"""

from __future__ import annotations

import hmac
import threading
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..errors import LightplugError
from ..registry import Registry, get_registry
from . import folders
from .checks import CHECKPOINT_KEYS, MAX_OVERRIDES, check_overrides, command_line, default_data
from .launcher import Launcher, read_launch
from .presets import training_presets

__all__ = ["create_app", "static_dir", "TOKEN_HEADER", "TOKEN_COOKIE"]

TOKEN_HEADER = "X-Lightplug-Token"
TOKEN_COOKIE = "lightplug_token"
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}


def static_dir() -> Path:
    """The folder of the page's HTML, CSS and JavaScript, inside the installed package."""
    return Path(str(files("lightplug") / "ui" / "static"))


class Overrides(BaseModel):
    overrides: list[str] = Field(max_length=MAX_OVERRIDES)


class RunRef(BaseModel):
    id: str = Field(max_length=1000)


def _error(status: int, message: str, problems: list[str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "problems": problems or []}, status_code=status)


def _host_name(host_header: str) -> str:
    return (urlsplit(f"//{host_header}").hostname or "").lower()


def create_app(outputs: Path, token: str | None = None, loopback: bool = True, data_dirs: list[Path] | None = None,
               registry: Registry | None = None, launcher: Launcher | None = None, cwd: Path | None = None) -> FastAPI:
    """The UI's app.

    Args:
        outputs: the folder of the run folders (created if missing); files are served from it only.
        token: when given, every request must carry it.
        loopback: the server listens on a loopback address only: the Host header must name one.
        data_dirs: folders (``--allow-dir``), besides ``cwd`` and ``outputs``, that path-like fields may point into.
        registry: the plugins (the process's registry by default).
        launcher: starts the runs (tests give one with a stub program).
        cwd: the working folder of the runs (the current folder by default).
    """
    outputs = outputs.expanduser().resolve()
    outputs.mkdir(parents=True, exist_ok=True)
    cwd = (cwd or Path.cwd()).resolve()
    registry = registry or get_registry()
    launcher = launcher or Launcher(cwd)
    data_dirs = [d.expanduser().resolve() for d in data_dirs or []]
    lock = threading.Lock()  # the registry loads plugins; one request at a time does it

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> Any:
        yield
        launcher.shutdown()

    app = FastAPI(title="lightplug", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.outputs, app.state.launcher = outputs, launcher

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        host = request.headers.get("host", "")
        if loopback and _host_name(host) not in _LOOPBACK_NAMES:
            return PlainTextResponse(f"refused: Host {host!r} is not a loopback address", status_code=403)
        if token:
            given = request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE) or ""
            if request.method == "GET" and request.url.path == "/" and hmac.compare_digest(request.query_params.get("token", ""), token):
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return response
            if not hmac.compare_digest(given, token):
                return PlainTextResponse(f"a token is required: open the address `lightplug ui` printed (with ?token=...) "
                                         f"or send the {TOKEN_HEADER} header", status_code=401)
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin and urlsplit(origin).netloc != host:
                return PlainTextResponse(f"refused: a request from {origin}", status_code=403)
            if not request.headers.get("content-type", "").startswith("application/json"):
                return PlainTextResponse("send JSON (Content-Type: application/json)", status_code=415)
        response = await call_next(request)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        return response

    static = static_dir()
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static / "index.html", media_type="text/html")

    # ------------------------------------------------------------ plugins
    def _listing(kind: str, check: bool) -> list[dict[str, Any]]:
        from ..cli.models import listing_rows

        with lock:
            return listing_rows(registry, kind, check=check)

    def _schema(kind: str, name: str) -> Any:
        from ..cli.models import plugin_json_schema

        try:
            with lock:  # an installed (or local-folder) plugin's name only: a module path is never imported
                return plugin_json_schema(registry.load(registry.find(kind, name, import_paths=False)))
        except LightplugError as exc:
            return _error(404, str(exc))

    @app.get("/api/models")
    def models(check: bool = False) -> list[dict[str, Any]]:
        return _listing("model", check)

    @app.get("/api/models/{name}")
    def model_schema(name: str) -> Any:
        return _schema("model", name)

    @app.get("/api/models/{name}/start")
    def model_start(name: str) -> Any:
        try:
            with lock:
                registry.find("model", name, import_paths=False)
                return {"data": default_data(name, registry), "presets": training_presets(name, registry)}
        except LightplugError as exc:
            return _error(404, str(exc))

    @app.get("/api/data")
    def data(check: bool = False) -> list[dict[str, Any]]:
        return _listing("data", check)

    @app.get("/api/data/{name}")
    def data_schema(name: str) -> Any:
        return _schema("data", name)

    @app.get("/api/core")
    def core() -> dict[str, Any]:
        from .core import core_settings

        with lock:
            return core_settings(registry)

    # ------------------------------------------------------------ checking and launching
    def _check(overrides: list[str]) -> list[str]:
        with lock:
            return check_overrides(overrides, registry, outputs, data_dirs, cwd)

    @app.post("/api/check")
    def check(body: Overrides) -> dict[str, Any]:
        problems = _check(body.overrides)
        return {"ok": not problems, "problems": problems, "command": command_line(body.overrides)}

    @app.post("/api/runs")
    def launch(body: Overrides) -> Any:
        problems = _check(body.overrides)
        if problems:
            return _error(422, "cannot launch", problems)
        try:
            job = launcher.start(body.overrides, launcher.new_run_dir(outputs))
        except (RuntimeError, OSError) as exc:
            return _error(409, f"cannot start the run: {exc}")
        return {"id": folders.run_id(outputs, job.run_dir), "run_dir": str(job.run_dir), "command": read_launch(job.run_dir).get("command")}

    def _run_dir(rid: str) -> Path | None:
        path = folders.safe_path(outputs, rid)
        return path if path is not None and path != outputs and path.is_dir() else None

    @app.post("/api/run/stop")
    def stop(body: RunRef) -> Any:
        run_dir = _run_dir(body.id)
        if run_dir is None:
            return _error(404, f"no run {body.id!r} in {outputs}")
        if launcher.stop(run_dir) is None:
            return _error(409, f"run {body.id} is not running from this UI")
        return {"id": body.id, "status": "stopping"}

    @app.post("/api/run/resume")
    def resume(body: RunRef) -> Any:
        run_dir = _run_dir(body.id)
        if run_dir is None:
            return _error(404, f"no run {body.id!r} in {outputs}")
        job = launcher.job(run_dir)
        if job is not None and job.process.poll() is None:
            return _error(409, f"run {body.id} is still running")
        status = folders.summarize(outputs, run_dir, job, folders.index_rows(outputs).get(str(run_dir)))["status"]
        if status not in folders.RESUMABLE:
            return _error(409, f"run {body.id} is {status}: only interrupted or crashed runs are resumed")
        last = run_dir / "checkpoints" / "last.ckpt"
        if not last.is_file():
            return _error(409, f"run {body.id} has no checkpoints/last.ckpt to resume from")
        overrides = _previous_overrides(run_dir)
        problems = _check([*overrides, f"resume={last}"])
        if problems:
            return _error(422, "cannot resume", problems)
        try:
            launcher.start(overrides, run_dir, resume=str(last))
        except (RuntimeError, OSError) as exc:
            return _error(409, f"cannot resume the run: {exc}")
        return {"id": body.id, "run_dir": str(run_dir), "command": read_launch(run_dir).get("command")}

    # ------------------------------------------------------------ runs
    @app.get("/api/runs")
    def runs() -> list[dict[str, Any]]:
        rows = folders.index_rows(outputs)
        return [folders.summarize(outputs, d, launcher.job(d), rows.get(str(d))) for d in folders.find_runs(outputs)]

    @app.get("/api/run")
    def run(id: str = Query(max_length=1000)) -> Any:  # noqa: A002 - the query parameter is called id
        run_dir = _run_dir(id)
        if run_dir is None:
            return _error(404, f"no run {id!r} in {outputs}")
        return folders.details(outputs, run_dir, launcher.job(run_dir), folders.index_rows(outputs).get(str(run_dir)))

    @app.get("/api/run/metrics")
    def metrics(id: str = Query(max_length=1000)) -> Any:  # noqa: A002
        run_dir = _run_dir(id)
        if run_dir is None:
            return _error(404, f"no run {id!r} in {outputs}")
        data = dict(folders.read_metrics(run_dir))  # a copy: read_metrics caches its result
        data["run"] = folders.summarize(outputs, run_dir, launcher.job(run_dir), folders.index_rows(outputs).get(str(run_dir)), data)
        return data

    @app.get("/api/compare")
    def compare(id: list[str] = Query(default=[])) -> Any:  # noqa: A002
        dirs = [_run_dir(i) for i in id[:20]]
        if not dirs or None in dirs:
            return _error(404, "give existing runs: /api/compare?id=A&id=B")
        real = [d for d in dirs if d is not None]
        return folders.compare(outputs, real, {d: launcher.job(d) for d in real}, folders.index_rows(outputs))

    @app.get("/api/file")
    def file(path: str = Query(max_length=2000), download: bool = False) -> Any:
        target = folders.safe_path(outputs, path)
        if target is None or not target.is_file() or any(p.startswith(".") for p in Path(path).parts):
            return _error(404, f"no file {path!r} in {outputs}")
        inline = target.suffix.lower() in (".png", ".jpg", ".jpeg", ".svg", ".json", ".csv", ".txt", ".log", ".yaml")
        return FileResponse(target, filename=target.name, content_disposition_type="inline" if inline and not download else "attachment")

    return app


def _previous_overrides(run_dir: Path) -> list[str]:
    """The overrides a run was started with: from the UI's launch.json, else Hydra's record of the command line."""
    launch = read_launch(run_dir)
    if launch.get("overrides"):
        found = list(launch["overrides"])
    else:
        import yaml

        try:
            found = [str(a) for a in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) or []]
        except (OSError, yaml.YAMLError, TypeError):
            found = []
    return [a for a in found if a.split("=", 1)[0].lstrip("+~") not in (*CHECKPOINT_KEYS, "hydra.run.dir") and not a.startswith("hydra.")]
