"""Every shell command of README.md and docs/*.md runs as typed (tests/doc_commands.py says what a command is).

How the harness runs them (also in docs/reliability.md, "Every documented command runs"):

- The pages run one after the other in one temporary folder (the cwd of every command), each command through
  ``bash -c`` exactly as the page prints it, in page order. What the harness adds is environment only:
  ``LIGHTPLUG_MAX_EPOCHS=1`` and ``LIGHTPLUG_MAX_BATCHES=2``, which the core itself reads (config/finalize.py), so
  every run trains one short epoch and the rest of the command is proven as typed; a private model store
  (``LIGHTPLUG_STORE``) and ``OMP_NUM_THREADS=1`` (tests run side by side).
- Placeholders: ``outputs/DATE/TIME`` (or a dated example such as ``outputs/2026-11-25/12-00-00``) is the run
  folder of the page's latest ``lightplug train``; ``photos/`` is a folder of a few images made by the harness;
  ``images/`` is a folder of class folders (circle, square, triangle) of shape images, as ``data=image_folder`` reads;
  the web UI's port 8765 becomes a free port, in ``lightplug ui`` and in the commands that call it. A Python block
  headed ``# plugins/NAME.py`` is written to that file before its page's commands run (a local plugin).
- ``lightplug ui`` serves until its page's commands are done, then gets SIGINT.
- A ``lightplug train`` that an earlier page ran with the same text is not run again: its run folder is shared.
- Commands marked compose-only run as ``--cfg job``; the commands in ``NOT_RUN`` are not run, each with its
  reason (installs, the network, the suite itself, or another test that runs them); ``STAND_INS`` replace a
  command with what the harness can do instead. Nothing else is skipped: a new command in the docs runs here.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from doc_commands import PAGES, ROOT, Command, commands, compose_form

_DATA_PLUGIN_DOC = "tests/test_docs_data_plugin.py writes the package from the page's blocks, installs it (--target) and runs this command"
#: Commands that are not run, and why. Each must still be in the docs (a stale entry fails).
NOT_RUN: dict[str, str] = {
    "python3 -m venv .venv && . .venv/bin/activate": "makes and enters the user's environment; CI runs the suite in a fresh one (.ci/run)",
    "pip install . ./example_plugins/*/": "installs into the environment (pip needs the network); the suite runs where it is installed",
    'pip install ".[dev]" ./example_plugins/*/': "CI's own install: tests/test_readme.py checks that .ci/run runs it",
    "python -m pytest -n 2 --dist loadfile": "the suite itself: tests/test_readme.py checks that .ci/run runs it",
    "pip install ./example_plugins/lightplug-ultralytics": "installs into the environment; the example plugins are installed where the suite runs",
    'pip install "lightplug[export]"': "needs the network; the extra is installed where the suite runs",
    'pip install "lightplug[ui]"': "needs the network; the extra is installed where the suite runs",
    "python -m pip install build twine": "needs the network",
    "python -m build": "builds the user's own package for publishing; tests/test_new_plugin.py builds and installs a generated one",
    "python -m twine upload dist/*": "publishes to PyPI (network, an account)",
    "LIGHTPLUG_SCREENSHOTS=docs/img python -m pytest tests/test_ui_browser.py": "rewrites the docs' screenshots in the repository; the browser test itself is part of the suite",
    "source .venv/bin/activate": "enters the user's environment (in the SLURM script)",
    "pip install ./lightplug-csv-folder": _DATA_PLUGIN_DOC,
    "lightplug check-plugin csv_folder --kind data root=tables": _DATA_PLUGIN_DOC,
    "lightplug check-plugin epoch_log --kind callback": _DATA_PLUGIN_DOC,
    "lightplug train model=mlp_regressor data=csv_folder data.root=tables callbacks=[default,epoch_log]": _DATA_PLUGIN_DOC,
    "lightplug predict run=outputs/DATE/TIME input=tables/part0.csv": _DATA_PLUGIN_DOC,
    "lightplug train model=mlp trainer=ddp trainer.accelerator=cpu trainer.devices=2":
        "tests/test_ddp.py::test_the_documented_ddp_command_runs_with_every_default_on runs it, with more checks",
}
NOT_RUN_PREFIXES: dict[str, str] = {
    "torchrun --nnodes=2 --node-rank=": "two launches at the same time: tests/test_ddp.py::test_two_nodes_on_one_machine runs this block",
    "lightplug train model=mlp resume=last hydra.run.dir=runs/two-nodes": "resumes the two-node run: tests/test_ddp.py::test_two_nodes_on_one_machine",
}
#: Commands replaced by what the harness can do instead, and why.
STAND_INS: dict[str, tuple[list[str], str]] = {
    'pip install -e "lightplug-my_model[test]"': (
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check", "-q", "--target", "{site}", "./lightplug-my_model"],
        "an editable install would change the shared environment: the package goes into a private folder on PYTHONPATH, so the "
        "next commands see it as they would after the user's install (pytest, which [test] adds, is here already)"),
}
TESTING_CAPS = {"LIGHTPLUG_MAX_EPOCHS": "1", "LIGHTPLUG_MAX_BATCHES": "2"}
TIMEOUT = 600
_DATED_RUN = re.compile(r"outputs/(DATE/TIME|\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d)")
_UI_PORT = "8765"


def not_run_reason(cmd: Command) -> str | None:
    """Why ``cmd`` is not run, or None."""
    if cmd.key in NOT_RUN:
        return NOT_RUN[cmd.key]
    return next((why for prefix, why in NOT_RUN_PREFIXES.items() if cmd.key.startswith(prefix)), None)


@dataclass
class Workspace:
    """The folder every command runs in, and what earlier commands left for later ones."""

    root: Path
    env: dict[str, str]
    trained: dict[str, Path] = field(default_factory=dict)  # train command -> its run folder
    servers: list[subprocess.Popen[str]] = field(default_factory=list)
    ui_port: int = 0
    cpu_seconds: float = 0.0
    timings: list[tuple[float, str]] = field(default_factory=list)  # CPU seconds, command
    ran: int = 0
    composed: int = 0
    shared: int = 0


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    root = tmp_path_factory.mktemp("docs")
    site = root / ".site"
    env = {**os.environ, **TESTING_CAPS, "LIGHTPLUG_STORE": str(root / ".store"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
           "LIGHTPLUG_CACHE_DIR": os.environ.get("LIGHTPLUG_CACHE_DIR") or str(root / ".cache")}
    for key in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LIGHTPLUG_DDP_ARGS"):
        env.pop(key, None)
    ws = Workspace(root, env)
    yield ws
    print(f"\ndocumented commands: {ws.ran} run, {ws.composed} composed (--cfg job), {ws.shared} shared with an earlier page; "
          f"{ws.cpu_seconds:.0f} s of CPU in their processes")
    for spent, what in sorted(ws.timings, reverse=True):
        print(f"  {spent:6.1f} s  {what}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass


def _run(argv: list[str], ws: Workspace, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``argv`` in the workspace, in its own process group (killed whole on timeout); exit code and output."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(argv, cwd=ws.root, env=env or ws.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, _ = proc.communicate()
        out += f"\n[harness] killed after {TIMEOUT} s"
    finally:
        _kill(proc)  # anything it left behind (DDP ranks, launcher jobs)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    spent = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    ws.cpu_seconds += spent
    ws.timings.append((spent, " ".join(argv)[-160:]))
    return proc.returncode, out


def _photos(ws: Workspace) -> None:
    """``photos/``: a few images of shapes, as a user's folder of pictures."""
    folder = ws.root / "photos"
    if folder.is_dir():
        return
    import numpy as np
    from PIL import Image

    from lightplug.data.shapes_data import generate_shapes

    folder.mkdir()
    for i, sample in enumerate(generate_shapes(3, 96, seed=123)):
        Image.fromarray((sample.image * 255).astype(np.uint8)).save(folder / f"photo_{i}.png")


