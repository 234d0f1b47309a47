"""The contract checks of data plugins (facts, data module, dict batches) and callback plugins (build, one fit)."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..plugin import DATA_FACTS, ModelPlugin
from ..registry import LoadedPlugin
from .check import Fail, Skip, config_values, missing_values, run_check, schema_check
from .report import CheckReport, CheckResult

__all__ = ["planned_data_checks", "planned_callback_checks", "run_data_checks", "run_callback_checks", "describe_batch"]

_FACT_KEYS = (*DATA_FACTS, "label_names")


@dataclass
class _State:
    loaded: LoadedPlugin
    overrides: dict[str, Any]
    plugin: Any = None
    facts: dict[str, Any] | None = None
    built: Any = None
    batches: dict[str, Any] = field(default_factory=dict)

    def instantiate(self) -> Any:
        values = config_values(self.loaded.schema, self.overrides)
        missing = missing_values(values)
        if missing:
            raise Fail(f"no value for {', '.join(missing)} (give one, e.g. {missing[0]}=...)")
        return self.loaded.instantiate(values)


# ---------------------------------------------------------------- data plugins
def planned_data_checks(loaded: LoadedPlugin) -> list[str]:
    """The checks of a data plugin after ``load``."""
    return ["schema", "facts", "build", "train_batch", "val_batch", "facts_match", "preprocessing"]


def run_data_checks(report: CheckReport, loaded: LoadedPlugin, overrides: Mapping[str, Any],
                    on_result: Callable[[CheckReport, CheckResult], None] | None = None) -> None:
    """Run every data check in order, appending one result per check to ``report``."""
    st = _State(loaded, dict(overrides))
    run_check(report, "schema", lambda: schema_check(loaded, overrides), on_result)
    run_check(report, "facts", lambda: _facts(st), on_result)
    run_check(report, "build", lambda: _build_data(st), on_result)
    run_check(report, "train_batch", lambda: _batch(st, "train"), on_result)
    run_check(report, "val_batch", lambda: _batch(st, "val"), on_result)
    run_check(report, "facts_match", lambda: _facts_match(st), on_result)
    run_check(report, "preprocessing", lambda: _preprocessing(st), on_result)


def _facts(st: _State) -> str:
    st.plugin = st.instantiate()
    facts = st.plugin.facts(st.plugin.cfg)
    if not isinstance(facts, dict):
        raise Fail(f"facts() returned {type(facts).__name__}, not a dict")
    unknown = sorted(set(facts) - set(_FACT_KEYS))
    bad = [k for k in DATA_FACTS if k in facts and not (isinstance(facts[k], int) and not isinstance(facts[k], bool) and facts[k] > 0)]
    if bad:
        raise Fail("facts must be positive ints: " + ", ".join(f"{k}={facts[k]!r}" for k in bad))
    labels = facts.get("label_names")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(n, str) for n in labels)):
        raise Fail("label_names must be a list of strings")
    st.facts = facts
    shown = " ".join(f"{k}={v}" for k, v in facts.items() if k in DATA_FACTS)
    reason = (shown or "no facts a model binds to") + (f", {len(labels)} label names" if labels else "")
    return reason + (f"; not bound to models: {', '.join(unknown)}" if unknown else "")


def _build_data(st: _State) -> str:
    import lightning as L

    plugin = st.plugin or st.instantiate()
    dm = plugin.build(plugin.cfg)
    if not isinstance(dm, L.LightningDataModule):
        from ..data.module_kind import wrong_datamodule

        raise Fail(wrong_datamodule(dm))
    dm.prepare_data()
    dm.setup("fit")
    st.built = dm
    return f"{type(dm).__name__}; prepare_data() and setup('fit') ran"


def describe_batch(batch: Any) -> str:
    """Check one batch of the contract's layout (a dict of ``input``, ``target``, ``index``) and describe it.

    Raises:
        Fail: naming what is missing or of the wrong kind.
    """
    import torch

    if not isinstance(batch, dict):
        raise Fail(f"the loader yields {type(batch).__name__}, not a dict with input, target and index")
    missing = [k for k in ("input", "target", "index") if k not in batch]
    if missing:
        raise Fail(f"the batch has no {', '.join(missing)} (keys: {', '.join(map(str, batch))})")
    x, y, idx = batch["input"], batch["target"], batch["index"]
    if not torch.is_tensor(x):
        raise Fail(f"batch['input'] is {type(x).__name__}, not a tensor")
    if not (torch.is_tensor(y) or isinstance(y, list)):
        raise Fail(f"batch['target'] is {type(y).__name__}, not a tensor (or a list of per-image dicts)")
    if not torch.is_tensor(idx) or idx.dtype.is_floating_point:
        raise Fail("batch['index'] must be an integer tensor (each sample's position in its split)")
    sizes = {len(x), len(y), len(idx)}
    if len(sizes) != 1:
        raise Fail(f"input, target and index have different lengths ({len(x)}, {len(y)}, {len(idx)})")
    target = f"{tuple(y.shape)} {str(y.dtype).removeprefix('torch.')}" if torch.is_tensor(y) else f"list of {len(y)}"
    return f"input {tuple(x.shape)} {str(x.dtype).removeprefix('torch.')}, target {target}, index {tuple(idx.shape)}"


def _batch(st: _State, split: str) -> str:
    if st.built is None:
        raise Skip("needs a passing build check")
    from ..data.module_kind import empty_sampler

    try:
        batch = next(iter(getattr(st.built, f"{split}_dataloader")()), None)
    except ValueError as exc:
        if not empty_sampler(exc):
            raise
        batch = None
    if batch is None:
        raise Fail(f"the {split} split is empty: {split}_dataloader() yields no batch (check the split settings and the data)")
    reason = describe_batch(batch)
    st.batches[split] = batch
    return reason


def _facts_match(st: _State) -> str:
    import torch

    batch = st.batches.get("val") or st.batches.get("train")
    if batch is None or st.facts is None:
        raise Skip("needs passing facts and batch checks")
    facts, x, y = st.facts, batch["input"], batch["target"]
    task = facts.get("task") or st.loaded.task
    ys = [b["target"].reshape(-1) for b in st.batches.values() if torch.is_tensor(b["target"])]  # the labels of both batches
    problems: list[str] = []
    matched: list[str] = []

    def expect(name: str, actual: int) -> None:
        if name in facts:
            (matched if facts[name] == actual else problems).append(f"{name}={facts[name]}" + ("" if facts[name] == actual else f" but the batch has {actual}"))

    if x.ndim == 2:
        expect("in_features", int(x.shape[1]))
    elif x.ndim == 4:
        expect("in_channels", int(x.shape[1]))
        if x.shape[2] == x.shape[3]:
            expect("image_size", int(x.shape[2]))
    if ys and task in ("classification", "segmentation") and not ys[0].dtype.is_floating_point and "num_classes" in facts:
        seen = torch.cat(ys)
        if seen.numel() and (int(seen.min()) < 0 or int(seen.max()) >= facts["num_classes"]):
            problems.append(f"num_classes={facts['num_classes']} but the targets seen range over [{int(seen.min())}, {int(seen.max())}]")
        else:
            matched.append(f"targets in [0, {facts['num_classes']})")
    labels = facts.get("label_names")
    if task == "classification" and labels and "num_classes" in facts and len(labels) != facts["num_classes"]:
        problems.append(f"num_classes={facts['num_classes']} but {len(labels)} label_names")
    if torch.is_tensor(y) and task == "regression" and y.ndim == 2:
        expect("num_outputs", int(y.shape[1]))
    if problems:
        raise Fail("facts do not match the batches: " + "; ".join(problems))
    return ("the batches agree with " + ", ".join(matched)) if matched else "no fact could be compared with the batches"


def _preprocessing(st: _State) -> str:
    from .preprocessing_check import preprocessing_check

    if st.built is None:
        raise Skip("needs a passing build check")
    facts = st.facts or {}
    return preprocessing_check(st.built, facts, str(facts.get("task") or st.loaded.task), st.batches.get("val") or st.batches.get("train"))


# ---------------------------------------------------------------- callback plugins
def planned_callback_checks(loaded: LoadedPlugin) -> list[str]:
    """The checks of a callback plugin after ``load``."""
    return ["schema", "build", "fit"]


def run_callback_checks(report: CheckReport, loaded: LoadedPlugin, overrides: Mapping[str, Any],
                        on_result: Callable[[CheckReport, CheckResult], None] | None = None) -> None:
    """Run every callback check in order, appending one result per check to ``report``."""
    st = _State(loaded, dict(overrides))
    run_check(report, "schema", lambda: schema_check(loaded, overrides), on_result)
    run_check(report, "build", lambda: _build_callback(st), on_result)
    run_check(report, "fit", lambda: _fit(st), on_result)


def _build_callback(st: _State) -> str:
    from lightning.pytorch import Callback

    plugin = st.instantiate()
    cb = plugin.build(plugin.cfg)
    if not isinstance(cb, Callback):
        raise Fail(f"build() returned {type(cb).__name__}, not a lightning.pytorch.Callback")
    st.built = cb
    return f"{type(cb).__name__} from the default config"


class _TinyModel(ModelPlugin):
    """A linear classifier of 16 features into 4 classes, to run a callback in a real fit."""

    def build(self, cfg: Any) -> Any:
        from torch import nn

        return nn.Linear(16, 4)


def _fit(st: _State) -> str:
    import lightning as L

    from .._logging import quiet_lightning
    from ..data.datamodule import synthetic_datamodule
    from ..data.plugins import SyntheticConfig
    from ..module import PluginModule

    if st.built is None:
        raise Skip("needs a passing build check")
    quiet_lightning()
    plugin = _TinyModel()
    run_cfg = {"facts": {"num_classes": 4, "num_outputs": 4}, "loss": {}, "optimizer": {"name": "adam", "lr": 1e-3},
               "scheduler": {"name": "none"}, "trainer": {"max_epochs": 1}, "monitor": "val/acc"}
    module = PluginModule(plugin.build(None), plugin, run_cfg, {"task": "classification"})
    data = synthetic_datamodule(SyntheticConfig(num_samples=48, batch_size=8, image_size=4, layout="flat"))
    with tempfile.TemporaryDirectory(prefix="lightplug-check-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice about workers and tiny runs, for this fit only
        trainer = L.Trainer(accelerator="cpu", devices=1, max_epochs=1, limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0,
                            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                            default_root_dir=tmp, callbacks=[st.built])
        trainer.fit(module, datamodule=data)
    return f"{type(st.built).__name__} ran through a 1-epoch fit (2 training and 1 validation batches)"
