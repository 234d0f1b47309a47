"""The plugin contract: ``Param`` field metadata and the ``ModelPlugin``/``DataPlugin``/``CallbackPlugin`` bases.

This module imports neither torch nor lightning, so a plugin package can import it at module level
without slowing down ``lightplug models``.

Tier 0 needs none of this: any ``nn.Module`` whose ``__init__`` parameters are typed and defaulted is a
plugin (see :func:`lightplug.signatures.schema_from_signature`). Tier 1 subclasses :class:`ModelPlugin`::

    @dataclass
    class ResNetConfig:
        depth: Literal[10, 18] = 18
        width: Annotated[int, Param(ge=8, le=512, help="channels of the first stage")] = 64

    class TinyResNet(ModelPlugin):
        \"\"\"A ResNet for small images.\"\"\"
        task = "classification"
        Config = ResNetConfig
        presets = {"easy": {"width": 32}}

        def build(self, cfg: ResNetConfig) -> nn.Module:
            return ResNet(cfg.depth, cfg.width)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, NewType

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["Param", "ImportPath", "ModelPlugin", "DataPlugin", "CallbackPlugin", "DetectionSettings", "TASKS", "DATA_FACTS", "FACT_ALIASES",
           "RAW_OUTPUT_FORMATS"]

#: Tasks the core knows: each has a default loss, metrics, monitored metric and output check.
TASKS = ("classification", "regression", "segmentation", "detection")

#: Model fields with these names are bound to the selected data module's facts unless set explicitly.
DATA_FACTS = ("num_classes", "in_channels", "in_features", "image_size", "num_outputs")

#: Other spellings of the data facts in the ecosystem (timm's ``in_chans`` and ``img_size``): bound the same way.
FACT_ALIASES = {"in_chans": "in_channels", "img_size": "image_size"}

#: The type of a field whose value is an import path (``pkg.mod:Name`` or ``pkg.mod.Name``) to a class or a
#: function, e.g. a ``norm_layer``: the core imports it when the model is built, because the user typed it.
ImportPath = NewType("ImportPath", str)


#: Raw output layouts the core can post-process without the plugin (``predict model=FILE.onnx`` runs without
#: torch). ``"yolo"``: one ``B x (4 + num_classes) x N`` tensor, rows ``cx, cy, w, h`` in input pixels then one
#: score in [0, 1] per class; boxes are kept above ``conf``, then class-wise NMS at ``iou``, at most ``max_det``.
RAW_OUTPUT_FORMATS = ("yolo",)


@dataclass(frozen=True)
class DetectionSettings:
    """What turns a detector's raw outputs into boxes: the ``detection`` section of the run config.

    Passed to :meth:`ModelPlugin.postprocess` of detection plugins as ``settings``.

    Args:
        conf: keep boxes scoring at least this (validation uses a low value so that mAP sees the whole
            precision-recall curve; ``lightplug predict`` defaults to 0.25).
        iou: boxes of one class overlapping more than this are suppressed (NMS).
        max_det: at most this many boxes per image, highest scores first.
    """

    conf: float = 0.001
    iou: float = 0.6
    max_det: int = 100


@dataclass(frozen=True)
class Param:
    """Constraints and help for one config field, attached with ``Annotated[type, Param(...)]``.

    Args:
        ge, gt, le, lt: inclusive/exclusive bounds for numbers (and for every item of a list).
        choices: the allowed values (``Literal[...]`` gives the same).
        min_items, max_items: how many items a list field takes (``min_items=2, max_items=2``: exactly two).
        finite: ``False`` lets a float field take ``inf`` and ``-inf`` (``None``: only when its default is infinite).
        help: one line shown by ``lightplug models show``, in error messages and in the web form.
        group: a heading to group fields under (default: ``"model"`` / ``"data"``).
        advanced: hide behind an "advanced" toggle in forms.
        structural: changes the shape of the weights (``None``: guessed from the type, ints and
            choices are structural, floats and bools are not). Used to decide whether weights can be
            loaded into a model built with another config.

    A field without bounds gets default ones from its name (sizes at least 1, counts at least 0,
    probabilities in [0, 1]; see :mod:`lightplug.field_rules`); any bound or ``choices`` given here turns
    them off for that field.

    Example:
        >>> Param(ge=8, le=512, help="channels of the first stage")  # doctest: +NORMALIZE_WHITESPACE
        Param(ge=8, gt=None, le=512, lt=None, choices=None, help='channels of the first stage', group=None, advanced=False,
              structural=None, min_items=None, max_items=None, finite=None)
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple[Any, ...] | None = None
    help: str = ""
    group: str | None = None
    advanced: bool = False
    structural: bool | None = None
    min_items: int | None = None
    max_items: int | None = None
    finite: bool | None = None

    def __post_init__(self) -> None:
        if self.choices is not None and not isinstance(self.choices, tuple):
            object.__setattr__(self, "choices", tuple(self.choices))


