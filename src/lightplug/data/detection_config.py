"""Settings every detection data plugin shares (augmentations that keep boxes right, what to do with bad
annotations), and the record of one annotated image. Light: no torch, so listings stay fast."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ..errors import DataError
from ..plugin import Param

__all__ = ["DetectionAugment", "DetectionRecord", "AnnotationProblem", "apply_on_bad", "MAX_LISTED_PROBLEMS"]

#: Bad annotations listed in an error message (the rest are counted).
MAX_LISTED_PROBLEMS = 20


@dataclass
class DetectionAugment:
    """Augmentations of the training images, applied with ``torchvision.transforms.v2`` so that the boxes
    move with the pixels; validation images are only resized."""

    hflip: Annotated[float, Param(ge=0, le=1, help="probability of a horizontal flip", group="augment")] = 0.5
    scale_jitter: Annotated[float, Param(ge=0, lt=1, help="random zoom in or out by up to this fraction (with a random shift)", group="augment")] = 0.0
    color_jitter: Annotated[float, Param(ge=0, le=1, help="brightness/contrast/saturation jitter", group="augment")] = 0.0


@dataclass
class DetectionRecord:
    """One annotated image before loading.

    Attributes:
        id: what identifies it in results (a file path, or ``"7"`` for generated image 7).
        boxes: ``K x 4`` float32 ``x1, y1, x2, y2`` in pixels of the source image.
        labels: ``K`` int64 in ``[0, num_classes)``.
        path: the image file (``None`` for images held in memory).
        image: ``H x W x 3`` in memory (uint8, or float in [0, 1]) when there is no file.
        size: ``(width, height)`` of the source image when known without decoding it.
    """

    id: str
    boxes: Any
    labels: Any
    path: str | None = None
    image: Any = None
    size: tuple[int, int] | None = None


@dataclass
class AnnotationProblem:
    """A bad annotation: where it is (``file:line``, ``annotation id 12``) and what is wrong."""

    where: str
    what: str

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def apply_on_bad(problems: list[AnnotationProblem], on_bad: str, source: str) -> str | None:
    """Act on the bad annotations a reader found and left out of its records.

    Args:
        problems: what the reader found (its records already exclude them).
        on_bad: ``error`` (raise, listing them) or ``skip`` (train on the rest).
        source: the config that named the data, for the message (``data.annotations=FILE``).

    Returns:
        With ``skip``, a line saying how many were skipped (``None`` when none were).

    Raises:
        DataError: ``on_bad=error`` and there are problems: one line per problem (the first
            :data:`MAX_LISTED_PROBLEMS`), the count, and how to skip them.
    """
    if not problems:
        return None
    if on_bad == "skip":
        return f"{source}: skipped {len(problems)} bad annotation(s) (first: {problems[0]})"
    shown = [str(p) for p in problems[:MAX_LISTED_PROBLEMS]]
    more = len(problems) - len(shown)
    lines = "\n  ".join(shown + ([f"... and {more} more"] if more else []))
    raise DataError(f"{source}: {len(problems)} bad annotation(s):\n  {lines}", hint="fix them, or train on the rest with data.on_bad=skip")


_ = (field, Literal)  # kept for plugins that copy this module's dataclasses
