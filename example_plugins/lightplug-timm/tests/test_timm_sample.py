"""One architecture of every timm family through the timm plugin, as `lightplug train` and `lightplug export` use it.

Each architecture gets the config `lightplug train model=timm model.arch=NAME data=synthetic` would run (composed and
finalized in this process: the data's classes and channels bound, the images resized to a size the architecture
takes), then lightplug's own checks (`check_plugin`): it builds, runs a forward pass, takes a training step (loss,
backward, an optimizer step that changes the weights), and exports to ONNX through `lightplug export`'s code path
(dynamic batch, onnx checker, onnxruntime against eager PyTorch at batch 1 and 7). Nothing is downloaded.

The sample rule (no architecture is chosen by hand):
- a family is the timm module that defines the architecture (``timm.models.model_entrypoint(name).__module__``;
  98 families in timm 1.0.31);
- in each family, its smallest variant by timm's naming (:func:`size_key`): timm's own test model (``test_*``) when
  the family has one, else the smallest size word in the name (atto < femto < ... < enormous; a name without one
  counts as base), then the smallest numbers in it (resnet10t before resnet18), then the name;
- kept when it has at most ``MAX_PARAMS`` parameters (counted on the meta device), for time: 71 of the 98 in timm
  1.0.31 (the others: 25-30M-parameter tiny transformers such as swin_s3_tiny_224, and the large-only families,
  beit, vgg, nasnet, ...). The sample is kept in pytest's cache (about 25 s to compute, by timm version).

Measured (CPU time, one thread, timm 1.0.31): about 170 s for the 71; the ONNX export is two thirds of it.
:data:`NAMED` runs the same checks on the 13 architectures that failed `check-plugin` before the plugin knew input sizes
and arguments (with 10 classes, as on digits).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest

#: The largest architecture the sample keeps, in parameters.
MAX_PARAMS = 25_000_000
#: timm's size words, smallest first (single letters as in pit_s, tnt_s, fasternet_s).
SIZE_WORDS = ("atto", "femto", "pico", "nano", "xxxs", "xxs", "tiny", "ti", "xs", "mini", "small", "s", "little", "medium", "m",
              "base", "b", "large", "l", "xlarge", "huge", "giant", "gigantic", "enormous")
#: The checks each architecture goes through (TorchScript and the state_dict round trip are left out for time).
CHECKS = ("schema", "build", "build:advanced", "forward", "backward", "onnx")
#: Architectures that cannot pass a check, for a reason of their own: check -> the words its failure must contain.
INHERENT = {
    # (RGB only: the run converts synthetic's images to 3 channels) adaptive_avg_pool2d on a tensor whose size the
    # legacy exporter lost with the dynamic batch axis (with a fixed batch: "output size that are not factor of input
    # size"); torch's exporter, not the plugin, refuses it
    "csatv2": ("onnx", "adaptive_avg_pool2d, input size not accessible"),
    # halo attention unfolds its blocks with Tensor.unfold on sizes the legacy exporter cannot see (dynamic batch)
    "halonet_h1": ("onnx", "Unfold, input size not accessible"),
    "halonet26t": ("onnx", "Unfold, input size not accessible"),
}
#: The 13 architectures that failed `check-plugin` on 8x8 data before: 9 for their input size, 4 for the advanced
#: preset's drop_path_rate, which they do not take.
NAMED = ("vit_tiny_patch16_224", "deit_tiny_patch16_224", "swin_tiny_patch4_window7_224", "coat_lite_tiny", "convnext_atto",
         "edgenext_xx_small", "levit_128s", "efficientformer_l1", "halonet26t", "ghostnet_100", "densenet121", "repvit_m0_9",
         "efficientvit_m0")


def size_key(name: str) -> tuple[int, tuple[int, ...], str]:
    """Sorts a family's architectures smallest first by their names: ``test_*``, then the size word, then the numbers.

    Example:
        >>> sorted(["resnet50", "resnet18", "test_resnet"], key=size_key)
        ['test_resnet', 'resnet18', 'resnet50']
    """
    words = re.split(r"[_.]", name)
    if words[0] == "test":
        return (-1, (), name)
    rank = min((SIZE_WORDS.index(w) for w in words if w in SIZE_WORDS), default=SIZE_WORDS.index("base"))
    return (rank, tuple(int(n) for n in re.findall(r"\d+", name)), name)


def family_picks() -> dict[str, str]:
    """Family -> its smallest variant by :func:`size_key`."""
    import timm
    from timm.models import model_entrypoint

    families: dict[str, list[str]] = {}
    for name in timm.list_models():
        families.setdefault(model_entrypoint(name).__module__.rsplit(".", 1)[-1], []).append(name)
    return {family: min(names, key=size_key) for family, names in sorted(families.items())}


def parameter_count(arch: str) -> int:
    """Parameters of ``arch`` built on the meta device (nothing allocated)."""
    import warnings

    import timm
    import torch

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        return sum(p.numel() for p in timm.create_model(arch, pretrained=False, num_classes=4).parameters())


def sample(cache: Any = None) -> list[str]:
    """The sample: each family's smallest variant with at most :data:`MAX_PARAMS` parameters, by family.

    Kept in pytest's cache by timm version and this file's text, so that collecting the tests needs neither timm (5 s
    to import) nor the parameter counts (20 s) once they were computed.
    """
    from importlib import metadata

    key = f"lightplug-timm/sample/{metadata.version('timm')}/{hashlib.sha1(Path(__file__).read_bytes()).hexdigest()[:12]}"
    cached = cache.get(key, None) if cache is not None else None
    if isinstance(cached, list) and all(isinstance(a, str) for a in cached):
        return cached
    archs = [arch for arch in family_picks().values() if parameter_count(arch) <= MAX_PARAMS]
    if cache is not None:
        cache.set(key, archs)
    return archs


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Any:
    """One torch thread, as the suite's subprocesses use (two test processes share two cores); restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "sampled_arch" in metafunc.fixturenames:
        archs = sample(getattr(metafunc.config, "cache", None))
        metafunc.parametrize("sampled_arch", archs, ids=archs)


