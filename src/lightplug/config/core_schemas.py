"""Rules for the core's own config groups (trainer, optimizer, scheduler, loss, export), checked like a
plugin's schema so that every bad value gets the same one-line message."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Annotated, Literal, Optional, Union

from ..plugin import Param
from ..schema import Schema, schema_from_dataclass

__all__ = ["core_schemas", "run_schema", "SEED_MAX"]

#: The largest seed ``seed_everything`` (numpy's legacy generator) accepts: 2**32 - 1.
SEED_MAX = 2**32 - 1


@dataclass
class TrainerRules:
    max_epochs: Annotated[int, Param(ge=-1, help="epochs to train (-1: no limit, use max_steps)")] = 10
    max_steps: Annotated[int, Param(ge=-1, help="steps to train (-1: no limit)")] = -1
    min_epochs: Annotated[Optional[int], Param(ge=0, help="train at least this many epochs")] = None
    max_time: Annotated[Optional[str], Param(help="stop after this much wall time, DD:HH:MM:SS (e.g. 00:00:03:00)")] = None
    accelerator: Annotated[str, Param(help="cpu, gpu, mps, auto")] = "auto"
    devices: Annotated[str, Param(help="number of devices, a list, or auto")] = "auto"
    strategy: Annotated[str, Param(help="auto, ddp, ddp_spawn, fsdp, deepspeed")] = "auto"
    num_nodes: Annotated[int, Param(ge=1, help="machines taking part")] = 1
    precision: Annotated[str, Param(choices=("32-true", "32", "16-mixed", "bf16-mixed", "bf16-true", "16-true", "64-true"),
                                    help="numeric precision")] = "32-true"
    gradient_clip_val: Annotated[Optional[float], Param(ge=0, help="clip gradients to this norm")] = None
    accumulate_grad_batches: Annotated[int, Param(ge=1, help="batches per optimizer step")] = 1
    log_every_n_steps: Annotated[int, Param(ge=1, help="log training metrics every N steps")] = 50
    check_val_every_n_epoch: Annotated[Optional[int], Param(ge=1, help="validate every N epochs")] = 1
    val_check_interval: Annotated[Optional[Union[int, float]], Param(gt=0, help="validate every fraction/number of train batches")] = None
    limit_train_batches: Annotated[Optional[Union[int, float]], Param(ge=0, help="batches per epoch: a fraction (0.25) or a count (10)")] = None
    limit_val_batches: Annotated[Optional[Union[int, float]], Param(ge=0, help="fraction or number of val batches")] = None
    deterministic: Annotated[Optional[bool], Param(help="use deterministic algorithms")] = None
    benchmark: Annotated[Optional[bool], Param(help="cudnn.benchmark")] = None
    enable_progress_bar: Annotated[bool, Param(help="show a progress bar")] = True
    enable_model_summary: Annotated[bool, Param(help="print the model summary")] = True
    num_sanity_val_steps: Annotated[int, Param(ge=-1, help="validation batches run before training")] = 2
    fast_dev_run: Annotated[bool, Param(help="run one batch of train and val, to check the setup")] = False


@dataclass
class OptimizerRules:
    name: Annotated[str, Param(choices=("adam", "adamw", "sgd", "rmsprop"), help="optimizer")] = "adam"
    lr: Annotated[float, Param(gt=0, help="learning rate")] = 1e-3
    weight_decay: Annotated[float, Param(ge=0, help="L2 penalty / decoupled weight decay")] = 0.0
    momentum: Annotated[float, Param(ge=0, lt=1, help="momentum (sgd, rmsprop)")] = 0.9
    nesterov: Annotated[bool, Param(help="Nesterov momentum (sgd)")] = False
    betas: Annotated[list[float], Param(ge=0, lt=1, min_items=2, max_items=2, help="Adam betas")] = field(default_factory=lambda: [0.9, 0.999])
    eps: Annotated[float, Param(gt=0, help="numerical stability term")] = 1e-8
    alpha: Annotated[float, Param(gt=0, lt=1, help="smoothing constant (rmsprop)")] = 0.99
    impl: Annotated[str, Param(choices=("auto", "fused", "foreach", "for_loop"),
                               help="torch implementation: auto = fused where torch has it for the optimizer and device, else foreach")] = "auto"


@dataclass
class SchedulerRules:
    name: Annotated[str, Param(choices=("none", "cosine", "step", "exponential", "plateau", "onecycle"), help="schedule")] = "none"
    warmup_epochs: Annotated[int, Param(ge=0, help="linear warm-up epochs (cosine)")] = 0
    min_lr: Annotated[float, Param(ge=0, help="final learning rate (cosine)")] = 0.0
    step_size: Annotated[int, Param(ge=1, help="epochs between decays (step)")] = 10
    gamma: Annotated[float, Param(gt=0, le=1, help="decay factor (step, exponential)")] = 0.1
    factor: Annotated[float, Param(gt=0, lt=1, help="decay factor (plateau)")] = 0.1
    patience: Annotated[int, Param(ge=0, help="epochs without improvement (plateau)")] = 5
    max_lr: Annotated[Optional[float], Param(gt=0, help="peak learning rate (onecycle; default optimizer.lr)")] = None
    pct_start: Annotated[float, Param(gt=0, lt=1, help="fraction of steps rising (onecycle)")] = 0.3


@dataclass
class LossRules:
    label_smoothing: Annotated[float, Param(ge=0, lt=1, help="cross-entropy label smoothing")] = 0.0


@dataclass
class DetectionRules:
    conf: Annotated[float, Param(ge=0, le=1, help="keep boxes scoring at least this")] = 0.001
    iou: Annotated[float, Param(gt=0, le=1, help="class-wise NMS IoU threshold")] = 0.6
    max_det: Annotated[int, Param(ge=1, le=10000, help="boxes kept per image")] = 100


@dataclass
class ExportRules:
    formats: Annotated[list[str], Param(choices=("onnx", "onnx_int8", "onnx_fp16", "openvino", "torchscript", "pt2"),
                                         help="formats exported after fit")] = field(default_factory=list)
    opset: Annotated[int, Param(ge=7, le=25, help="ONNX opset")] = 17
    dynamic_batch: Annotated[bool, Param(help="export with a dynamic batch axis")] = True
    atol: Annotated[float, Param(gt=0, help="verification: absolute tolerance")] = 1e-4
    rtol: Annotated[float, Param(gt=0, help="verification: relative tolerance")] = 1e-3
    benchmark: Annotated[bool, Param(help="time the exported files against eager PyTorch")] = True


@dataclass
class ResultsRules:
    every_epoch: Annotated[bool, Param(help="also write the validation files of every epoch (val_predictions/epoch_NNN.csv, ...)")] = False
    box_score: Annotated[float, Param(ge=0, le=1, help="detection: boxes scoring less are not counted or drawn in results")] = 0.25
    refresh_seconds: Annotated[Optional[float], Param(ge=0, help="during a run, rewrite the best epoch's figures and tables at most this often "
                                                               "(null: only when the run ends)")] = 60.0


@dataclass
class CompileRules:
    enabled: Annotated[bool, Param(help="run torch.compile on the model (checkpoints and exports keep the plain module)")] = False
    mode: Annotated[str, Param(choices=("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
                               help="torch.compile mode")] = "default"
    dynamic: Annotated[Optional[bool], Param(help="dynamic shapes (null: torch decides)")] = None
    fullgraph: Annotated[bool, Param(help="fail instead of splitting the graph at unsupported code")] = False
    backend: Annotated[str, Param(help="torch.compile backend")] = "inductor"


@dataclass
class EmaRules:
    enabled: Annotated[bool, Param(help="keep an exponential moving average of the weights (Lightning's EMAWeightAveraging): validation, "
                                        "checkpoints, export and load_model use it")] = False
    decay: Annotated[float, Param(gt=0, lt=1, help="weight of the average at each update: average = decay * average + (1 - decay) * weights")] = 0.999
    warmup: Annotated[int, Param(ge=0, le=10_000_000, help="optimizer steps before the average starts (from the weights of that step)")] = 0


@dataclass
class RunRules:
    """Top-level keys of the run (checked without a prefix)."""

    seed: Annotated[int, Param(ge=0, le=SEED_MAX, help="seed of every random generator")] = 42
    threads: Annotated[Optional[int], Param(ge=1, le=1024, help="torch threads per process (null: all cores, shared among CPU DDP ranks)")] = None
    monitor: Annotated[Optional[str], Param(help="metric for checkpoints, early stopping and sweeps")] = None
    monitor_mode: Annotated[Optional[str], Param(choices=("min", "max"), help="whether lower or higher is better")] = None
    resume: Annotated[Optional[str], Param(help="last, or a checkpoint path to continue from")] = None
    init_from: Annotated[Optional[str], Param(help="a checkpoint whose weights start this run")] = None


@lru_cache(maxsize=1)
def run_schema() -> Schema:
    """Rules of the top-level run keys."""
    return schema_from_dataclass(RunRules, "the run config", group="run")


@lru_cache(maxsize=1)
def core_schemas() -> dict[str, Schema]:
    """Schemas of the core groups, by top-level key."""
    rules: dict[str, type] = {"trainer": TrainerRules, "optimizer": OptimizerRules, "scheduler": SchedulerRules,
                              "loss": LossRules, "detection": DetectionRules, "export": ExportRules, "results": ResultsRules,
                              "compile": CompileRules, "ema": EmaRules}
    return {key: schema_from_dataclass(cls, f"the {key} config", group=key) for key, cls in rules.items()}


#: Literal is imported for plugins copying this file as an example.
_ = Literal
