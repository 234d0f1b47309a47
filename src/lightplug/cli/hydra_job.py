"""One training run of ``lightplug train`` as a Hydra job, from the config composed once.

``hydra.main`` composes the config twice for a single run (once to learn the mode, once to run), and the command
composes it a first time itself to check it before Hydra creates the run folder: about a third of lightplug's
start-up beyond the imports of torch and Lightning (benchmarks/RESULTS.md). For a plain single run (overrides
only, no Hydra flag, not a DDP child) the command composes once with Hydra's compose API and hands that config
to Hydra's own job runner (``hydra.core.utils.run_job``, what Hydra's launchers call), as ``Hydra.run`` does:
logging configured from ``hydra.hydra_logging`` and ``hydra.job_logging``, the run folder and its ``.hydra``
record, Hydra callbacks, the ``HydraConfig`` singleton. Sweeps, ``--cfg``, ``--help`` and the rest keep
``hydra.main``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["composable_single_run", "run_composed"]

#: Flags that only ``hydra.main`` understands.
_HYDRA_FLAGS = ("-m", "--multirun", "--cfg", "-c", "--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc",
                "--package", "-p", "--resolve", "--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--experimental-rerun")


def composable_single_run(args: list[str]) -> bool:
    """Whether ``args`` are overrides only (``key=value``), so that the run can skip ``hydra.main``."""
    return all("=" in a and not a.startswith("-") for a in args) and not any(a.split("=", 1)[0] in _HYDRA_FLAGS for a in args)


def run_composed(cfg: Any, task: Callable[[Any], Any]) -> Any:
    """Run ``task`` as Hydra's single-run job on ``cfg`` (composed with ``return_hydra_config=True`` inside an
    ``initialize_config_dir`` block, which must still be open); return what ``task`` returned.

    An exception (``Exception``) of the task is re-raised here, as ``hydra.main`` would after its report; a
    ``BaseException`` passes straight through Hydra's runner.
    """
    from hydra._internal.callbacks import Callbacks
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.utils import configure_log, run_job
    from hydra.types import HydraContext, RunMode
    from omegaconf import open_dict

    with open_dict(cfg):
        if cfg.hydra.mode is None:  # as hydra.main records it for a single run
            cfg.hydra.mode = RunMode.RUN
            cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
    configure_log(cfg.hydra.hydra_logging, cfg.hydra.verbose)
    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name="train")
    ret = run_job(hydra_context=HydraContext(config_loader=GlobalHydra.instance().config_loader(), callbacks=callbacks), task_function=task,
                  config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None, configure_logging=True)
    callbacks.on_run_end(config=cfg, config_name="train", job_return=ret)
    return ret.return_value  # raises the task's exception
