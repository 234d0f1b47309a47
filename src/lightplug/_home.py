"""Where lightplug keeps what belongs to a user rather than to one run: ``$LIGHTPLUG_HOME``, by default
``~/.lightplug``. It holds the runs index (``runs.db``, see :mod:`lightplug.runs`) and MLflow's default file store
(``mlruns/``), so that every run is found wherever ``hydra.run.dir`` or ``hydra.sweep.dir`` put its folder, the way
MLflow and W&B users expect one place per user. Stdlib only."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["ENV_HOME", "home_dir"]

#: Environment variable naming lightplug's per-user folder.
ENV_HOME = "LIGHTPLUG_HOME"


def home_dir() -> Path:
    """``$LIGHTPLUG_HOME`` (``~`` expanded), else ``~/.lightplug``.

    Example:
        >>> home_dir().name if "LIGHTPLUG_HOME" not in os.environ else ".lightplug"
        '.lightplug'
    """
    env = os.environ.get(ENV_HOME, "").strip()
    return Path(env).expanduser() if env else Path.home() / ".lightplug"
