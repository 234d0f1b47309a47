"""The built-in data plugins (entry-point group ``lightplug.datamodules``), as light as a listing needs:
configs and facts here, tensors in :mod:`lightplug.data.datamodule` once a run starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from ..errors import DataError
from ..plugin import DataPlugin, Param
from .augment_config import ImageAugment, augment_problems

__all__ = ["Digits", "Diabetes", "Synthetic", "ImageFolder", "IMAGE_SUFFIXES", "LoaderConfig", "LoaderData", "split_problems"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class LoaderConfig:
    """Settings every data plugin shares: batching, workers and the split."""

    batch_size: Annotated[int, Param(ge=1, le=65536, help="samples per batch")] = 64
    num_workers: Annotated[int, Param(ge=0, le=64, help="loader worker processes (0: load in the main process)", group="loader", advanced=True)] = 0
    pin_memory: Annotated[bool, Param(help="page-locked memory for faster GPU copies", group="loader", advanced=True)] = False
    persistent_workers: Annotated[bool, Param(help="keep workers alive between epochs", group="loader", advanced=True)] = False
    val_fraction: Annotated[float, Param(gt=0, lt=1, help="share of samples held out for validation", group="split")] = 0.2
    test_fraction: Annotated[float, Param(ge=0, lt=1, help="share of samples held out for testing", group="split")] = 0.2
    split_seed: Annotated[int, Param(ge=0, help="seed of the train/val/test split", group="split")] = 0


def split_problems(cfg: Any) -> list[str]:
    """The rule of :class:`LoaderConfig`'s split: validation and test shares leave a training share.

    Example:
        >>> split_problems(LoaderConfig(val_fraction=0.6, test_fraction=0.6))  # doctest: +ELLIPSIS
        ['data.val_fraction=0.6 with data.test_fraction=0.6: ... below 1)']
    """
    val, test = float(cfg.val_fraction), float(cfg.test_fraction)
    if val + test < 1:
        return []
    return [f"data.val_fraction={val:g} with data.test_fraction={test:g}: no sample is left for training "
            f"(the two shares must add up to less than 1)"]


class LoaderData(DataPlugin):
    """A data plugin whose ``Config`` extends :class:`LoaderConfig`: its split is checked before a run starts."""

    def check(self, cfg: Any) -> list[str]:
        return split_problems(cfg)


@dataclass
class DigitsConfig(LoaderConfig):
    layout: Annotated[Literal["auto", "image", "flat"], Param(help="1x8x8 images or 64 features; auto: what the model takes")] = "auto"


class Digits(LoaderData):
    """scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes)."""

    task = "classification"
    Config = DigitsConfig

    def facts(self, cfg: DigitsConfig) -> dict[str, Any]:
        return {"num_classes": 10, "num_outputs": 10, "in_channels": 1, "image_size": 8, "in_features": 64,
                "label_names": [str(i) for i in range(10)]}

    def build(self, cfg: DigitsConfig) -> Any:
        from .datamodule import digits_datamodule

        return digits_datamodule(cfg)


@dataclass
class DiabetesConfig(LoaderConfig):
    batch_size: Annotated[int, Param(ge=1, le=65536, help="samples per batch")] = 32


class Diabetes(LoaderData):
    """scikit-learn's bundled diabetes data: 10 standardised features, disease progression as target."""

    task = "regression"
    Config = DiabetesConfig

    def facts(self, cfg: DiabetesConfig) -> dict[str, Any]:
        return {"in_features": 10, "num_outputs": 1, "num_classes": 1, "label_names": ["progression"]}

    def build(self, cfg: DiabetesConfig) -> Any:
        from .datamodule import diabetes_datamodule

        return diabetes_datamodule(cfg)


@dataclass
class SyntheticConfig(LoaderConfig):
    task: Annotated[Literal["classification", "regression"], Param(help="what the targets are")] = "classification"
    num_samples: Annotated[int, Param(ge=8, le=10_000_000, help="samples generated")] = 1024
    num_classes: Annotated[int, Param(ge=2, le=100_000, help="classes (classification)")] = 4
    num_outputs: Annotated[int, Param(ge=1, le=100_000, help="targets per sample (regression)")] = 1
    in_channels: Annotated[int, Param(ge=1, le=64, help="image channels")] = 1
    image_size: Annotated[int, Param(ge=2, le=1024, help="image height and width")] = 16
    noise: Annotated[float, Param(ge=0, help="noise added to the class patterns")] = 0.5
    layout: Annotated[Literal["auto", "image", "flat"], Param(help="images or flat features; auto: what the model takes")] = "auto"
    seed: Annotated[int, Param(ge=0, help="seed of the generator")] = 0