def run_values(*overrides: str) -> dict[str, Any]:
    """The model's values `lightplug train model=timm OVERRIDES` would build with (composed and finalized here)."""
    from hydra import compose, initialize_config_dir

    from lightplug.cli.train import _choices, register_configs
    from lightplug.config.finalize import finalize, plain_choices
    from lightplug.config.paths import conf_dir
    from lightplug.registry import get_registry

    args = ["model=timm", *overrides]
    register_configs(get_registry(), _choices(args))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=args, return_hydra_config=True)
    run = finalize(cfg, plain_choices(cfg.hydra.runtime.choices), args)
    assert run.cfg["model"]["image_size"] == run.cfg["data"]["image_size"]
    return {k: v for k, v in run.cfg["model"].items() if not k.startswith("_")}


def check_architecture(arch: str, values: dict[str, Any]) -> Any:
    """Run :data:`CHECKS` on ``arch`` with the values the run changed (the architecture and what the data binds), as
    `check-plugin timm arch=NAME ...` would; an architecture of :data:`INHERENT` must fail as listed there."""
    import torch

    from lightplug.registry import get_registry
    from lightplug.testing import check_plugin

    torch.manual_seed(0)  # the same initial weights on every run (the untrained inception_v3's logits reach 1e7, where the
    # export tolerance, 1e-3 relative, is met by some initialisations and missed by others)
    defaults = get_registry().get("model", "timm").schema.defaults()
    report = check_plugin("timm", "model", {k: v for k, v in values.items() if v != defaults[k]}, checks=CHECKS)
    failed = {r.name: r.reason for r in report.failures}
    if arch in INHERENT:
        check, words = INHERENT[arch]
        assert set(failed) == {check} and words in failed[check], f"{arch} is listed as failing {check} with {words!r}, but: {failed or 'it passed'}"
        assert "a limit of the model's code, not of lightplug" in failed[check]
        return report
    report.raise_for_failures()
    assert report["forward"].reason.endswith(f"= (batch, num_classes={values['num_classes']})")
    return report


@pytest.mark.slow
def test_each_family_builds_trains_a_step_and_exports_to_onnx(sampled_arch: str) -> None:
    values = run_values(f"model.arch={sampled_arch}", "data=synthetic")
    assert values["num_classes"] == 4 and values["in_channels"] == (3 if sampled_arch == "csatv2" else 1)  # bound to the data
    check_architecture(sampled_arch, values)


@pytest.mark.slow
@pytest.mark.parametrize("arch", NAMED)
def test_architectures_that_needed_their_own_size_or_lacked_drop_path_now_pass(arch: str) -> None:
    values = run_values(f"model.arch={arch}", "data=synthetic", "data.num_classes=10")
    assert values["num_classes"] == 10
    report = check_architecture(arch, values)
    if arch in ("ghostnet_100", "densenet121", "repvit_m0_9", "efficientvit_m0"):  # no stochastic depth in them
        assert f"+preset=advanced: model.drop_path_rate=0.05 left out ({arch} takes no drop_path_rate" in report["build:advanced"].reason
