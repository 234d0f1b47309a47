"""The benchmark suite runs end to end: `benchmarks/run_all.py --quick` writes a RESULTS.md with every section."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"

SECTIONS = [
    "## Machine and versions",
    "## Summary",
    "## Framework overhead: lightplug train vs a plain PyTorch loop",
    "## The README's command",
    "## Training options: optimizer implementation and torch.compile",
    "## Where an epoch goes",
    "## Core overhead fixes: before and after",
    "## Start-up",
    "## Data loading: workers",
    "## Export speed: ONNX and TorchScript vs eager",
    "## GPU throughput: timm ResNet-50, bf16",
    "## Detection: time to quality and step time (YOLO, FCOS)",
]


@pytest.mark.slow
@pytest.mark.skipif(not RUN_ALL.is_file(), reason="benchmarks/ is not next to the tests (installed without the repository)")
def test_quick_benchmark_run_writes_every_section(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "LIGHTPLUG_CACHE_DIR": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, str(RUN_ALL), "--quick", "--output", str(out)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    text = out.read_text()
    missing = [s for s in SECTIONS if s not in text]
    assert not missing, f"missing sections {missing}:\n{text[:3000]}"
    assert "**failed**" not in text
    assert "| CPU |" in text and "load average (1/5/15 min) at the start" in text
    assert "lightplug --help" in text and "lightplug models" in text
    assert "no GPU available on this machine; not measured" in text or "Device: **" in text
    assert "### 1. Time to quality: YOLO (yolov8n)" in text and "### 3. Step time:" in text
