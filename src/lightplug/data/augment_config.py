"""The ``augment`` fields shared by the image data plugins (``shapes``, ``image_folder``) and the rule of which
apply to which task. Light: no torch, so listings and checks stay fast; :mod:`lightplug.data.augment` builds the
``torchvision.transforms.v2`` steps once a run starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from ..plugin import Param

__all__ = ["ImageAugment", "POLICIES", "CLASSIFICATION_ONLY", "augment_problems"]

#: ``policy`` values: ``v2.RandAugment``, ``v2.TrivialAugmentWide``, ``v2.AutoAugment`` (ImageNet policy), ``v2.AugMix``.
POLICIES = ("none", "randaugment", "trivialaugment", "autoaugment", "augmix")
#: Fields that only classification takes: torchvision's policies refuse boxes and masks, and an erased patch would
#: leave a mask or a box claiming pixels that are gone.
CLASSIFICATION_ONLY = ("policy", "erasing", "mixup_alpha", "cutmix_alpha")


@dataclass
class ImageAugment:
    """Augmentations of the training images, all from ``torchvision.transforms.v2`` (validation and test images
    are only resized and normalised). Boxes and masks follow the pixels for detection and segmentation."""

    random_crop: Annotated[bool, Param(help="random resized crops when training (area crop_scale, aspect crop_ratio)", group="augment")] = False
    crop_scale: Annotated[list[float], Param(gt=0, le=1, help="random_crop: range of the crop's share of the image area", group="augment")] = \
        field(default_factory=lambda: [0.7, 1.0])
    crop_ratio: Annotated[list[float], Param(gt=0, le=10, help="random_crop: range of the crop's aspect ratio (width / height)", group="augment")] = \
        field(default_factory=lambda: [0.75, 1.3333])
    vflip: Annotated[float, Param(ge=0, le=1, help="probability of a vertical flip", group="augment")] = 0.0
    rotation: Annotated[float, Param(ge=0, le=180, help="random rotation up to this many degrees", group="augment")] = 0.0
    grayscale: Annotated[float, Param(ge=0, le=1, help="probability of turning an image grey (its channels kept)", group="augment")] = 0.0
    policy: Annotated[Literal["none", "randaugment", "trivialaugment", "autoaugment", "augmix"],
                      Param(help="an automatic augmentation policy (classification only)", group="augment")] = "none"
    magnitude: Annotated[int, Param(ge=1, le=30, help="randaugment: magnitude of each op (of 31 bins); augmix: severity (1-10); "
                                                      "trivialaugment and autoaugment draw their own", group="augment")] = 9
    erasing: Annotated[float, Param(ge=0, le=1, help="probability of erasing a random rectangle (RandomErasing; classification only)",
                                    group="augment")] = 0.0
    mixup_alpha: Annotated[float, Param(ge=0, le=100, help="MixUp of training batches: Beta(alpha, alpha) mixing weight (0: off; classification only)",
                                        group="augment")] = 0.0
    cutmix_alpha: Annotated[float, Param(ge=0, le=100, help="CutMix of training batches: Beta(alpha, alpha) pasted area (0: off; classification only)",
                                         group="augment")] = 0.0
    mix_switch_prob: Annotated[float, Param(ge=0, le=1, help="with both MixUp and CutMix on: share of batches that get CutMix", group="augment")] = 0.5


def augment_problems(cfg: Any, task: str) -> list[str]:
    """What is wrong with the ``augment`` fields of ``cfg`` for ``task``, one line each.

    Example:
        >>> augment_problems(ImageAugment(policy="randaugment"), "segmentation")  # doctest: +ELLIPSIS
        ['data.policy=randaugment does not apply to segmentation data: ... (use data.policy=none, or data.task=classification)']
    """
    problems = []
    for name in ("crop_scale", "crop_ratio"):
        lo_hi = list(getattr(cfg, name))
        if len(lo_hi) != 2 or lo_hi[0] > lo_hi[1]:
            problems.append(f"data.{name}={lo_hi}: expected two values [low, high] with low <= high")
    if task != "classification":
        if cfg.policy != "none":
            problems.append(f"data.policy={cfg.policy} does not apply to {task} data: torchvision's policies change pixels only, "
                            f"boxes and masks would not follow (use data.policy=none, or data.task=classification)")
        if cfg.erasing > 0:
            problems.append(f"data.erasing={cfg.erasing:g} does not apply to {task} data: the erased pixels would stay in the "
                            f"{'masks' if task == 'segmentation' else 'boxes'} (use data.erasing=0)")
        for name in ("mixup_alpha", "cutmix_alpha"):
            if getattr(cfg, name) > 0:
                problems.append(f"data.{name}={getattr(cfg, name):g} does not apply to {task} data: it mixes class labels "
                                f"(use data.{name}=0)")
    if cfg.policy == "augmix" and cfg.magnitude > 10:
        problems.append(f"data.magnitude={cfg.magnitude} is above augmix's highest severity 10 (use 1-10)")
    return problems