def _image_folder(ws: Workspace) -> None:
    """``images/``: one folder per class (circle, square, triangle) of 64 px shape images, 12 each."""
    folder = ws.root / "images"
    if folder.is_dir():
        return
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    for name in ("circle", "square", "triangle"):
        (folder / name).mkdir(parents=True)
        for i in range(12):
            img = Image.new("RGB", (64, 64), tuple(int(c) for c in rng.integers(0, 80, 3)))
            draw = ImageDraw.Draw(img)
            x, y = (int(v) for v in rng.integers(20, 44, 2))
            r = int(rng.integers(8, 16))
            colour = tuple(int(c) for c in rng.integers(150, 256, 3))
            if name == "circle":
                draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
            elif name == "square":
                draw.rectangle((x - r, y - r, x + r, y + r), fill=colour)
            else:
                draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour)
            img.save(folder / name / f"{name}_{i}.png")


def _local_plugins(ws: Workspace, page: Path) -> None:
    """Python blocks headed ``# plugins/NAME.py`` become those files."""
    for block in re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.S | re.M):
        head = re.match(r"# (plugins/\w+\.py)\n", block)
        if head:
            (ws.root / head.group(1)).parent.mkdir(exist_ok=True)
            (ws.root / head.group(1)).write_text(block)


