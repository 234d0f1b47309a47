"""End to end: `lightplug ui` in a subprocess, driven by headless Chromium through Playwright. Pick simple_cnn,
see the browser's check of a bad value (the CLI's line), apply a preset, change fields, start a one-epoch run,
watch it complete and find it with its metric in the runs view.

Set LIGHTPLUG_SCREENSHOTS=docs/img to write ui-form.png, ui-run.png and ui-runs.png there (for the README).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]

if not CHROMIUM.exists():
    pytest.skip("/usr/bin/chromium is missing (apt-get install chromium)", allow_module_level=True)
playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
pytest.importorskip("fastapi", reason="the UI needs the ui extra: pip install 'lightplug[ui]'")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`lightplug ui --port N --outputs DIR` running; yields its address (as printed) and the outputs folder."""
    outputs = tmp_path / "outputs"
    log = tmp_path / "ui.log"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lightplug", "ui", "--port", str(_free_port()), "--outputs", str(outputs)],
                                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 120
        while not (match := re.search(r"lightplug ui: (http://127\.0\.0\.1:\d+/)", log.read_text())):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield match.group(1), outputs
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


def _post(url: str, data: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return json.loads(r.read())


SCREENSHOTS = os.environ.get("LIGHTPLUG_SCREENSHOTS")


def _shoot(page, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=True)
    target = SCREENSHOTS
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)


def _second_run_and_compare(page, tmp_path: Path, first: str) -> None:
    """For the README's pictures: a longer run with curves, two runs in the runs view, and their comparison."""
    expect = playwright_sync.expect
    page.click("#nav-new")
    page.click('li[data-plugin="simple_cnn"] button')
    page.select_option("#preset", "medium")
    page.fill('[name="trainer.max_epochs"]', "6")
    page.fill('[name="optimizer.lr"]', "0.005")
    expect(page.locator("#start")).to_be_enabled()
    page.click("#start")
    page.wait_for_url(re.compile(r"#/run/(?!" + re.escape(first.replace("/", "%2F")) + ")"))
    expect(page.locator("#view-run")).to_have_attribute("data-status", "completed", timeout=900_000)
    _shoot(page, tmp_path, "ui-run.png")
    page.click("#nav-runs")
    expect(page.locator("#runs-table tbody tr[data-run]")).to_have_count(2)
    for box in page.locator("#runs-table tbody input[type=checkbox]").all():
        box.check()
    expect(page.locator("#compare")).to_be_enabled()
    _shoot(page, tmp_path, "ui-runs.png")
    page.click("#compare")
    expect(page.locator("#compare-params")).to_contain_text("model.width")
    _shoot(page, tmp_path, "ui-compare.png")


def test_form_preset_launch_and_runs_view(server: tuple[str, Path], tmp_path: Path) -> None:
    url, outputs = server
    expect = playwright_sync.expect
    expected_problem = _post(f"{url}api/check", {"overrides": ["model=simple_cnn", "model.width=1000"]})["problems"]
    with playwright_sync.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS,
                                                        headless=True, viewport={"width": 1360, "height": 1000})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.set_default_timeout(90_000)
        expect.set_options(timeout=90_000)
        page.goto(url)

        # a detection model starts on the data the CLI picks for it; a preset is `+preset=NAME`, for mlp too
        page.click('li[data-plugin="yolo"] button')
        expect(page.locator("#data-plugin")).to_have_value("shapes")
        expect(page.locator("#command")).to_have_text("lightplug train model=yolo data=shapes data.task=detection")
        expect(page.locator("#server-check")).to_have_text("checked by the server: ready to start")
        page.select_option("#data-plugin", "digits")  # the CLI's task rule, before launch
        expect(page.locator("#problems li")).to_have_text(re.compile(r"^model=yolo is a detection model but data=digits is classification data"))
        expect(page.locator("#start")).to_be_disabled()
        page.click('li[data-plugin="mlp"] button')
        expect(page.locator("#run-form h2")).to_contain_text("mlp")
        page.select_option("#preset", "easy")
        expect(page.locator('[name="trainer.max_epochs"]')).to_have_value("10")
        expect(page.locator('[name="optimizer.lr"]')).to_have_value("0.003")
        expect(page.locator("#command")).to_have_text("lightplug train model=mlp +preset=easy")

        # the plugin list, then simple_cnn's form
        expect(page.locator('li[data-plugin="simple_cnn"]')).to_contain_text("lightplug-convnets")
        page.click('li[data-plugin="simple_cnn"] button')
        width = page.locator('[name="model.width"]')
        expect(width).to_have_value("32")

        # a bad value: the browser says what the CLI says, and Start is disabled
        width.fill("1000")
        expect(page.locator("#problems li")).to_have_text(expected_problem)
        expect(page.locator("#start")).to_be_disabled()

        # text that is not a number stays as typed, with the CLI's line beside it, and Start stays disabled
        for typed in ("abc", "12abc"):
            width.fill(typed)
            expect(width).to_have_value(typed)
            expect(page.locator('[data-key="model.width"] .field-problem')).to_have_text(re.compile(rf"^model\.width={typed}: expected int"))
            expect(page.locator("#start")).to_be_disabled()

        # the preset fills the form; then small settings for a quick run
        page.select_option("#preset", "easy")
        expect(width).to_have_value("16")
        expect(page.locator('[name="model.depth"]')).to_have_value("3")
        page.fill('[name="model.depth"]', "2")
        page.fill('[name="data.batch_size"]', "128")
        page.fill('[name="trainer.max_epochs"]', "1")
        command = "lightplug train model=simple_cnn +preset=easy model.depth=2 data.batch_size=128 trainer.max_epochs=1"
        expect(page.locator("#command")).to_have_text(command)
        expect(page.locator("#server-check")).to_have_text("checked by the server: ready to start")
        expect(page.locator("#start")).to_be_enabled()
        _shoot(page, tmp_path, "ui-form.png")

        # start: the run page follows it live until it completes
        page.click("#start")
        page.wait_for_url(re.compile(r"#/run/"))
        run_id = page.url.split("#/run/")[1].replace("%2F", "/")
        expect(page.locator("#run-command")).to_contain_text(f"{command} hydra.run.dir=")
        expect(page.locator("#view-run")).to_have_attribute("data-status", "completed", timeout=600_000)
        expect(page.locator(".run-head")).to_contain_text("best val/acc =")
        expect(page.locator("#curves svg .series polyline, #curves svg .series circle").first).to_be_attached()
        expect(page.locator("#files")).to_contain_text("checkpoints/best.ckpt")
        expect(page.locator("#resume")).to_be_hidden()  # a completed run is not resumed

        # the runs view lists it with its metric
        page.click("#nav-runs")
        row = page.locator(f'tr[data-run="{run_id}"]')
        expect(row.locator(".status")).to_have_text("completed")
        expect(row.locator(".best")).to_contain_text(re.compile(r"val/acc = 0\.\d+"))
        expect(row).to_contain_text("simple_cnn")
        if SCREENSHOTS:
            _second_run_and_compare(page, tmp_path, run_id)
        else:
            _shoot(page, tmp_path, "ui-runs.png")
        context.close()
    assert not errors, errors
    run = outputs / run_id
    summary = json.loads((run / "summary.json").read_text())
    assert summary["monitor"] == "val/acc" and 0 <= summary["best"] <= 1
    assert json.loads((run / "launch.json").read_text())["returncode"] == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()
