"""The ``torchvision.transforms.v2`` steps of the ``augment`` fields (:class:`~lightplug.data.augment_config.ImageAugment`),
shared by ``shapes`` (every task) and ``image_folder``; ``tv_tensors`` boxes and masks given with the image follow it."""

from __future__ import annotations

from typing import Any

__all__ = ["batch_mix", "flip_probability", "train_steps", "policy_step", "erasing_steps", "has_train_steps"]


def flip_probability(value: Any) -> float:
    """``hflip`` as a probability: ``image_folder`` takes a bool (``true``: half the images), ``shapes`` a probability."""
    if isinstance(value, bool):
        return 0.5 if value else 0.0
    return float(value)


def policy_step(policy: str, magnitude: int) -> Any:
    """The ``v2`` policy transform named by ``policy`` (``None`` for ``none``); it takes uint8 or float images."""
    from torchvision.transforms import v2

    if policy == "randaugment":
        return v2.RandAugment(magnitude=magnitude)
    if policy == "trivialaugment":
        return v2.TrivialAugmentWide()
    if policy == "autoaugment":
        return v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET)
    if policy == "augmix":
        return v2.AugMix(severity=magnitude)
    return None


def train_steps(cfg: Any, image_size: int, channels: int, skip: tuple[str, ...] = ()) -> list[Any]:
    """The training steps of ``cfg``'s augment fields, in order: random resized crop, flips, scale jitter, rotation, colour
    jitter, grayscale, policy (and ``scale_jitter``, a zoom with a shift, where the config has it). Fields a config lacks (``coco``, ``yolo``) count as off. Applied to a uint8 image
    (with its boxes or mask); scaling, normalising and :func:`erasing_steps` come after. ``skip`` names fields
    the caller applies itself."""
    from torchvision.transforms import v2

    steps: list[Any] = []

    def on(name: str, default: Any = 0.0) -> Any:
        return default if name in skip else getattr(cfg, name, default)

    if on("random_crop", False):
        scale, ratio = (float(v) for v in cfg.crop_scale), (float(v) for v in cfg.crop_ratio)
        steps.append(v2.RandomResizedCrop((image_size, image_size), scale=tuple(scale), ratio=tuple(ratio), antialias=True))  # type: ignore[arg-type]
    if (p := flip_probability(on("hflip"))) > 0:
        steps.append(v2.RandomHorizontalFlip(p=p))
    if (p := float(on("vflip"))) > 0:
        steps.append(v2.RandomVerticalFlip(p=p))
    if (jitter := float(on("scale_jitter"))) > 0:  # shapes' zoom with a shift (DetectionAugment)
        steps.append(v2.RandomAffine(degrees=0.0, translate=(jitter / 2, jitter / 2), scale=(1 - jitter, 1 + jitter)))
    if (degrees := float(on("rotation"))) > 0:
        steps.append(v2.RandomRotation(degrees))
    if (j := float(on("color_jitter"))) > 0:
        steps.append(v2.ColorJitter(brightness=j, contrast=j, saturation=j if channels == 3 else 0))
    if (p := float(on("grayscale"))) > 0 and channels == 3:
        steps.append(v2.RandomGrayscale(p=p))
    if (policy := policy_step(on("policy", "none"), int(getattr(cfg, "magnitude", 9)))) is not None:
        steps.append(policy)
    return steps


def erasing_steps(cfg: Any) -> list[Any]:
    """``v2.RandomErasing`` (on the normalised image, where it fills zeros, the data's mean) when ``erasing > 0``."""
    from torchvision.transforms import v2

    p = float(getattr(cfg, "erasing", 0.0))
    return [v2.RandomErasing(p=p)] if p > 0 else []


def has_train_steps(cfg: Any) -> bool:
    """Whether ``cfg`` augments at all (without building anything)."""
    return bool(getattr(cfg, "random_crop", False) or flip_probability(getattr(cfg, "hflip", 0.0)) > 0
                or any(float(getattr(cfg, k, 0.0)) > 0 for k in ("vflip", "rotation", "color_jitter", "grayscale", "erasing", "scale_jitter"))
                or getattr(cfg, "policy", "none") != "none")


def batch_mix(cfg: Any, num_classes: int) -> Any:
    """``v2.MixUp`` and/or ``v2.CutMix`` over a whole batch (``v2.RandomChoice`` between them, CutMix with
    probability ``mix_switch_prob``, when both are on), called as ``mix(images, labels)``: the labels come back as
    soft targets (``B x num_classes``, each row summing to 1). ``None`` when both alphas are 0."""
    from torchvision.transforms import v2

    mixup, cutmix = float(getattr(cfg, "mixup_alpha", 0.0)), float(getattr(cfg, "cutmix_alpha", 0.0))
    steps = ([v2.MixUp(alpha=mixup, num_classes=num_classes)] if mixup > 0 else []) + \
        ([v2.CutMix(alpha=cutmix, num_classes=num_classes)] if cutmix > 0 else [])
    if not steps:
        return None
    if len(steps) == 1:
        return steps[0]
    switch = float(getattr(cfg, "mix_switch_prob", 0.5))
    return v2.RandomChoice(steps, p=[1 - switch, switch])
