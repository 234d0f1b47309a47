"""``lightplug train [overrides]``: register plugin schemas, check the command line, then hand over to
``hydra.main`` (runs, multiruns, sweepers and launchers are Hydra's); torch is imported only once the
config is known to be valid."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

from ..config.finalize import DATA_FOR_TASK, finalize, plain_choices
from ..config.hydra_errors import from_hydra
from ..config.paths import conf_dir
from ..config.preflight import group_options, parse_overrides, preflight
from ..config.store import register
from ..errors import ConfigError, LightplugError, stop_behind
from ..registry import Registry, get_registry
from ..schema import Schema
from ._args import one_line_errors
from .hydra_job import composable_single_run
from .show_config import flag_value, print_config, print_info

__all__ = ["main", "register_configs", "run_hydra", "data_for_models", "check_job"]

_CHILD_ARGS = "LIGHTPLUG_DDP_ARGS"


def _choices(args: list[str]) -> dict[str, list[str]]:
    """Group choices named on the command line (``model=a,b`` gives both)."""
    out: dict[str, list[str]] = {}
    for ov in parse_overrides(args):
        key = ov.key_or_group
        if "." in key or key.startswith("hydra") or ov.is_delete():
            continue
        values = list(ov.sweep_iterator()) if ov.is_sweep_override() and ov.is_discrete_sweep() else [ov.value()]
        flat: list[str] = []
        for v in values:
            flat += [str(x) for x in v] if isinstance(v, list) else [str(v)]
        out.setdefault(key, []).extend(flat)
    return out


def register_configs(registry: Registry, chosen: dict[str, list[str]], everything: bool = False, only_chosen: bool = False) -> dict[str, Schema]:
    """Put plugin schemas into Hydra's ConfigStore: the chosen plugins (loading them if need be), and every
    other plugin whose schema is cached (or all of them with ``everything``; none with ``only_chosen``, for a
    single run whose command line names every group it uses). A broken plugin that was not chosen is left out
    silently; a chosen one raises :class:`PluginError`.

    Returns:
        group -> schema of the plugin chosen for it, when exactly one was chosen.
    """
    picked: dict[str, Schema] = {}
    for kind, group in (("model", "model"), ("data", "data"), ("callback", "callbacks")):
        wanted = chosen.get(group, ["digits"] if group == "data" else [])
        for name in wanted:
            if kind == "callback" and name == "default":
                continue
            ref = registry.find(kind, name)
            schema, _ = registry.schema(ref)
            register(kind, name, schema)
            if len(wanted) == 1:
                picked[group] = schema
        for ref in [] if only_chosen else registry.refs(kind):
            if ref.name in wanted or ref.problem:
                continue
            entry = registry.cached(ref)
            try:
                if entry and entry.get("status") == "ok":
                    register(kind, ref.name, Schema.from_dict(entry["schema"]))
                elif everything or (kind == "data" and ref.dist == "lightplug"):
                    register(kind, ref.name, registry.load(ref).schema)
            except LightplugError:
                continue
    return picked


def data_for_models(args: list[str], registry: Registry) -> list[str]:
    """The overrides that pick data fitting the chosen models' task when the command line names no data (nor an
    experiment, which may); none when the models' tasks differ (each job then says which data fits it)."""
    chosen = _choices(args)
    if "data" in chosen or "experiment" in chosen or not chosen.get("model"):
        return []
    tasks = {registry.schema(registry.find("model", name))[1] or "classification" for name in chosen["model"]}
    if len(tasks) != 1:
        return []
    given = {a.split("=", 1)[0].lstrip("+~") for a in args if "=" in a}
    return [o for o in DATA_FOR_TASK[tasks.pop()] if o.split("=", 1)[0] not in given]


def _help(registry: Registry) -> str:
    """``lightplug train --help`` before a model is chosen: the config groups and their options."""
    groups = ("model", "data", "trainer", "optimizer", "scheduler", "logger", "callbacks", "preset", "experiment", "hparams_search")
    lines = ["usage: lightplug train model=NAME [group=OPTION ...] [key=value ...] [-m] [--cfg job [--resolve]]", "",
             "Config groups (`+preset=...`, `+experiment=...` and `+hparams_search=...` are added with '+'):"]
    lines += [f"  {g:<15} {', '.join(group_options(g, registry)) or '-'}" for g in groups]
    lines += ["", "`lightplug train model=NAME --help` shows the composed config and Hydra's options;",
              "`lightplug models show NAME` lists a model's settings with their rules."]
    return "\n".join(lines)