def _substitute(text: str, ws: Workspace, last_run: Path | None) -> str:
    if _DATED_RUN.search(text):
        assert last_run is not None, "a placeholder run folder before any `lightplug train` on this page"
        text = _DATED_RUN.sub(str(last_run.relative_to(ws.root)), text)
    if "photos/" in text:
        _photos(ws)
    if "data.root=images/" in text:
        _image_folder(ws)
    if ws.ui_port:
        text = re.sub(r"\b(localhost|127\.0\.0\.1):" + _UI_PORT + r"\b", rf"\g<1>:{ws.ui_port}", text)
    return text


def _run_folders(ws: Workspace) -> set[Path]:
    return {p for p in (ws.root / "outputs").glob("*/*") if p.is_dir()}


def _train_folder(cmd: Command, ws: Workspace, before: set[Path]) -> Path | None:
    given = re.search(r"hydra\.run\.dir=(\S+)", cmd.key)
    if given:
        return ws.root / given.group(1)
    new = sorted(_run_folders(ws) - before, key=lambda p: p.stat().st_mtime)
    return new[-1] if new else None


def _matches(expected: tuple[str, ...], output: str) -> str | None:
    """Where the printed output differs from a console block's (``...`` is any text), or None."""
    lines = [line.rstrip() for line in output.splitlines()]
    at = 0
    for want in expected:
        pattern = re.compile(".*".join(re.escape(part) for part in want.rstrip().split("...")) + "$")
        found = next((i for i in range(at, len(lines)) if pattern.match(lines[i])), None)
        if found is None:
            return f"expected the line {want!r}"
        at = found + 1
    return None


