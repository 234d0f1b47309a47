"""``lightplug train [overrides]``: register plugin schemas, check the command line, then hand over to
``hydra.main`` (runs, multiruns, sweepers and launchers are Hydra's); torch is imported only once the
config is known to be valid."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from ..config.finalize import finalize, plain_choices
from ..config.hydra_errors import from_hydra
from ..config.paths import conf_dir
from ..config.preflight import group_options, parse_overrides, preflight
from ..config.store import register
from ..errors import ConfigError, LightplugError
from ..registry import Registry, get_registry
from ..schema import Schema
from .hydra_job import composable_single_run

__all__ = ["main", "register_configs"]

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


class _UserError(BaseException):
    """Carries a LightplugError past Hydra's job runner (which reports every Exception a second time)."""

    def __init__(self, error: LightplugError) -> None:
        super().__init__(str(error))
        self.error = error


def _child_args(args: list[str]) -> list[str]:
    """A DDP child rank that Lightning started: run the parent's job in the parent's folder."""
    saved = os.environ.get(_CHILD_ARGS)
    if saved and os.environ.get("LOCAL_RANK", "0") != "0":
        return list(json.loads(saved))
    return args


def _print_job_config(args: list[str], resolve: bool) -> int:
    """``--cfg job``: the config exactly as the run would use it (preset applied, facts bound)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
        run = finalize(cfg, plain_choices(cfg.hydra.runtime.choices), overrides)
    print(OmegaConf.to_yaml(OmegaConf.create(run.cfg) if resolve else cfg))
    return 0


def _check_before_run(args: list[str], registry: Registry, task: Any = None) -> None:
    """Compose and check the job as the run will, before Hydra creates the run folder: a config or data
    error then leaves no file behind (an existing run folder keeps its ``.hydra`` record). With ``task``, run
    it as the Hydra job on that same composed config (:mod:`.hydra_job`)."""
    import copy

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = [a for a in args if "=" in a and not a.startswith("-")]
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = compose("train", overrides=overrides, return_hydra_config=True)
            run = finalize(copy.deepcopy(cfg) if task is not None else cfg, plain_choices(cfg.hydra.runtime.choices), overrides)
            if run.cfg.get("resume") or run.cfg.get("init_from"):
                from ..training import check_checkpoint_settings

                check_checkpoint_settings(run)  # reads them with torch, but before Lightning loads or anything is written
            if task is not None:
                from .._heavy_imports import import_training_stack
                from .hydra_job import run_composed

                import_training_stack(freeze=True)  # this process trains: the collector skips what the imports made
                run_composed(cfg, task)
    except _UserError as exc:
        raise exc.error from exc.error.__cause__
    except (HydraException, OmegaConfBaseException) as exc:
        options = {g: group_options(g, registry) for g in ("model", "data", "optimizer", "scheduler", "trainer", "logger", "preset")}
        raise from_hydra(exc, options) from exc


def _task(original_argv: list[str]) -> Any:
    def task(cfg: Any) -> float | None:
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.get()
        overrides = list(hc.overrides.task)
        try:
            run = finalize(cfg, plain_choices(hc.runtime.choices), overrides)
            os.environ[_CHILD_ARGS] = json.dumps(overrides + [f"hydra.run.dir={hc.runtime.output_dir}", "hydra.output_subdir=null"])
            sys.argv = original_argv  # Lightning's DDP launcher re-runs this command line
            from ..training import run_training

            return run_training(run, hc.runtime.output_dir)
        except LightplugError as exc:
            raise _UserError(exc) from exc

    return task


def main(args: list[str]) -> int:
    """Run ``lightplug train`` with ``args`` (everything after ``train``); returns the exit code."""
    original_argv = list(sys.argv)
    args = _child_args(args)
    registry = get_registry()
    chosen = _choices(args)
    everything = "experiment" in chosen
    if "model" not in chosen and not everything and any(a in ("--help", "-h") for a in args):
        print(_help(registry))
        return 0
    if "model" not in chosen and not everything and not _asks_hydra_only(args):
        names = ", ".join(registry.names("model")) or "none installed, see `lightplug new-plugin`"
        raise ConfigError(f"no model chosen: add model=NAME (available: {names})")
    direct = composable_single_run(args) and not everything and os.environ.get("LOCAL_RANK", "0") == "0"
    picked = register_configs(registry, chosen, everything=everything, only_chosen=direct)
    owners = {g: chosen[g][0] for g in ("model", "data") if len(chosen.get(g, [])) == 1}
    owners.setdefault("data", "digits")
    preflight(args, registry, picked, owners)
    if ("--cfg" in args or "-c" in args) and ("-m" in args or "--multirun" in args):
        raise ConfigError("--cfg prints the config of one run; drop -m/--multirun to see it")
    if "--cfg" in args or "-c" in args:
        flag = args.index("--cfg") if "--cfg" in args else args.index("-c")
        if flag + 1 < len(args) and args[flag + 1] == "job":
            return _print_job_config(args, resolve="--resolve" in args)
    single_run = not ({"-m", "--multirun", "--cfg", "-c"} & set(args)) and not _asks_hydra_only(args)
    if single_run and os.environ.get("LOCAL_RANK", "0") == "0":
        if direct:  # composed once, run as Hydra's job without hydra.main's two compositions
            os.environ["HYDRA_FULL_ERROR"] = "1"
            _check_before_run(args, registry, task=_task(original_argv))
            return 0
        _check_before_run(args, registry)

    if not _asks_hydra_only(args) and "--cfg" not in args and "-c" not in args:
        from .._heavy_imports import import_training_stack

        import_training_stack(freeze=True)  # this process trains: the collector skips what the imports made

    import hydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    os.environ["HYDRA_FULL_ERROR"] = "1"  # let errors reach us; we print them as one line
    sys.argv = [original_argv[0], *args]
    app = hydra.main(config_path=str(conf_dir()), config_name="train", version_base="1.3")(_task(original_argv))
    try:
        app()
    except _UserError as exc:
        raise exc.error from exc.error.__cause__
    except (HydraException, OmegaConfBaseException) as exc:
        options = {g: group_options(g, registry) for g in ("model", "data", "optimizer", "scheduler", "trainer", "logger", "preset")}
        raise from_hydra(exc, options) from exc
    finally:
        sys.argv = original_argv
    return 0