def _asks_hydra_only(args: list[str]) -> bool:
    return any(a in ("--help", "-h", "--hydra-help", "--info", "-i", "--shell-completion", "-sc") or a.startswith("--info") for a in args)


def _check_flags(args: list[str]) -> list[str]:
    """Hydra's flags (``--cfg jobb``, ``--bogus``) checked by Hydra's own parser, but as one line, not a usage dump.

    Returns:
        ``args`` with the flags first: Hydra's parser takes no override after a flag (``model=mlp -m x=1,2``).
    """
    if any(a in ("--help", "-h", "--hydra-help", "--shell-completion", "-sc") for a in args):
        return args
    from hydra._internal.utils import get_args_parser

    parser = one_line_errors(get_args_parser())
    parser.prog = "lightplug train"
    overrides = list(parser.parse_intermixed_args(args).overrides)
    flags, rest = [], list(overrides)
    for arg in args:
        if rest and arg == rest[0]:
            rest.pop(0)
        else:
            flags.append(arg)
    return flags + overrides


class _UserError(BaseException):
    """Carries a LightplugError past Hydra's job runner (which reports every Exception a second time)."""

    def __init__(self, error: LightplugError) -> None:
        super().__init__(str(error))
        self.error = error


def _child_args(args: list[str]) -> list[str]:
    """A DDP child rank that Lightning started: run the parent's job in the parent's folder. A rank other
    than 0 that torchrun (``RANK``) or srun (``SLURM_PROCID``) started runs its own command line, which
    names the shared run folder, but leaves Hydra's ``.hydra`` record to rank 0."""
    saved = os.environ.get(_CHILD_ARGS)
    if saved and os.environ.get("LOCAL_RANK", "0") != "0":
        return list(json.loads(saved))
    if _launched_rank() not in (None, 0) and not any(a.startswith("hydra.output_subdir=") for a in args):
        return [*args, "hydra.output_subdir=null"]
    return args


def _launched_rank() -> int | None:
    """The global rank an external launcher gave this process: torchrun's ``RANK``, else srun's
    ``SLURM_PROCID`` when the step has several tasks; None when nothing launched it as a rank."""
    rank, ntasks = os.environ.get("RANK", ""), os.environ.get("SLURM_NTASKS", "")
    if rank.isdigit():
        return int(rank)
    procid = os.environ.get("SLURM_PROCID", "")
    if procid.isdigit() and ntasks.isdigit() and int(ntasks) > 1:
        return int(procid)
    return None


def _check_sweeper_storage(args: list[str]) -> None:
    """Optuna 2.x (the one hydra-optuna-sweeper supports) cannot use SQL storage with SQLAlchemy 2: it fails with a bare
    AssertionError inside the sweeper. Say so before the sweep starts."""
    storage = next((a.split("=", 1)[1] for a in args if a.startswith("hydra.sweeper.storage=")), "null")
    if storage in ("null", "", "None"):
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        optuna, sqlalchemy = version("optuna"), version("sqlalchemy")
    except PackageNotFoundError:
        return
    if int(optuna.split(".")[0]) < 3 and int(sqlalchemy.split(".")[0]) >= 2:
        raise ConfigError(f"hydra.sweeper.storage={storage} needs SQLAlchemy 1.4 with optuna {optuna} (you have SQLAlchemy {sqlalchemy})",
                          hint="pip install 'lightplug[optuna]' installs versions that work together")


