"""Where the config tree lives: inside the wheel (``lightplug/conf``) or, for a source checkout, ``conf/``."""

from __future__ import annotations

from pathlib import Path

__all__ = ["conf_dir"]


def conf_dir() -> Path:
    """The directory that holds ``train.yaml`` and the config groups."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "conf"
    if (packaged / "train.yaml").is_file():
        return packaged
    source = here.parent.parent / "conf"  # src/lightplug -> repository root
    if (source / "train.yaml").is_file():
        return source
    raise FileNotFoundError(f"lightplug's config tree is missing (looked in {packaged} and {source}); reinstall lightplug")