class Synthetic(LoaderData):
    """Seeded random images (or features): a noisy pattern per class, or a linear target. Any shape."""

    task = "classification"
    Config = SyntheticConfig

    def facts(self, cfg: SyntheticConfig) -> dict[str, Any]:
        outputs = cfg.num_classes if cfg.task == "classification" else cfg.num_outputs
        return {"task": cfg.task, "num_classes": outputs, "num_outputs": outputs, "in_channels": cfg.in_channels, "image_size": cfg.image_size,
                "in_features": cfg.in_channels * cfg.image_size**2,
                "label_names": [f"class_{i}" for i in range(cfg.num_classes)] if cfg.task == "classification" else [f"y{i}" for i in range(outputs)]}

    def build(self, cfg: SyntheticConfig) -> Any:
        from .datamodule import synthetic_datamodule

        return synthetic_datamodule(cfg)


@dataclass
class ImageFolderConfig(LoaderConfig, ImageAugment):
    root: Annotated[str, Param(help="a folder with one sub-folder of images per class (or train/ and val/ sub-folders of those)")] = "???"
    image_size: Annotated[int, Param(ge=8, le=4096, help="images are resized to this square size")] = 32
    in_channels: Annotated[Literal[1, 3], Param(help="1: greyscale, 3: RGB")] = 3
    mean: Annotated[list[float], Param(help="per-channel mean for normalisation (one value: all channels)", group="transform")] = field(default_factory=lambda: [0.5])
    std: Annotated[list[float], Param(gt=0, help="per-channel std for normalisation", group="transform")] = field(default_factory=lambda: [0.5])
    hflip: Annotated[bool, Param(help="random horizontal flips when training (half the images)", group="augment")] = False
    color_jitter: Annotated[float, Param(ge=0, le=1, help="brightness/contrast/saturation jitter", group="augment")] = 0.0
    num_workers: Annotated[int, Param(ge=0, le=64, help="loader worker processes (images decode in workers)", group="loader", advanced=True)] = 2
    persistent_workers: Annotated[bool, Param(help="keep workers alive between epochs", group="loader", advanced=True)] = True


def _readable(path: Path) -> bool:
    """Whether Pillow can decode the file's header (stops at the first good image of a class)."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        return True
    except Exception:  # noqa: BLE001 - any decoder error means unreadable
        return False


def scan_image_folder(root: str) -> tuple[dict[str, list[Path]], dict[str, dict[str, list[Path]]] | None]:
    """Classes and their image files, without opening any image.

    Returns:
        ({class: files}, {"train": {...}, "val": {...}} when root has train/ and val/ sub-folders, else None).

    Raises:
        DataError: the folder is missing, has no class folders, or a class has no image file.
    """
    base = Path(root).expanduser()
    if root in ("", "???"):
        raise DataError("data.root is not set", hint="give the image folder: data=image_folder data.root=DIR")
    if not base.is_dir():
        raise DataError(f"data.root={root}: no such folder")

    def classes_of(folder: Path) -> dict[str, list[Path]]:
        found = {}
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
            files = sorted(f for f in sub.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            if files and not any(_readable(f) for f in files):
                raise DataError(f"data.root={root}: class folder {sub.name!r} has no readable image", hint="check the files or remove the folder")
            if not files:
                raise DataError(f"data.root={root}: class folder {sub.name!r} has no image file ({', '.join(IMAGE_SUFFIXES)})",
                                hint="add images or remove the folder")
            found[sub.name] = files
        if not found:
            raise DataError(f"data.root={root}: no class folders inside", hint="put the images of each class in a sub-folder named after it")
        return found

    if (base / "train").is_dir() and (base / "val").is_dir():
        split = {"train": classes_of(base / "train"), "val": classes_of(base / "val")}
        if set(split["train"]) != set(split["val"]):
            raise DataError(f"data.root={root}: train/ and val/ have different class folders")
        return split["train"], split
    return classes_of(base), None


class ImageFolder(LoaderData):
    """Your own images: a folder per class; resized, normalised and augmented from config."""

    task = "classification"
    Config = ImageFolderConfig

    def check(self, cfg: ImageFolderConfig) -> list[str]:
        return split_problems(cfg) + augment_problems(cfg, "classification")

    def facts(self, cfg: ImageFolderConfig) -> dict[str, Any]:
        classes, _ = scan_image_folder(cfg.root)
        return {"num_classes": len(classes), "num_outputs": len(classes), "in_channels": cfg.in_channels,
                "image_size": cfg.image_size, "in_features": cfg.in_channels * cfg.image_size**2, "label_names": list(classes)}

    def build(self, cfg: ImageFolderConfig) -> Any:
        from .images import image_folder_datamodule

        return image_folder_datamodule(cfg)


_ = Optional  # keeps the typing import for plugins that copy this file