def _check_before_run(args: list[str], registry: Registry, task: Any = None) -> str:
    """Compose and check the job as the run will, before Hydra creates the run folder: a config or data
    error then leaves no file behind (an existing run folder keeps its ``.hydra`` record). With ``task``, run
    it as the Hydra job on that same composed config (:mod:`.hydra_job`), in the run folder it holds.

    Returns:
        The run folder (``hydra.run.dir``, resolved now: the run is pinned to it, see :func:`_pin_run_dir`).
    """
    import copy

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            run_dir = str(cfg.hydra.run.dir)
            with open_dict(cfg):  # `${now:...}` resolved once: the folder checked is the folder the job runs in
                cfg.hydra.run.dir = run_dir
            run = finalize(copy.deepcopy(cfg) if task is not None else cfg, plain_choices(cfg.hydra.runtime.choices), overrides)
            if run.cfg.get("resume") or run.cfg.get("init_from"):
                from ..training import check_checkpoint_settings

                check_checkpoint_settings(run)  # reads them with torch, but before Lightning loads or anything is written
            if task is not None:
                from .._heavy_imports import import_training_stack
                from .._run_folder import claim_run_folder
                from .hydra_job import run_composed

                with claim_run_folder(run_dir):  # one run per folder, refused before Hydra writes into it
                    import_training_stack(freeze=True)  # this process trains: the collector skips what the imports made
                    run_composed(cfg, task)
    except _UserError as exc:
        raise exc.error from exc.error.__cause__
    except (HydraException, OmegaConfBaseException) as exc:
        options = {g: group_options(g, registry) for g in ("model", "data", "optimizer", "scheduler", "trainer", "logger", "preset")}
        raise from_hydra(exc, options) from exc
    return run_dir


def check_job(args: list[str], registry: Registry) -> None:
    """Compose and check one run of ``lightplug train ARGS`` as the command does before it starts (the model/data
    task rule, the data and its facts, the plugin's own rules), without running it or writing a run folder.
    ``args`` hold the data :func:`data_for_models` implies and name every plugin they use (the UI's checks).

    Raises:
        ConfigError: one line per problem, as ``lightplug train`` prints them.
        PluginError, DataError: a plugin or the data cannot be used.
    """
    register_configs(registry, _choices(args), only_chosen=True)
    _check_before_run(args, registry)


def _pin_run_dir(args: list[str], run_dir: str) -> list[str]:
    """``args`` with ``hydra.run.dir`` set to the folder found now: ``${now:...}`` resolved again by Hydra could
    name the next second's folder, not the one whose lock this process holds."""
    kept = [a for a in args if a.lstrip("+").split("=", 1)[0] != "hydra.run.dir"]
    quoted = run_dir if all(c.isalnum() or c in "/._-:" for c in run_dir) else "'" + run_dir.replace("'", "\\'") + "'"
    return [*kept, f"hydra.run.dir={quoted}"]


def _record_config(path: Path, cfg: Any) -> None:
    """Hydra wrote the composed config into ``.hydra/config.yaml`` before the job ran; write the config that runs
    instead (the model's preset, the data facts, ``data.layout`` and ``monitor`` filled in, interpolations kept),
    so that it agrees with ``config.json``, ``hparams.yaml`` and the checkpoint. ``overrides.yaml`` stays as typed."""
    from omegaconf import OmegaConf

    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg))
    os.replace(tmp, path)


def _task(original_argv: list[str]) -> Any:
    def task(cfg: Any) -> float | None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        try:
            run = finalize(cfg, plain_choices(hc.runtime.choices), overrides)
            if hc.output_subdir:
                _record_config(Path(hc.runtime.output_dir) / str(hc.output_subdir) / "config.yaml", cfg)
            os.environ[_CHILD_ARGS] = json.dumps(overrides + [f"hydra.run.dir={hc.runtime.output_dir}", "hydra.output_subdir=null"])
            sys.argv = original_argv  # Lightning's DDP launcher re-runs this command line
            from ..training import run_training

            return run_training(run, hc.runtime.output_dir)
        except LightplugError as exc:
            raise _UserError(exc) from exc
        except Exception as exc:
            stop = stop_behind(exc)  # a second Ctrl-C inside torch.save: its cleanup's error sits on top of the stop
            if stop is None:
                raise
            raise _UserError(stop) from exc

    return task


