"""The torch side of the plugin: the wrapped Ultralytics ``DetectionModel``, the batch conversion, the loss,
NMS and the export wrapper. Imported only from the plugin's hooks (it imports torch and ultralytics).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

# Ultralytics resolves ``utils.ONLINE`` with DNS look-ups when it is first imported; offline mode skips
# them. Nothing this plugin calls downloads anything (no .pt names are ever passed to Ultralytics).
os.environ.setdefault("YOLO_OFFLINE", "1")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from ._catalog import detection_models, ultralytics_version  # noqa: E402

__all__ = ["YoloNet", "YoloExport", "build_net", "to_ultralytics_batch", "yolo_loss", "yolo_postprocess", "load_weights"]

log = logging.getLogger("lightplug_ultralytics")


class YoloNet(nn.Module):
    """An Ultralytics ``DetectionModel`` that takes any input size (padded right/bottom to a multiple of its
    largest stride, so boxes stay in input pixels).

    ``forward(x)`` returns what the ``DetectionModel`` returns: in training the raw head outputs (a dict with
    ``boxes`` (B x 4*reg_max x N DFL logits), ``scores`` (B x nc x N logits) and ``feats`` (the feature maps));
    in eval ``(y, raw)`` with ``y`` of shape ``B x (4 + nc) x N``: cx, cy, w, h in input pixels, sigmoid scores.
    """

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model: Any = model  # ultralytics.nn.tasks.DetectionModel
        self.weights_report: str | None = None
        self.max_stride = int(max(int(model.stride.max()), 32))
        self.input_hw: tuple[int, int] | None = None  # size of the last input before padding (for clipping)

    def forward(self, x: torch.Tensor) -> Any:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        self.input_hw = (h, w)
        ph, pw = (-h) % self.max_stride, (-w) % self.max_stride
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.model(x)


class YoloExport(nn.Module):
    """What ONNX/TorchScript export traces: ``forward(x)`` returns only ``y`` (``B x (4 + nc) x N``).

    Ultralytics' head caches its anchors by the feature map's shape, batch included: a trace at a new batch size
    computes them in the graph, a trace at the cached one holds them as constants, so two traces differ and
    ``torch.jit.trace``'s check fails. Here the head is ``dynamic`` while it is traced: every trace computes the
    anchors from its input, the same graph at every batch size.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        head = self.net.model.model[-1]
        dynamic = getattr(head, "dynamic", None)
        if dynamic is not None:
            head.dynamic = True
        try:
            out = self.net(x)
        finally:
            if dynamic is not None:
                head.dynamic = dynamic
        return out[0] if isinstance(out, (tuple, list)) else out


def _quiet_ultralytics() -> Any:
    """Ultralytics logs "Overriding model.yaml nc=80 with nc=3" and similar at INFO: keep them out of runs."""
    from ultralytics.utils import LOGGER

    class _Restore:
        def __enter__(self) -> None:
            self.level = LOGGER.level
            LOGGER.setLevel(max(self.level, logging.WARNING))

        def __exit__(self, *exc: object) -> None:
            LOGGER.setLevel(self.level)

    return _Restore()


def _keep_pillow_as_is() -> None:
    """Undo Ultralytics' patch of ``PIL.Image.open``.

    Importing Ultralytics replaces ``PIL.Image.open`` in every module of the process with a wrapper that, on a file
    Pillow cannot identify, runs ``check_requirements("pi-heif")``: it logs "requirement not found, attempting
    AutoUpdate" and, unless ``YOLO_OFFLINE`` is set, pip-installs a package. lightplug reads every image itself,
    so a corrupt file in a user's data must stay Pillow's own error (one line naming the file), never an install.
    """
    from PIL import Image
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is getattr(patches, "image_open", None):
        Image.open = original


def model_dict(name: str) -> dict[str, Any]:
    """The model dict Ultralytics builds ``name`` from: the YAML the catalog found, with the scale letter.

    Ultralytics' own ``yaml_model_load`` maps ``yolov8n.yaml`` to ``yolov8.yaml`` with a regex over the whole
    path string, so a folder such as ``/tmp/tmp.8xk..`` (a digit then n/s/m/l/x) loses a letter and the file is
    "not found". Reading the file ourselves and passing the dict keeps paths out of it.
    """
    found = detection_models().get(name)
    if found is None:
        raise ValueError(f"model.cfg={name}: no such detection model YAML in ultralytics {ultralytics_version()}")
    from ultralytics.nn.tasks import guess_model_scale
    from ultralytics.utils import YAML

    d: dict[str, Any] = dict(YAML.load(found))
    d["scale"] = guess_model_scale(f"{name}.yaml")
    d["yaml_file"] = f"{name}.yaml"
    return d