def _start_ui(cmd: Command, ws: Workspace) -> str | None:
    ws.ui_port = _free_port()
    argv = ["bash", "-c", f"{cmd.key} --port {ws.ui_port}"]
    proc = subprocess.Popen(argv, cwd=ws.root, env=ws.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    ws.servers.append(proc)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"exited with {proc.returncode}: {proc.communicate()[0][-2000:]}"
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{ws.ui_port}/", timeout=2)
            return None
        except OSError:
            time.sleep(0.5)
    return "did not answer within 120 s"


def _stop_servers(ws: Workspace) -> None:
    for proc in ws.servers:
        _kill(proc, signal.SIGINT)
        try:
            proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            _kill(proc)
            proc.communicate()
    ws.servers.clear()
    ws.ui_port = 0


def _run_one(cmd: Command, ws: Workspace, last_run: Path | None) -> tuple[str | None, Path | None]:
    """Run one command; (what went wrong or None, the run folder it trained into)."""
    if cmd.key in STAND_INS:
        argv, _ = STAND_INS[cmd.key]
        code, out = _run([a.replace("{site}", str(ws.root / ".site")) for a in argv], ws)
        ws.ran += 1
        return (None if code == 0 else f"stand-in exited {code}:\n{out[-3000:]}"), None
    if cmd.compose_reason:
        form = compose_form(cmd.text)
        assert form, f"{cmd.where}: only `lightplug train` can be compose-only: {cmd.key!r}"
        code, out = _run(["bash", "-c", form], ws, env={**ws.env, "SLURM_JOB_ID": "4242"})
        ws.composed += 1
        return (None if code == 0 and "trainer:" in out else f"`{form}` exited {code}:\n{out[-3000:]}"), None
    if cmd.key.startswith("lightplug ui"):
        ws.ran += 1
        return _start_ui(cmd, ws), None
    is_train = cmd.key.startswith("lightplug train ") and " -m " not in f" {cmd.key} "
    if is_train and cmd.key in ws.trained:
        ws.shared += 1
        return None, ws.trained[cmd.key]
    before = _run_folders(ws)
    text = _substitute(cmd.text, ws, last_run)
    code, out = _run(["bash", "-c", text], ws)
    ws.ran += 1
    expected_code = 2 if cmd.output and cmd.output[0].startswith("error:") else 0
    if code != expected_code:
        return f"exited {code} (expected {expected_code}):\n{out[-3000:]}", None
    if cmd.console and (problem := _matches(cmd.output, out)):
        return f"{problem} in its output:\n{out[-3000:]}", None
    folder = _train_folder(cmd, ws, before) if is_train else None
    if folder is not None:
        ws.trained[cmd.key] = folder
    return None, folder


def test_every_documented_command_runs_here_or_is_not_run_with_a_reason() -> None:
    """The rules of tests/doc_commands.py hold on every page; every entry of the lists above still names a
    documented command; compose-only blocks hold only `lightplug train` commands (or ones not run)."""
    found, problems = commands()
    assert not problems, "\n".join(f"{p.where}: {p.message}" for p in problems)
    keys = {c.key for c in found}
    stale = [k for k in [*NOT_RUN, *STAND_INS] if k not in keys]
    stale += [p for p in NOT_RUN_PREFIXES if not any(k.startswith(p) for k in keys)]
    assert not stale, f"not in the docs any more (remove them here): {stale}"
    for cmd in found:
        if cmd.compose_reason and not not_run_reason(cmd):
            assert compose_form(cmd.text), f"{cmd.where}: a compose-only block may hold only `lightplug train`: {cmd.key!r}"
    assert len(found) >= 50


#: The pages with at least one command that runs.
RUN_PAGES = [p for p in PAGES if any(not not_run_reason(c) for c in commands((p,))[0])]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_the_commands_of_each_page_run_as_typed(page: Path, workspace: Workspace) -> None:
    todo = [c for c in commands((page,))[0] if not not_run_reason(c)]
    _local_plugins(workspace, page)
    failures, last_run = [], None
    try:
        for cmd in todo:
            problem, folder = _run_one(cmd, workspace, last_run)
            last_run = folder or last_run
            if problem:
                failures.append(f"{cmd.where}: {cmd.key}\n  {problem}")
    finally:
        _stop_servers(workspace)
    assert not failures, "\n\n".join(failures)


def test_the_testing_caps_shorten_any_run_and_say_so(tmp_path: Path) -> None:
    """LIGHTPLUG_MAX_EPOCHS / LIGHTPLUG_MAX_BATCHES, read by the core when it finalizes a config, only ever lower
    what a run trains; a bad value is one line and exit code 2, before torch is imported."""
    from lightplug.config.finalize import cap_for_tests

    env = {"LIGHTPLUG_MAX_EPOCHS": "2", "LIGHTPLUG_MAX_BATCHES": "3"}
    cases = [({"max_epochs": 10, "limit_train_batches": None, "limit_val_batches": 0.5}, {"max_epochs": 2, "limit_train_batches": 3, "limit_val_batches": 3}),
             ({"max_epochs": -1, "limit_train_batches": 2, "limit_val_batches": 0}, {"max_epochs": 2, "limit_train_batches": 2, "limit_val_batches": 0}),
             ({"max_epochs": 1, "limit_train_batches": 5, "limit_val_batches": 1.0}, {"max_epochs": 1, "limit_train_batches": 3, "limit_val_batches": 3})]
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        for trainer, expected in cases:
            notes: list[str] = []
            cap_for_tests(trainer, notes)
            assert trainer == expected and len(notes) == 1 and "LIGHTPLUG_MAX_EPOCHS" in notes[0]
        mp.delenv("LIGHTPLUG_MAX_BATCHES")
        mp.delenv("LIGHTPLUG_MAX_EPOCHS")
        untouched = {"max_epochs": 10, "limit_train_batches": None, "limit_val_batches": None}
        cap_for_tests(untouched, notes := [])
        assert untouched["max_epochs"] == 10 and not notes
    shown = subprocess.run([sys.executable, "-m", "lightplug", "train", "model=mlp", "--cfg", "job", "--resolve"], cwd=tmp_path, text=True,
                           capture_output=True, env={**os.environ, "LIGHTPLUG_MAX_EPOCHS": "1"}, timeout=120)
    assert shown.returncode == 0 and "  max_epochs: 1\n" in shown.stdout, shown.stdout + shown.stderr
    bad = subprocess.run([sys.executable, "-m", "lightplug", "train", "model=mlp", "--cfg", "job"], cwd=tmp_path, text=True,
                         capture_output=True, env={**os.environ, "LIGHTPLUG_MAX_EPOCHS": "0"}, timeout=120)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: LIGHTPLUG_MAX_EPOCHS=0: not a whole number of at least 1 (unset LIGHTPLUG_MAX_EPOCHS to train as configured)"], bad.stderr
