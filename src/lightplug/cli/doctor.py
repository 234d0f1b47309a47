"""``lightplug doctor``: versions, accelerators and every plugin's status: what a bug report needs."""

from __future__ import annotations

import json
import platform
import sys
from importlib import metadata
from typing import Any

from ..registry import KINDS, get_registry
from ._args import ArgumentParser
from .models import listing_rows

__all__ = ["main", "report"]

_PACKAGES = ("torch", "torchvision", "lightning", "hydra-core", "omegaconf", "torchmetrics", "rich", "scikit-learn",
             "timm", "onnx", "onnxruntime", "wandb", "tensorboard", "mlflow", "mlflow-skinny", "hydra-optuna-sweeper")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _accelerators() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {"cpu_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available()}
    if out["cuda"]:
        out["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        out["bf16"] = torch.cuda.is_bf16_supported()
    out["mps"] = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    return out


def report() -> dict[str, Any]:
    """Versions, accelerators and plugins (every plugin is loaded to learn its status)."""
    from .. import PLUGIN_API_VERSION, __version__

    registry = get_registry()
    plugins = {kind: listing_rows(registry, kind, check=True, include_ignored=True) for kind in KINDS}
    return {
        "lightplug": __version__,
        "plugin_api": PLUGIN_API_VERSION,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": {name: v for name in _PACKAGES if (v := _version(name))},
        "accelerators": _accelerators(),
        "plugins": plugins,
        "problems": [f"{kind} {r['name']} ({r['package']}, {r['entry_point']}): {r['cause']}"
                     for kind, rows in plugins.items() for r in rows if r["status"] not in ("ok",)],
    }


def main(argv: list[str]) -> int:
    parser = ArgumentParser(prog="lightplug doctor", description="Versions, accelerators and the status of every plugin.")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args(argv)
    data = report()
    if args.json:
        print(json.dumps(data, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"lightplug {data['lightplug']} (plugin API {data['plugin_api']}), Python {data['python']}, {data['platform']}", highlight=False)
    console.print("packages: " + ", ".join(f"{k} {v}" for k, v in data["packages"].items()), highlight=False)
    console.print("accelerators: " + ", ".join(f"{k}={v}" for k, v in data["accelerators"].items()), highlight=False)
    table = Table(title="plugins", title_justify="left")
    for col in ("KIND", "NAME", "VERSION", "PACKAGE", "STATUS"):
        table.add_column(col)
    for kind, rows in data["plugins"].items():
        for r in rows:
            table.add_row(kind, r["name"], r["version"], r["package"], r["status"])
    console.print(table)
    if data["problems"]:
        console.print("[red]problems:[/]")
        for line in data["problems"]:
            console.print(f"  {line}", highlight=False, markup=False)
    else:
        console.print("no broken, conflicting or incompatible plugins")
    return 0
