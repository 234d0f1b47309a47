"""The plugin contract: ``Param`` field metadata and the ``ModelPlugin``/``DataPlugin``/``CallbackPlugin`` bases.

This module imports neither torch nor lightning, so a plugin package can import it at module level
without slowing down ``lightplug models``.

Tier 0 needs none of this: any ``nn.Module`` whose ``__init__`` parameters are typed and defaulted is a
plugin (see :func:`lightplug.schema.schema_from_signature`). Tier 1 subclasses :class:`ModelPlugin`::

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
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from torch import nn

__all__ = ["Param", "ModelPlugin", "DataPlugin", "CallbackPlugin", "TASKS", "DATA_FACTS"]

#: Tasks the core knows: each has a default loss, metrics, monitored metric and output check.
TASKS = ("classification", "regression", "segmentation", "detection")

#: Model fields with these names are bound to the selected data module's facts unless set explicitly.
DATA_FACTS = ("num_classes", "in_channels", "in_features", "image_size", "num_outputs")


@dataclass(frozen=True)
class Param:
    """Constraints and help for one config field, attached with ``Annotated[type, Param(...)]``.

    Args:
        ge, gt, le, lt: inclusive/exclusive bounds for numbers (and for every item of a list).
        choices: the allowed values (``Literal[...]`` gives the same).
        help: one line shown by ``lightplug models show``, in error messages and in the web form.
        group: a heading to group fields under (default: ``"model"`` / ``"data"``).
        advanced: hide behind an "advanced" toggle in forms.
        structural: changes the shape of the weights (``None``: guessed from the type, ints and
            choices are structural, floats and bools are not). Used to decide whether weights can be
            loaded into a model built with another config.

    Example:
        >>> Param(ge=8, le=512, help="channels of the first stage")
        Param(ge=8, gt=None, le=512, lt=None, choices=None, help='channels of the first stage', group=None, advanced=False, structural=None)
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
    """

    #: One of :data:`TASKS`.
    task: ClassVar[str] = "classification"
    #: Set to ``True`` when :meth:`training_step` steps its own optimizers (manual optimisation).
    manual_optimization: ClassVar[bool] = False
    #: Set to ``True`` when the module's forward takes the targets too (``net(input, target)``) and then
    #: returns ``(predictions, loss)`` or a dict of losses, as torchvision's detectors do in training.
    takes_targets: ClassVar[bool] = False

    def build(self, cfg: Any) -> nn.Module:
        """Return the ``nn.Module`` for this config."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(cfg)")

    def check(self, cfg: Any) -> list[str]:
        """Extra validation after the schema's rules passed (cross-field rules, names from a library).

        Return one line per problem, each naming the key, e.g. ``"model.arch=resnt18: unknown
        architecture (did you mean resnet18?)"``; the core reports them all with exit code 2.
        """
        return []

    # ---- optional hooks; the core calls them only when a subclass overrides them ----
    def loss(self, outputs: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Loss of a batch from the model's outputs; default: the task's loss (cross-entropy, MSE, ...)."""
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

    def postprocess(self, outputs: Any, batch: dict[str, Any] | None = None) -> Any:
        """Turn raw outputs into predictions (e.g. boxes after NMS for detection)."""
        raise NotImplementedError

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


class CallbackPlugin(_Plugin):
    """Base class of callback plugins (entry-point group ``lightplug.callbacks``)."""

    def build(self, cfg: Any) -> Any:
        """Return a ``lightning.Callback``."""
        raise NotImplementedError(f"{type(self).__name__} must implement build(cfg)")
