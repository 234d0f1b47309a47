"""A small JSON cache of what loading a plugin taught us (schema, task, description, status), and of what its
source says without loading it (task, description: :mod:`lightplug._source_info`).

Keyed by distribution, version and a fingerprint of the files, so that listing and validating a
command line need not import the plugin. Losing the file costs time only, never correctness.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_FORMAT = 3  # 3: schemas hold list lengths, finiteness and rules inferred from names


def cache_dir() -> Path:
    """``$LIGHTPLUG_CACHE_DIR``, else ``$XDG_CACHE_HOME/lightplug``, else ``~/.cache/lightplug``."""
    env = os.environ.get("LIGHTPLUG_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lightplug"


class PluginCache:
    """Read once, write through; concurrent writers may lose an entry, never corrupt the file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or cache_dir() / f"plugins-v{_FORMAT}.json"
        self._data: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._data is None:
            try:
                self._data = json.loads(self.path.read_text())
                if not isinstance(self._data, dict):
                    self._data = {}
            except (OSError, ValueError):
                self._data = {}
        return self._data

    def get(self, key: str) -> dict[str, Any] | None:
        return self._load().get(key)

    def put(self, key: str, value: dict[str, Any]) -> None:
        self.put_many({key: value})

    def put_many(self, entries: dict[str, dict[str, Any]]) -> None:
        """Store several entries with one write of the file."""
        data = self._load()
        if all(data.get(k) == v for k, v in entries.items()):
            return
        data.update(entries)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".plugins-", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only home must not break training
