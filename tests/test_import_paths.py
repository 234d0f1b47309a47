"""``model=pkg.mod:Name`` for any class or builder of the ecosystem, in-process: enums as choices, classes and
functions as import paths (``code``), what no config can hold kept **fixed**, builders' ``**kwargs`` read from the
class they return, torchvision weights only from the local cache, ``weights_file``, the outputs real models return
(auxiliary logits, ``{"out", "aux"}``, ``.logits``), timm classes, and ``check_plugin`` of an import path."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional, Union

import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from torch import nn  # noqa: E402

from lightplug import CheckpointError, PluginError  # noqa: E402
from lightplug.callables import read_callable  # noqa: E402
from lightplug.schema import check_values  # noqa: E402


class Mode(enum.Enum):
    FAST = 1
    SLOW = 2


class Net(nn.Module):
    """A model with every kind of parameter a third-party signature has."""

    def __init__(self, mode: Mode = Mode.FAST, pick: Optional[Mode] = None, act: type[nn.Module] = nn.ReLU,  # noqa: UP007
                 norm: Callable[..., nn.Module] = functools.partial(nn.BatchNorm2d, eps=1e-3), widths: list[list[int]] = [[1]],  # noqa: B006
                 size: Union[int, tuple[int, int]] = 4, depths: Union[int, tuple[int, ...]] = (1, 2), device: Any = None,  # noqa: UP007
                 hidden=8, in_chans: int = 1, num_classes: int = 10) -> None:  # noqa: ANN001
        super().__init__()
        self.mode, self.pick, self.act, self.norm, self.size, self.depths = mode, pick, act, norm, size, depths
        self.fc = nn.Linear(in_chans, num_classes)

    def forward(self, x: Any) -> Any:
        return self.fc(x.flatten(1)[:, : self.fc.in_features])


def test_signature_types_become_choices_import_paths_and_fixed_fields() -> None:
    spec = read_callable(Net, "net")
    s = spec.schema
    assert (s["mode"].type, s["mode"].choices, s["mode"].default) == ("str", ["FAST", "SLOW"], "FAST")
    assert s["pick"].optional and s["pick"].default is None and s["pick"].choices == ["FAST", "SLOW"]
    assert (s["act"].type, s["act"].default) == ("code", "torch.nn.modules.activation:ReLU")
    assert s["norm"].fixed and s["norm"].default.startswith("functools.partial(<class 'torch.nn.modules.batchnorm.BatchNorm2d'>")
    assert s["widths"].fixed and s["widths"].default == "[[1]]" and s["device"].fixed and s["device"].default == "None"
    assert (s["size"].type, s["size"].default) == ("int", 4)  # int | tuple[int, int]: the scalar form
    assert (s["depths"].type, s["depths"].default) == ("list[int]", [1, 2])  # a tuple default: the list form
    assert (s["hidden"].type, s["hidden"].default) == ("int", 8)  # no annotation: the default's type
    assert s["in_chans"].bind == "in_channels" and s["num_classes"].bind == "num_classes"

    net = spec.call({**s.defaults(), "mode": "SLOW", "pick": "FAST", "act": "torch.nn.GELU", "depths": [3, 4]})
    assert net.mode is Mode.SLOW and net.pick is Mode.FAST and net.act is nn.GELU and net.depths == (3, 4)
    assert isinstance(net.norm, functools.partial) and net.norm.keywords == {"eps": 1e-3}  # the callable's own default
    assert spec.call(s.defaults()).act is nn.ReLU


def test_json_schema_marks_fixed_fields_read_only_with_the_defaults_repr() -> None:
    props = read_callable(Net, "net").schema.json_schema("net")["properties"]
    assert props["norm"]["readOnly"] is True and props["norm"]["x-fixed"] is True and "BatchNorm2d" in props["norm"]["default"]
    assert props["act"]["x-import-path"] is True and props["act"]["type"] == "string" and "readOnly" not in props["act"]
    assert props["mode"]["enum"] == ["FAST", "SLOW"]


def test_fixed_fields_refuse_another_value_and_import_paths_are_checked_before_the_build() -> None:
    spec = read_callable(Net, "net")
    bad = check_values(spec.schema, {"norm": "torch.nn:LayerNorm", "act": "not a path", "mode": "FASTER"}, "model", "net", partial=True)
    assert len(bad) == 3
    assert bad[0].startswith("model.mode=FASTER: not one of FAST, SLOW (did you mean FAST?)")
    assert bad[1].startswith("model.act=not a path: expected an import path")
    assert bad[2].startswith("model.norm=torch.nn:LayerNorm: fixed at functools.partial(")
    (line,) = spec.problems({"act": "lightplug_no_such_module_xyz.layers:Act"})
    assert line.startswith("model.act=lightplug_no_such_module_xyz.layers:Act: cannot import it (ModuleNotFoundError: No module named "
                           "'lightplug_no_such_module_xyz') (give pkg.module:Name or pkg.module.Name")
    assert "(module 'torch.nn' has no 'NoSuchLayer')" in spec.problems({"act": "torch.nn:NoSuchLayer"})[0]


def test_a_type_beyond_a_config_without_a_default_is_a_plugin_error() -> None:
    class Needs(nn.Module):
        def __init__(self, backbone: nn.Module, num_classes: int = 3) -> None:
            super().__init__()

    with pytest.raises(PluginError, match="'backbone'.*it has no default"):
        read_callable(Needs, "needs")


def test_builder_kwargs_are_read_from_the_class_it_returns() -> None:
    from torchvision import models

    s = read_callable(models.resnet18, "resnet18").schema
    assert s.names()[:2] == ["weights", "progress"]  # the builder's own parameters first
    assert s["block"].fixed and s["block"].default == "torchvision.models.resnet:BasicBlock" and s["block"].help == "set by resnet18"
    assert s["layers"].fixed and s["layers"].default == "[2, 2, 2, 2]"
    assert s["num_classes"].bind == "num_classes" and s["zero_init_residual"].default is False
    assert (s["norm_layer"].type, s["norm_layer"].default) == ("code", None)
    # a key the builder passes to the class itself is fixed at the builder's value; one it only defaults is a field
    assert read_callable(models.swin_t, "swin_t").schema["stochastic_depth_prob"].fixed
    convnext = read_callable(models.convnext_tiny, "convnext_tiny").schema["stochastic_depth_prob"]
    assert not convnext.fixed and convnext.default == 0.1  # the builder's default, not the class's 0.0
    wrong = check_values(s, {"num_clases": 3}, "model", "torchvision.models:resnet18", partial=True)
    assert wrong == ["model.num_clases: unknown key (did you mean model.num_classes?)"]
    net = read_callable(models.resnet18, "resnet18").call({**s.defaults(), "num_classes": 3, "zero_init_residual": True})
    assert net.fc.out_features == 3 and not net.layer1[0].bn2.weight.any()


def test_torchvision_weights_are_used_only_from_the_local_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision import models

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = read_callable(models.resnet18, "resnet18")
    assert spec.schema["weights"].default is None  # nothing is downloaded by default
    problems = spec.problems({"weights": "IMAGENET1K_V1"})
    assert problems == [f"model.weights=IMAGENET1K_V1: its file resnet18-f37072fd.pth is not in the torch hub cache ({tmp_path / 'hub' / 'checkpoints'}); "
                        "lightplug downloads nothing: put the file there, or give model.weights_file=PATH"]
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth").write_bytes(b"")
    assert spec.problems({"weights": "IMAGENET1K_V1"}) == []
    # segmentation and detection builders default weights_backbone to ImageNet weights: here it is None
    seg = read_callable(models.segmentation.lraspp_mobilenet_v3_large, "lraspp").schema["weights_backbone"]
    assert seg.default is None and "IMAGENET1K_V1 is not downloaded" in seg.help


def test_weights_file_loads_a_state_dict_and_leaves_a_head_of_another_size_as_built(tmp_path: Path) -> None:
    import lightplug

    torch.manual_seed(0)
    saved = torchvision.models.resnet18(num_classes=10)
    torch.save(saved.state_dict(), tmp_path / "r18.pt")
    net = lightplug.build_model("torchvision.models:resnet18", num_classes=3, weights_file=str(tmp_path / "r18.pt"))
    assert torch.equal(net.conv1.weight, saved.conv1.weight) and torch.equal(net.layer4[1].bn2.running_var, saved.layer4[1].bn2.running_var)
    assert net.fc.weight.shape == (3, 512)
    torch.save(torchvision.models.resnet34(num_classes=3).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(CheckpointError, match=r"^model.weights_file=.*r34.pt does not fit the model: 0 tensors missing, \d+ unexpected"):
        lightplug.build_model("torchvision.models:resnet18", num_classes=3, weights_file=str(tmp_path / "r34.pt"))


def _module(net: nn.Module, task: str) -> Any:
    from lightplug.module import PluginModule

    return PluginModule(net, object(), {"facts": {"num_classes": 3}, "loss": {}}, {"task": task})


def test_googlenet_trains_on_its_auxiliary_logits_weighted_0_3_and_validates_on_the_main_output() -> None:
    import torch.nn.functional as F

    import lightplug

    torch.manual_seed(0)
    net = lightplug.build_model("torchvision.models:googlenet", num_classes=3, init_weights=False, dropout=0.0, dropout_aux=0.0)
    module = _module(net, "classification").train()
    x, y = torch.randn(2, 3, 32, 32), torch.tensor([0, 2])
    out = net(x)
    assert type(out).__name__ == "GoogLeNetOutputs"
    _, loss, parts = module.compute({"input": x, "target": y})
    want = F.cross_entropy(out.logits, y) + 0.3 * (F.cross_entropy(out.aux_logits2, y) + F.cross_entropy(out.aux_logits1, y))
    assert torch.allclose(loss, want, atol=1e-5) and set(parts) == {"main", "aux_logits2", "aux_logits1"}
    module.eval()
    preds, loss, parts = module.compute({"input": x, "target": y})
    assert preds.shape == (2, 3) and parts == {} and torch.allclose(loss, F.cross_entropy(net(x), y))


def test_segmentation_aux_output_is_weighted_0_5_and_export_sees_out_only() -> None:
    import torch.nn.functional as F

    import lightplug
    from lightplug.export.exporters import prepare

    torch.manual_seed(0)
    net = lightplug.build_model("torchvision.models.segmentation:deeplabv3_mobilenet_v3_large", num_classes=3, aux_loss=True)
    module = _module(net, "segmentation").train()
    x, y = torch.randn(2, 3, 32, 32), torch.randint(0, 3, (2, 32, 32))
    torch.manual_seed(1)  # the same dropout masks in both forwards
    preds, loss, parts = module.compute({"input": x, "target": y})
    torch.manual_seed(1)
    out = net(x)
    assert preds.shape == (2, 3, 32, 32) and set(parts) == {"main", "aux"}
    assert torch.allclose(loss, F.cross_entropy(out["out"], y) + 0.5 * F.cross_entropy(out["aux"], y), atol=1e-5)
    exported = prepare(net.eval(), x)
    assert exported is not net and torch.equal(exported(x), net(x)["out"])


def test_an_object_with_logits_is_the_prediction_everywhere() -> None:
    from dataclasses import dataclass

    from lightplug.export.exporters import prepare
    from lightplug.testing.model_checks import predictions

    @dataclass
    class Output:
        logits: Any
        hidden: Any = None

    class HFLike(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: Any) -> Output:
            return Output(self.fc(x), x)

    net, x = HFLike().eval(), torch.randn(2, 4)
    assert torch.equal(predictions(net(x)), net.fc(x))
    _, loss, _ = _module(net, "classification").compute({"input": x, "target": torch.tensor([0, 1])})
    assert loss.ndim == 0
    assert torch.equal(prepare(net, x)(x), net.fc(x))


TIMM_CLASSES = {
    "timm.models:ResNet": {"block": "timm.models.resnet:BasicBlock", "layers": [1, 1, 1, 1]},
    "timm.models:VisionTransformer": {"patch_size": 8, "embed_dim": 32, "depth": 1, "num_heads": 2},
    "timm.models:ConvNeXt": {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64]},
    "timm.models:DenseNet": {"growth_rate": 8, "block_config": [1, 1, 1, 1]},
    "timm.models:MlpMixer": {"patch_size": 8, "embed_dim": 32, "num_blocks": 1},
}


@pytest.mark.parametrize("path", list(TIMM_CLASSES))
def test_timm_class_by_import_path_builds_with_the_data_facts_bound(path: str, tmp_path: Path) -> None:
    """Not through the timm plugin: the class itself, ``num_classes``, ``in_chans`` and ``img_size`` bound."""
    pytest.importorskip("timm")
    from PIL import Image

    from test_torchvision_zoo import compose_run, one_step

    for c in range(3):
        (tmp_path / f"c{c}").mkdir()
        Image.new("L", (8, 8), 60 * c).save(tmp_path / f"c{c}" / "0.png")
    args = [f"model={path}", "data=image_folder", f"data.root={tmp_path}", "data.image_size=32", "data.in_channels=1"]
    run = compose_run(args + [f"model.{k}={v}".replace(" ", "") for k, v in TIMM_CLASSES[path].items()])
    model = run.cfg["model"]
    assert model["num_classes"] == 3 and model["in_chans"] == 1 and model.get("img_size", 32) == 32
    preds, loss = one_step(run, 32, channels=1)
    assert preds.shape == (2, 3) and loss > 0


def test_check_plugin_passes_for_a_torchvision_builder() -> None:
    from lightplug.testing import check_plugin

    report = check_plugin("torchvision.models:mobilenet_v3_small")
    assert report.ok, report
    forward = report["forward"].reason
    assert forward.startswith("input (4, 3, 8, 8) -> output (4, 1000)")  # 3 channels from its first convolution


def test_check_plugin_skips_the_export_of_a_detector_lightplug_cannot_export() -> None:
    from lightplug.testing import check_plugin
    from lightplug.testing.report import SKIP

    report = check_plugin("torchvision.models.detection:ssdlite320_mobilenet_v3_large", overrides={"num_classes": 3})
    assert report.ok, report
    assert report["onnx"].status == SKIP and "SSD cannot be exported by lightplug" in report["onnx"].reason
