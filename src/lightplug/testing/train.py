"""``train_plugin_once``: a real one-epoch ``lightplug train`` of a model plugin, in a fresh folder and process.

The run uses ``data=synthetic`` shaped for the plugin (its example input and output), so that no file or
download is needed; it goes through the same command a user types, Hydra and all.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from ..errors import PluginError
from ..registry import LoadedPlugin, get_registry

__all__ = ["train_plugin_once", "synthetic_overrides", "format_overrides"]

_QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    return str(value)


def format_overrides(overrides: dict[str, Any], model_fields: list[str]) -> list[str]:
    """Keyword overrides as command-line ones.

    ``model__width=8`` and ``{"model.width": 8}`` give ``model.width=8``; a bare model field (``width=8``)
    means ``model.width``; any other bare key is top-level (``seed=1``, ``optimizer="sgd"``).
    """
    out = []
    for key, value in overrides.items():
        key = key.replace("__", ".")
        if "." not in key and key in model_fields:
            key = f"model.{key}"
        out.append(f"{key}={_hydra_value(value)}")
    return out


def _square_split(features: int) -> tuple[int, int] | None:
    """``(channels, size)`` with ``channels * size**2 == features``, size >= 2 as large as possible."""
    for size in range(math.isqrt(features), 1, -1):
        if features % (size * size) == 0 and features // (size * size) <= 64:
            return features // (size * size), size
    return None


def synthetic_overrides(loaded: LoadedPlugin) -> list[str]:
    """``data.*`` overrides that make ``data=synthetic`` fit the plugin: the shape of its example input,
    and as many classes (or outputs) as its default build predicts."""
    import torch

    from .check import config_values
    from .model_checks import example_input, predictions

    task = loaded.task or "classification"
    if task not in ("classification", "regression"):
        raise PluginError(f"model {loaded.ref.name!r} is a {task} model; data=synthetic has classification and regression targets only",
                          hint="pass data=NAME to train_plugin_once")
    values = {k: v for k, v in config_values(loaded.schema, {}).items() if v != "???"}
    plugin = loaded.instantiate(values)
    x = example_input(plugin, values)
    net = plugin.build(plugin.cfg).eval()
    with torch.no_grad():
        preds = predictions(net(x))
    args = [f"data.task={task}", "data.num_samples=256", "data.batch_size=32"]
    if x.ndim == 2:
        split = _square_split(int(x.shape[1]))
        if split is None and "in_features" not in values:
            raise PluginError(f"model {loaded.ref.name!r} takes {x.shape[1]} features, which data=synthetic cannot make (channels * size**2)",
                              hint="give the model an in_features field, or pass data=NAME")
        channels, size = split or (1, 4)
        args += ["data.layout=flat", f"data.in_channels={channels}", f"data.image_size={size}"]
    elif x.ndim == 4 and x.shape[2] == x.shape[3]:
        args += ["data.layout=image", f"data.in_channels={int(x.shape[1])}", f"data.image_size={int(x.shape[2])}"]
    else:
        raise PluginError(f"model {loaded.ref.name!r} takes input of shape {tuple(x.shape)}; data=synthetic makes (B, F) or (B, C, S, S)")
    if task == "classification":
        args.append(f"data.num_classes={int(preds.shape[1])}")
    else:
        args.append(f"data.num_outputs={int(preds.shape[1]) if preds.ndim == 2 else 1}")
    return args


def _env(loaded: LoadedPlugin, folder: Path) -> dict[str, str]:
    """The caller's environment, plus what makes its plugin importable from another folder; the run is recorded in
    ``folder``'s own runs index unless ``LIGHTPLUG_HOME`` is set (a test run never lands in the user's index)."""
    env = dict(os.environ)
    env.setdefault("LIGHTPLUG_HOME", str(folder / ".lightplug"))
    paths = [os.getcwd(), *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    if loaded.ref.source == "local":
        plugin_dir = str(Path(loaded.ref.target).parent)
        env["LIGHTPLUG_PLUGIN_PATH"] = os.pathsep.join([plugin_dir, *[p for p in env.get("LIGHTPLUG_PLUGIN_PATH", "").split(os.pathsep) if p]])
    return env


def train_plugin_once(name: str, tmp_path: str | os.PathLike[str], timeout: float = 600, **overrides: Any) -> dict[str, Any]:
    """Train the model plugin ``name`` for one epoch with ``lightplug train`` and return its ``summary.json``.

    The run happens in ``tmp_path`` (created if need be, no config files in it) in a new process; data is
    ``data=synthetic`` shaped for the plugin unless ``data=...`` is given.

    Args:
        name: the model plugin (``dist:name``, ``package.module:Class`` and local plugins work too).
        tmp_path: the folder to run in; the run folder is ``tmp_path/run``.
        timeout: seconds before the run is stopped.
        **overrides: more settings: ``data="diabetes"``, ``width=8`` (a model field), ``trainer__max_epochs=2``,
            ``**{"optimizer.lr": 0.01}``.

    Returns:
        The summary: ``monitor``, ``best``, ``best_checkpoint`` and the last ``metrics``.

    Raises:
        AssertionError: the run failed; the message holds the command and the end of its output.

    Example:
        >>> summary = train_plugin_once("mlp", tmp_path)  # doctest: +SKIP
        >>> summary["monitor"], summary["best"] > 0.5  # doctest: +SKIP
        ('val/acc', True)
    """
    loaded = get_registry().get("model", name)
    folder = Path(tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    run_dir = folder / "run"
    data = str(overrides.pop("data", "synthetic"))
    extra = format_overrides(overrides, loaded.schema.names())
    given = {a.split("=", 1)[0] for a in extra}
    defaults = ["trainer.max_epochs=1", *_QUIET, *(synthetic_overrides(loaded) if data == "synthetic" else [])]
    args = ["train", f"model={name}", f"data={data}", *[a for a in defaults if a.split("=", 1)[0] not in given], *extra, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run([sys.executable, "-m", "lightplug", *args], cwd=folder, env=_env(loaded, folder), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise AssertionError(f"`lightplug {' '.join(args)}` exited with code {proc.returncode}:\n{tail}")
    summary_file = run_dir / "summary.json"
    if not summary_file.is_file():
        raise AssertionError(f"`lightplug {' '.join(args)}` wrote no {summary_file}")
    summary: dict[str, Any] = json.loads(summary_file.read_text())
    return summary