def build_net(cfg: Any) -> YoloNet:
    """Build ``DetectionModel(<cfg>.yaml, ch=in_channels, nc=num_classes)`` from the YAML inside the installed
    package, set the loss gains on ``model.args`` and load ``weights_file`` when given."""
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils import IterableSimpleNamespace

    _keep_pillow_as_is()
    with _quiet_ultralytics():
        model: Any = DetectionModel(model_dict(str(cfg.cfg)), ch=int(cfg.in_channels), nc=int(cfg.num_classes),
                                    verbose=False)
    # The criterion reads these gains (and E2ELoss reads ``epochs`` for its decay schedule).
    model.args = IterableSimpleNamespace(box=float(cfg.box), cls=float(cfg.cls), dfl=float(cfg.dfl), epochs=100)
    model.names = {i: str(i) for i in range(int(cfg.num_classes))}
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = float(cfg.bn_momentum)
    net = YoloNet(model)
    net.weights_report = load_weights(model, cfg.weights_file) if cfg.weights_file else None
    return net


def param_groups(net: nn.Module) -> list[dict[str, Any]]:
    """Weights of convolutions/linears (decayed) and BatchNorm weights plus every bias (not decayed)."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for module in net.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            (no_decay if name == "bias" or isinstance(module, nn.modules.batchnorm._BatchNorm) else decay).append(p)
    return [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]


def _state_dict_of(obj: Any) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):
        return obj.float().state_dict()
    if isinstance(obj, dict):
        for key in ("ema", "model", "state_dict"):  # Ultralytics checkpoints, Lightning checkpoints
            if obj.get(key) is not None:
                return _state_dict_of(obj[key])
        tensors = {k: v for k, v in obj.items() if torch.is_tensor(v)}
        if tensors:
            return tensors
    raise ValueError("no state dict or model found in it")


def load_weights(model: nn.Module, weights_file: str) -> str:
    """Copy every tensor of a local ``.pt`` whose name and shape match (never downloads).

    Accepts an Ultralytics checkpoint (``{"model": DetectionModel, ...}``, e.g. ``yolov8n.pt`` you downloaded
    yourself), a plain state dict, or a lightplug/Lightning checkpoint of this plugin (``net.model.`` prefix).
    Returns (and logs) e.g. ``"loaded 349/355 tensors from yolov8n.pt (6 skipped: shape differs)"``.
    """
    path = Path(weights_file).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.weights_file={weights_file}: no such file (this plugin never downloads weights)")
    # Ultralytics checkpoints pickle the whole model object: only load files you trust.
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    try:
        source = _state_dict_of(ckpt)
    except ValueError as exc:
        raise ValueError(f"model.weights_file={weights_file}: {exc}") from None
    own = model.state_dict()
    prefixes = ("", "model.", "net.", "net.model.", "model.model.")
    best: dict[str, torch.Tensor] = {}
    for prefix in prefixes:  # the source's names may carry a wrapper's prefix
        cand = {k[len(prefix):]: v for k, v in source.items() if k.startswith(prefix)}
        match = {k: v for k, v in cand.items() if k in own and v.shape == own[k].shape}
        if len(match) > len(best):
            best = match
    mismatched = sum(1 for k, v in own.items() if k not in best)
    model.load_state_dict(best, strict=False)
    report = f"loaded {len(best)}/{len(own)} tensors from {path.name}" + (f" ({mismatched} kept from init: missing or shape differs)" if mismatched else "")
    log.warning(report)
    return report


def to_ultralytics_batch(targets: list[dict[str, torch.Tensor]], size_hw: tuple[int, int] | torch.Tensor, device: torch.device | str = "cpu",
                         img: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """lightplug targets (one dict per image: ``boxes`` K x 4 xyxy input pixels, ``labels`` K in 0..nc-1) to
    Ultralytics' batch: ``batch_idx`` (M), ``cls`` (M x 1), ``bboxes`` (M x 4 normalised cx, cy, w, h).

    ``size_hw`` is the (height, width) the boxes are normalised by: the size of the image the network saw.
    """
    h, w = (float(v) for v in size_hw)
    idx, cls, boxes = [], [], []
    for i, t in enumerate(targets):
        b = torch.as_tensor(t["boxes"]).to(device=device, dtype=torch.float32).reshape(-1, 4)
        idx.append(torch.full((b.shape[0],), float(i), device=device))
        cls.append(torch.as_tensor(t["labels"]).to(device=device, dtype=torch.float32).reshape(-1))
        boxes.append(b)
    b = torch.cat(boxes) if boxes else torch.zeros(0, 4, device=device)
    scale = torch.tensor([w, h, w, h], device=device)
    xywh = torch.stack(((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 1) / scale
    out = {"batch_idx": torch.cat(idx) if idx else torch.zeros(0, device=device),
           "cls": (torch.cat(cls) if cls else torch.zeros(0, device=device)).view(-1, 1), "bboxes": xywh}
    if img is not None:
        out["img"] = img
    return out


def from_ultralytics_batch(batch: dict[str, torch.Tensor], size_hw: tuple[int, int], batch_size: int) -> list[dict[str, torch.Tensor]]:
    """The inverse of :func:`to_ultralytics_batch` (for tests and debugging)."""
    h, w = size_hw
    xywh = batch["bboxes"] * torch.tensor([w, h, w, h], dtype=batch["bboxes"].dtype, device=batch["bboxes"].device)
    xyxy = torch.cat((xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2), 1)
    out = []
    for i in range(batch_size):
        keep = batch["batch_idx"] == i
        out.append({"boxes": xyxy[keep], "labels": batch["cls"].view(-1)[keep].long()})
    return out


def _raw(outputs: Any) -> dict[str, Any]:
    return outputs[1] if isinstance(outputs, (tuple, list)) and len(outputs) == 2 and isinstance(outputs[1], dict) else outputs


def yolo_loss(net: Any, outputs: Any, targets: list[dict[str, torch.Tensor]], img: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Ultralytics' own loss (``model.loss(batch, preds)``) on the raw outputs, divided by the batch size.

    Ultralytics returns ``[box, cls, dfl] * batch_size`` (its trainer sums that and accumulates gradients to a
    nominal batch of 64, for SGD at lr 0.01). Divided by the batch size, each part is the batch mean that its
    ``loss_items`` report, so the loss does not grow with the batch size and Adam/AdamW at lr ~1e-3 work as
    for any other lightplug model.
    """
    model = net.model
    raw = _raw(outputs)
    if "one2many" in raw:  # end-to-end heads (yolov10, yolo26) train both branches
        first = raw["one2many"]
    else:
        first = raw
    feats = first["feats"]
    device = feats[0].device
    crit = getattr(model, "criterion", None)
    if crit is not None and getattr(getattr(crit, "one2many", crit), "device", device) != device:
        model.criterion = None  # built on another device: rebuild
    stride0 = float(model.stride[0])
    size = (feats[0].shape[-2] * stride0, feats[0].shape[-1] * stride0)  # the padded input size
    batch = to_ultralytics_batch(targets, size, device, img)
    total, _ = model.loss(batch, raw)
    bs = feats[0].shape[0]
    if total.ndim == 0 or total.numel() != 3:
        raise RuntimeError(f"ultralytics {ultralytics_version()} returned a loss of shape {tuple(total.shape)}; this plugin expects [box, cls, dfl]")
    crit = model.criterion
    names = getattr(getattr(crit, "one2many", crit), "loss_names", ("box_loss", "cls_loss", "dfl_loss"))
    parts = total / bs
    return {str(n).removesuffix("_loss"): parts[i] for i, n in enumerate(names)}


