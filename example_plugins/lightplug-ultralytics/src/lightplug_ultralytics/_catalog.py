"""Which detection models the installed Ultralytics ships, read from its model YAMLs without importing it.

``check()`` uses this: it must stay cheap (no torch, no ``import ultralytics``, which also probes the
network for its ``ONLINE`` flag), so the package directory is found with ``importlib.util.find_spec``
and the YAML files are scanned as text.
"""

from __future__ import annotations

import difflib
import functools
import importlib.metadata
import importlib.util
import re
from pathlib import Path

__all__ = ["ultralytics_version", "detection_models", "close_matches"]

# The heads whose eval output is ``B x (4 + nc) x N`` (cx, cy, w, h, sigmoid class scores) and whose loss is
# Ultralytics' v8DetectionLoss (or E2ELoss, which wraps it): plain detection, not seg/pose/obb/world/rtdetr.
_DETECT_HEADS = ("Detect", "v10Detect")
_HEAD_LINE = re.compile(r"^\s*-\s*\[\s*\[[-0-9,\s]+\]\s*,\s*1\s*,\s*([A-Za-z0-9_]+)\s*,", re.M)
_SCALE_LINE = re.compile(r"^\s+([a-z])\s*:\s*\[", re.M)
_HAS_SCALE = re.compile(r"yolo(e-)?v?\d+[nslmxbtce]")  # the stem already names its scale (yolov10n, yolov9t)


def _package_dir() -> Path | None:
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def ultralytics_version() -> str:
    try:
        return importlib.metadata.version("ultralytics")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


@functools.lru_cache(maxsize=4)
def _scan(root: str) -> dict[str, str]:
    names: dict[str, str] = {}
    for path in sorted(Path(root, "cfg", "models").glob("**/*.yaml")):
        text = path.read_text(encoding="utf-8", errors="replace")
        heads = _HEAD_LINE.findall(text)
        if not heads or heads[-1] not in _DETECT_HEADS:
            continue
        stem = path.stem
        scales = []
        start = re.search(r"^scales\s*:.*$", text, re.M)
        if start:
            block = []
            for line in text[start.end() + 1:].splitlines():
                if line.strip() and not line[0].isspace() and not line.startswith("#"):
                    break  # the next top-level key
                block.append(line)
            scales = _SCALE_LINE.findall("\n".join(block))
        if _HAS_SCALE.match(stem) or not scales:
            names[stem] = str(path)
        else:  # yolov8.yaml -> yolov8n .. yolov8x; yolov8-p2.yaml -> yolov8n-p2 ..
            for s in scales:
                names[re.sub(r"(\d+)", rf"\g<1>{s}", stem, count=1)] = str(path)
    return names


def detection_models() -> dict[str, str]:
    """``{name: yaml file}`` of every detection model the installed Ultralytics ships (empty when not installed)."""
    root = _package_dir()
    return {} if root is None else _scan(str(root))


def close_matches(name: str, n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(detection_models()), n=n, cutoff=0.6)