class _Plugin:
    """What every kind of plugin shares: a typed ``Config``, a description, and presets."""

    #: A dataclass whose fields are the plugin's settings; ``None`` means no settings.
    Config: ClassVar[type | None] = None
    #: Named partial configs, e.g. ``{"easy": {"width": 32}}``; ``+preset=easy`` applies them.
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    #: Defaults to the first line of the class docstring.
    description: ClassVar[str | None] = None

    def __init__(self, cfg: Any = None) -> None:
        self.cfg = cfg


class ModelPlugin(_Plugin):
    """Base class of tier-1 model plugins: a typed config, presets and optional hooks.

    Only :meth:`build` is required. Every other hook has a default in the core; override one to
    change that step. The instance is created with the resolved config as ``self.cfg``.

    What the built module's forward may return (the core handles each):

    - predictions: the task's loss (or :meth:`loss`) is computed from them;
    - ``(predictions, aux_loss)`` with a scalar ``aux_loss``: the task loss is added to it
      (logged as ``train/loss_aux``); with ``takes_targets = True`` it is the whole loss instead;
    - a dict of scalar losses (with ``takes_targets``): their sum is the loss, each logged as ``train/loss_<name>``.

    Batches are dicts: ``input`` (a tensor), ``target`` (a tensor, or a list of per-image dicts for
    detection) and ``index`` (the sample's position in its split).

    Detection (``task = "detection"``, see ``docs/detection.md``): ``target`` is a list with one dict per
    image, ``boxes`` (``K x 4`` float, ``x1, y1, x2, y2`` in pixels of the input tensor) and ``labels``
    (``K`` int64 in ``[0, num_classes)``, no background class). The plugin gives the loss (:meth:`loss`
    returning a scalar or a dict of named scalars, or ``takes_targets`` with a dict of losses) and
    :meth:`postprocess` (raw outputs -> one ``{"boxes", "scores", "labels"}`` dict per image).
    """

    #: One of :data:`TASKS`.
    task: ClassVar[str] = "classification"
    #: Set to ``True`` when :meth:`training_step` steps its own optimizers (manual optimisation).
    manual_optimization: ClassVar[bool] = False
    #: Set to ``True`` when the module's forward takes the targets too (``net(input, target)``) and then
    #: returns ``(predictions, loss)`` or a dict of losses, as torchvision's detectors do in training.
    takes_targets: ClassVar[bool] = False
    #: How the exported module's single output is laid out, when it is one of :data:`RAW_OUTPUT_FORMATS`:
    #: ``lightplug predict model=FILE.onnx`` then post-processes it without torch (detection).
    raw_output_format: ClassVar[str | None] = None
    #: Metrics this plugin logs itself besides the core's (names or ``fnmatch`` patterns, e.g. ``("val/loss_box",
    #: "val/loss_*")``), so that ``monitor=`` may name them; checked before a run starts.
    logged_metrics: ClassVar[tuple[str, ...]] = ()

    def build(self, cfg: Any) -> nn.Module:
        """Return the ``nn.Module`` for this config."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(cfg)")

    def check(self, cfg: Any) -> list[str]:
        """Extra validation after the schema's rules passed (cross-field rules, names from a library).

        Return one line per problem, each naming the key, e.g. ``"model.arch=resnt18: unknown
        architecture (did you mean resnet18?)"``; the core reports them all with exit code 2.
        """
        return []

    def data_needs(self, cfg: Any) -> dict[str, Any]:
        """Data settings this config needs, e.g. ``{"image_size": 224}`` for an architecture that does not run on the
        data's image size (``cfg`` has the data facts bound). The core sets each on the data when the data has that
        setting and the user did not set it (resizing the images), notes it, and binds the facts again; whatever
        still does not fit is for :meth:`check` to refuse. Default: nothing."""
        return {}

    # ---- optional hooks; the core calls them only when a subclass overrides them ----
    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor | dict[str, torch.Tensor]:
        """Loss of a batch from the model's outputs; default: the task's loss (cross-entropy, MSE, ...).

        May return a dict of named scalar losses: their sum is minimised and each is logged as
        ``train/loss_<name>`` (and ``val/loss_<name>``). Called in training and validation.
        """
        raise NotImplementedError

    def training_step(self, module: Any, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        """A custom step. Return the loss, or ``None`` when the plugin stepped its optimizers itself."""
        raise NotImplementedError

    def configure_optimizers(self, model: nn.Module, optimizer_cfg: dict[str, Any]) -> Any:
        """Optimizers (and schedulers) in any form Lightning accepts; default: from the config."""
        raise NotImplementedError

    def param_groups(self, model: nn.Module, optimizer_cfg: dict[str, Any]) -> list[dict[str, Any]]:
        """Parameter groups for the optimizer from config (e.g. no weight decay on norms)."""
        raise NotImplementedError

    def example_input(self, cfg: Any) -> torch.Tensor:
        """An input batch for checks and export; default: built from the data facts."""
        raise NotImplementedError

    def postprocess(self, outputs: Any, batch: dict[str, Any] | None = None, settings: DetectionSettings | None = None) -> Any:
        """Turn raw outputs into predictions, for validation metrics and ``predict``.

        Detection plugins must override it: return one dict per image with ``boxes`` (``N x 4`` float,
        ``x1, y1, x2, y2`` in input pixels), ``scores`` (``N``) and ``labels`` (``N`` int64), keeping boxes
        scoring at least ``settings.conf``, suppressing overlaps above ``settings.iou`` and keeping at most
        ``settings.max_det``. ``batch`` is ``None`` in ``predict``; ``settings`` is ``None`` for other tasks.
        """
        raise NotImplementedError

    def export_module(self, net: nn.Module) -> nn.Module:
        """The module ONNX and TorchScript export trace; default: ``net``. Its forward takes the input tensor
        and returns one tensor (or a tuple of tensors): return a wrapper when the model's eval outputs are
        not that (e.g. a detector returning raw head outputs and feature maps)."""
        return net

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this plugin class provides its own ``hook``."""
        return getattr(cls, hook, None) is not getattr(ModelPlugin, hook, None)