@torch.no_grad()
def decode(net: Any, outputs: Any) -> torch.Tensor:
    """``y`` (B x (4 + nc) x N) from eval outputs ``(y, raw)``, or decoded from training-mode raw outputs."""
    if isinstance(outputs, (tuple, list)) and torch.is_tensor(outputs[0]):
        return outputs[0]
    if torch.is_tensor(outputs):
        return outputs
    raw = outputs["one2many"] if "one2many" in outputs else outputs
    return net.model.model[-1]._inference(raw)


@torch.no_grad()
def yolo_postprocess(net: Any, outputs: Any, conf: float, iou: float, max_det: int, size_hw: tuple[int, int] | None) -> list[dict[str, torch.Tensor]]:
    """Ultralytics' NMS (class-wise, best class per box) -> one ``{"boxes", "scores", "labels"}`` per image."""
    from ultralytics.utils.nms import non_max_suppression

    y = decode(net, outputs)
    nc = y.shape[1] - 4
    dets = non_max_suppression(y.float(), conf_thres=float(conf), iou_thres=float(iou), max_det=int(max_det), nc=nc)
    out = []
    for d in dets:
        boxes = d[:, :4]
        if size_hw is not None:  # boxes reaching into the padding
            boxes = torch.stack((boxes[:, 0].clamp(0, size_hw[1]), boxes[:, 1].clamp(0, size_hw[0]),
                                 boxes[:, 2].clamp(0, size_hw[1]), boxes[:, 3].clamp(0, size_hw[0])), 1)
        out.append({"boxes": boxes.float(), "scores": d[:, 4].float(), "labels": d[:, 5].long()})
    return out
