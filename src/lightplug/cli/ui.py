"""``lightplug ui [--port N] [--host 127.0.0.1] [--outputs DIR] [--token T] [--allow-dir DIR]``: serve the
local web UI (FastAPI + uvicorn) and print its address. See docs/ui.md."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
from pathlib import Path

from ..errors import ConfigError, LightplugError
from ._args import ArgumentParser

__all__ = ["main", "is_loopback"]

TOKEN_ENV = "LIGHTPLUG_UI_TOKEN"


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (``127.0.0.1``, ``::1``, ``localhost``).

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
        (True, False, True)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="lightplug ui", description="A local web UI: forms from plugin schemas, launch and watch runs.")
    p.add_argument("--port", type=int, default=8765, help="port to listen on (0: any free port; default 8765)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; any other needs --token)")
    p.add_argument("--outputs", default="outputs", help="folder of the run folders (default ./outputs)")
    p.add_argument("--token", default=os.environ.get(TOKEN_ENV), help=f"secret every request must carry (default ${TOKEN_ENV})")
    p.add_argument("--allow-dir", "--data-dir", dest="data_dir", action="append", default=[], metavar="DIR",
                   help="a folder that path fields (data.root=...) may point into, besides the current folder and the outputs "
                        "folder; repeatable")
    return p


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc})",
                          hint="choose another --port (0 picks a free one)") from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str]) -> int:
    """Serve the UI until Ctrl-C; runs still going are then stopped gracefully (they can be resumed)."""
    args = _parser().parse_args(argv)
    if not is_loopback(args.host) and not args.token:
        raise ConfigError(f"--host {args.host} is not a loopback address: anyone who can reach it could launch runs",
                          hint="give --token SECRET (or set LIGHTPLUG_UI_TOKEN); requests then carry it as a header or cookie")
    if args.port < 0 or args.port > 65535:
        raise ConfigError(f"--port {args.port}: must be in 0..65535")
    try:
        import uvicorn

        from ..ui.app import create_app
    except ImportError as exc:
        raise LightplugError(f"the UI needs fastapi and uvicorn ({exc})", hint="pip install 'lightplug[ui]'") from exc
    missing = [d for d in args.data_dir if not Path(d).expanduser().is_dir()]
    if missing:  # before the outputs folder is created: a refused command leaves nothing behind
        flag = "--data-dir" if any(a.startswith("--data-dir") for a in argv) else "--allow-dir"  # the name the user typed
        raise ConfigError(f"{flag} {missing[0]}: no such folder")
    outputs = Path(args.outputs).expanduser().resolve()
    try:
        outputs.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--outputs {args.outputs}: cannot create the folder ({exc.strerror or exc})") from exc
    app = create_app(outputs, token=args.token, loopback=is_loopback(args.host), data_dirs=[Path(d) for d in args.data_dir])
    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
    address = f"http://{shown}:{port}/" + (f"?token={args.token}" if args.token else "")
    print(f"lightplug ui: {address}\n  runs go to {outputs}; Ctrl-C stops the server (and its runs, which can be resumed)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0