def main(args: list[str]) -> int:
    """Run ``lightplug train`` with ``args`` (everything after ``train``); returns the exit code."""
    original_argv = list(sys.argv)
    args = _child_args(args)
    if args and args[0] in ("-sc", "--shell-completion"):
        from .completion import main as completion

        return completion(args[1:])
    args = _check_flags(args)
    registry = get_registry()
    chosen = _choices(args)
    everything = "experiment" in chosen
    if "model" not in chosen and not everything and any(a in ("--help", "-h") for a in args):
        print(_help(registry))
        return 0
    if "model" not in chosen and not everything and not _asks_hydra_only(args):
        names = ", ".join(registry.names("model")) or "none installed, see `lightplug new-plugin`"
        raise ConfigError(f"no model chosen: add model=NAME (available: {names})")
    implied = data_for_models(args, registry)
    if implied and implied[0] != "data=digits":  # digits is conf/train.yaml's default: nothing to say
        if not ({"--cfg", "-c", "--help", "-h"} & set(args)) and os.environ.get("LOCAL_RANK", "0") == "0":
            print(f"{' '.join(implied)}: the bundled data for {'/'.join(chosen['model'])}'s task (give data=NAME for other data)", file=sys.stderr)
        last = max(i for i, a in enumerate(args) if "=" in a and not a.startswith("-"))  # beside the other overrides
        args = [*args[: last + 1], *implied, *args[last + 1 :]]
        chosen = _choices(args)
    direct = composable_single_run(args) and not everything and os.environ.get("LOCAL_RANK", "0") == "0"
    picked = register_configs(registry, chosen, everything=everything, only_chosen=direct)
    owners = {g: chosen[g][0] for g in ("model", "data") if len(chosen.get(g, [])) == 1}
    owners.setdefault("data", "digits")
    preflight(args, registry, picked, owners)
    if ("--cfg" in args or "-c" in args) and ("-m" in args or "--multirun" in args):
        raise ConfigError("--cfg prints the config of one run; drop -m/--multirun to see it")
    shown = flag_value(args, "--cfg", "-c")
    if shown in ("job", "all"):  # answered by the core: the config the run uses, preset and data facts included
        return print_config(args, shown, resolve="--resolve" in args, package=flag_value(args, "--package", "-p"))
    info = flag_value(args, "--info", "-i", default="all")
    if info in ("config", "all"):
        return print_info(args, info)
    _check_sweeper_storage(args)
    single_run = not ({"-m", "--multirun", "--cfg", "-c"} & set(args)) and not _asks_hydra_only(args)
    folder: Any = contextlib.nullcontext()
    if single_run and os.environ.get("LOCAL_RANK", "0") == "0":
        if direct:  # composed once, run as Hydra's job without hydra.main's two compositions
            os.environ["HYDRA_FULL_ERROR"] = "1"
            _check_before_run(args, registry, task=_task(original_argv))
            return 0
        run_dir = _check_before_run(args, registry)
        args = _pin_run_dir(args, run_dir)
        from .._run_folder import claim_run_folder

        folder = claim_run_folder(run_dir)  # one run per folder, refused before Hydra writes into it
    if not _asks_hydra_only(args) and "--cfg" not in args and "-c" not in args:
        from .._heavy_imports import import_training_stack

        import_training_stack(freeze=True)  # this process trains: the collector skips what the imports made

    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with folder:
            run_hydra(args, _task(original_argv))
    except _UserError as exc:
        raise exc.error from exc.error.__cause__
    except (HydraException, OmegaConfBaseException) as exc:
        options = {g: group_options(g, registry) for g in ("model", "data", "optimizer", "scheduler", "trainer", "logger", "preset")}
        raise from_hydra(exc, options) from exc
    return 0


def program_name() -> str:
    """``sys.argv[0]``, or ``lightplug`` when run as ``python -m lightplug`` (the name the shell knows)."""
    first = sys.argv[0] if sys.argv else ""
    return "lightplug" if not first or first.endswith(".py") else first


def run_hydra(args: list[str], task: Any = None) -> None:
    """Run ``hydra.main`` on lightplug's config tree with ``args`` as its command line (``task``: the job;
    None for Hydra's own flags, which run no job)."""
    import hydra

    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them as one line
    saved = sys.argv
    sys.argv = [program_name(), *args]  # Hydra names the program after it (help, completion scripts)
    try:
        hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")(task or (lambda cfg: None))()
    finally:
        sys.argv = saved
