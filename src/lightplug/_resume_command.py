"""The command line that continues a run in its own folder; stdlib only, so the runs index can print it."""

from __future__ import annotations

import os
import shlex
import sys

__all__ = ["resume_command"]

_DROPPED = ("resume", "init_from")  # replaced by resume=PATH in the command that resumes


def _task_overrides() -> list[str]:
    """The overrides of the running ``lightplug train`` job (Hydra's record, else the command line)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return list(HydraConfig.get().overrides.task)
    except Exception:  # noqa: BLE001 - no Hydra job: fall back to the command line
        pass
    argv = sys.argv[1:]
    if argv[:1] == ["train"]:
        return [a for a in argv[1:] if "=" in a and not a.startswith("-") and not a.lstrip("+~").startswith("hydra.")]
    return []


def resume_command(checkpoint: str | os.PathLike[str], run_dir: str | os.PathLike[str], overrides: list[str] | None = None) -> str:
    """The command line that continues this run from ``checkpoint`` in the same folder.

    Example:
        >>> resume_command("/r/checkpoints/last.ckpt", "/r", ["model=mlp", "seed=7", "resume=old.ckpt"])
        'lightplug train model=mlp seed=7 resume=/r/checkpoints/last.ckpt hydra.run.dir=/r'
    """
    args = _task_overrides() if overrides is None else overrides
    kept = [a for a in args if a.split("=", 1)[0].lstrip("+~") not in _DROPPED]
    kept += [f"resume={checkpoint}", f"hydra.run.dir={run_dir}"]
    return "lightplug train " + " ".join(shlex.quote(a) for a in kept)
