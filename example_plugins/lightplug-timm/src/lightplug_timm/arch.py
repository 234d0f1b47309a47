"""What timm says about one architecture: its name, the keyword arguments it takes, its native input size, and
which input sizes it accepts.

Everything is learnt from timm itself, never from a list kept here: the native size is timm's
``pretrained_cfg["input_size"]``; the arguments are those the model class accepts (timm raises ``TypeError`` for
the others); a size is accepted when the model, built for that size (``img_size`` for the architectures that take
it), runs a forward pass on it. Both are tried on PyTorch's ``meta`` device, where building and running a model
only propagates shapes: about 0.1 s for a small model, under 1 s for the largest, and nothing is allocated. On
the 150 architectures compared, the meta device accepted and refused exactly the sizes that real tensors did.
Results are cached for the process.
"""

from __future__ import annotations

import difflib
import inspect
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["ArchInfo", "arch_info", "unknown_arch", "size_problem", "fit_size", "OPTIONAL_KWARGS"]

#: The arguments the plugin passes only to architectures that take them (``None``/0 means: not passed).
OPTIONAL_KWARGS = ("img_size", "drop_rate", "drop_path_rate")
#: Sizes tried, after the data's own, when it does not fit: the data's size rounded up to each multiple.
_MULTIPLES = (16, 32, 64, 128, 256)


@dataclass(frozen=True)
class ArchInfo:
    """What timm says about one architecture.

    Attributes:
        arch: the name, e.g. ``vit_tiny_patch16_224``.
        native: the side of timm's ``pretrained_cfg["input_size"]`` (the larger one when it is not square).
        fixed: timm marks it ``fixed_input_size``: it runs at the size it is built for only.
        takes: which of :data:`OPTIONAL_KWARGS` it accepts.
        params: the arguments of its model class (for close matches in messages).
        model_class: ``module.Class`` of the built model.
    """

    arch: str
    native: int
    fixed: bool
    takes: frozenset[str]
    params: tuple[str, ...]
    model_class: str


def unknown_arch(arch: str) -> str | None:
    """The problem line for an architecture timm does not have, with close matches; ``None`` when it exists.

    Example:
        >>> unknown_arch("resnt18")
        'model.arch=resnt18: unknown timm architecture (did you mean resnet18, resnet18d, skresnet18?)'
    """
    import timm

    if timm.is_model(arch):
        return None
    close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else "timm.list_models() lists them"
    return f"model.arch={arch}: unknown timm architecture ({hint})"


def _unexpected(exc: TypeError, names: set[str]) -> str | None:
    """The argument a ``TypeError`` says is unexpected, when it is one of ``names``."""
    text = str(exc)
    if "unexpected keyword argument" not in text:
        return None
    return next((n for n in names if f"'{n}'" in text), None)


def _meta_build(arch: str, **kwargs: Any) -> Any:
    """``timm.create_model(arch, pretrained=False, **kwargs)`` on the meta device (shapes only, nothing allocated)."""
    import timm
    import torch

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        return timm.create_model(arch, pretrained=False, **kwargs)


@lru_cache(maxsize=256)
def arch_info(arch: str) -> ArchInfo:
    """What timm says about ``arch`` (which must exist: see :func:`unknown_arch`).

    Example:
        >>> info = arch_info("ghostnet_100")
        >>> info.native, sorted(info.takes)
        (224, ['drop_rate'])
    """
    from timm.models import get_pretrained_cfg

    cfg = get_pretrained_cfg(arch)
    size = tuple(getattr(cfg, "input_size", None) or (3, 224, 224))
    native = max(int(size[-1]), int(size[-2]))
    candidates = {"img_size": native, "drop_rate": 0.0, "drop_path_rate": 0.1}
    while True:
        try:
            net = _meta_build(arch, num_classes=2, **candidates)
            break
        except TypeError as exc:
            name = _unexpected(exc, set(candidates))
            if name is None:
                raise
            del candidates[name]
    cls = type(net)
    params = tuple(p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "args", "kwargs"))
    return ArchInfo(arch, native, bool(getattr(cfg, "fixed_input_size", False)), frozenset(candidates), params,
                    f"{cls.__module__}.{cls.__qualname__}")


def build_kwargs(info: ArchInfo, image_size: int) -> dict[str, Any]:
    """``img_size`` for an architecture that takes it, when a size other than its own is asked for."""
    return {"img_size": image_size} if image_size and "img_size" in info.takes and image_size != info.native else {}


@lru_cache(maxsize=1024)
def size_problem(arch: str, in_chans: int, image_size: int) -> str | None:
    """Why ``arch`` cannot take ``in_chans x image_size x image_size`` images (the first line of what the model
    raised on the meta device), or ``None`` when it can.

    Example:
        >>> size_problem("convnext_atto", 3, 8)
        'RuntimeError: Calculated padded input size per channel: (1 x 1). Kernel size: (2 x 2). ...'
    """
    import torch

    info = arch_info(arch)
    try:
        net = _meta_build(arch, num_classes=2, in_chans=in_chans, **build_kwargs(info, image_size)).eval()
        with warnings.catch_warnings(), torch.device("meta"), torch.no_grad():
            warnings.simplefilter("ignore")
            out = net(torch.empty(1, in_chans, image_size, image_size))
    except Exception as exc:  # noqa: BLE001 - whatever the architecture raises means: not this size
        text = " ".join(str(exc).split())
        return f"{type(exc).__name__}: {text[:120]}{' ...' if len(text) > 120 else ''}" if text else type(exc).__name__
    shape = tuple(getattr(out, "shape", ()))
    return None if shape == (1, 2) else f"the output has shape {shape}, not (1, num_classes)"


def fit_size(arch: str, in_chans: int, image_size: int) -> int | None:
    """The size to use for data of ``image_size``: itself when ``arch`` takes it, else the smallest of the data's size
    rounded up to a multiple of 16, 32, 64, 128 or 256, or the architecture's native size, that it takes; ``None``
    when it runs on none of them with ``in_chans`` channels (``csatv2`` takes 3 channels only).

    Example:
        >>> fit_size("convnext_atto", 1, 8), fit_size("halonet26t", 3, 32), fit_size("resnet18", 1, 8), fit_size("csatv2", 1, 64)
        (32, 256, 8, None)
    """
    info = arch_info(arch)
    image_size = image_size if image_size > 0 else info.native
    candidates = {m * math.ceil(image_size / m) for m in _MULTIPLES} | {info.native * math.ceil(image_size / info.native), info.native}
    for size in [image_size, *sorted(candidates - {image_size, info.native}), info.native]:
        if size_problem(arch, in_chans, size) is None:
            return size
    return None


def argument_problem(arch: str, field: str, value: Any) -> str | None:
    """The problem line for a setting the architecture has no argument for, with close matches among the ones it has.

    Example:
        >>> argument_problem("ghostnet_100", "drop_path_rate", 0.1)
        'model.drop_path_rate=0.1: ghostnet_100 takes no drop_path_rate (did you mean drop_rate?)'
    """
    info = arch_info(arch)
    if field in info.takes:
        return None
    close = difflib.get_close_matches(field, info.params, n=2, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}?" if close else f"it takes {', '.join(info.params)}"
    return f"model.{field}={value}: {arch} takes no {field} ({hint})"