class DataPlugin(_Plugin):
    """Base class of data plugins (entry-point group ``lightplug.datamodules``).

    A data plugin's module must stay light (no torch at import): :meth:`build` imports what it needs.
    """

    #: The task(s) this data serves; a model of another task is refused at validation.
    task: ClassVar[str] = "classification"

    def facts(self, cfg: Any) -> dict[str, Any]:
        """Facts the model binds to (``num_classes``, ``in_channels``, ``in_features``, ``image_size``,
        ``num_outputs``, ``label_names``), computed cheaply from the config (no tensors built).
        Data whose task is a setting also returns ``task``."""
        return {}

    def build(self, cfg: Any) -> Any:
        """Return a ``LightningDataModule`` whose loaders yield dict batches with ``input``, ``target``
        and ``index`` keys."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(cfg)")

    def check(self, cfg: Any) -> list[str]:
        """Extra validation after the schema's rules passed: rules across fields (``val_fraction +
        test_fraction`` must leave a training split), cheap and without tensors.

        Return one line per problem, each naming the key, e.g. ``"data.val_fraction=0.6: with
        data.test_fraction=0.6 no sample is left for training (their sum must be below 1)"``; the core reports
        them with the other sections' problems before anything is built or written, exit code 2.
        """
        return []

    @classmethod
    def overrides(cls, hook: str) -> bool:
        """Whether this plugin class provides its own ``hook``."""
        return getattr(cls, hook, None) is not getattr(DataPlugin, hook, None)


class CallbackPlugin(_Plugin):
    """Base class of callback plugins (entry-point group ``lightplug.callbacks``)."""

    def build(self, cfg: Any) -> Any:
        """Return a ``lightning.Callback``."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(cfg)")
