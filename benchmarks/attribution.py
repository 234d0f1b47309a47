"""Before/after of the per-step overhead fixes in the core, measured in one process, interleaved.

The core before this work is put back in place (the code each fix replaced is kept below, same
behaviour) and ``lightplug.train(model=...)`` runs with the ``bench_timer`` callback, old and new code
interleaved in one process. The pieces each fix touched are timed on their own (CPU time of the training
thread), which a loaded machine disturbs far less than whole steps:

- train/loss logging: ``PluginModule.training_step`` called ``self.log("train/loss", ..., on_epoch=True)``
  (and one per loss part) on every step; now the losses are summed on the device and logged once per
  epoch (same values: ``metrics.csv`` is identical).
- progress bar: Lightning's ``RichProgressBar`` updated the task and re-read the metrics after every
  batch; now at most every 0.1 s and at each epoch's last batch.
- batch gather: ``ArrayDataset.__getitems__`` built the index with ``torch.as_tensor(list)`` and gathered
  with ``x[t]``; now ``np.asarray`` + ``index_select``.
- batch transfer: Lightning's ``move_data_to_device`` walked the batch every step; now a dict of tensors
  already on the device is passed through.

Run: ``python benchmarks/attribution.py [--quick] [--rounds 3] [--epochs 10] [--models simple_cnn,mlp]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import HERE, Section, bench_env, install_step_timer, md_table, median, run

__all__ = ["VARIANTS", "measure_in_process", "run_benchmark", "render"]

VARIANTS = ("current", "all reverted")
#: The code each fix touched, timed on its own (thread CPU time per training step or per batch).
COMPONENTS = ("train/loss logging", "progress bar, per train batch", "batch gather (__getitems__)", "batch transfer to device",
              "all callbacks' per-step hooks", "next batch (Lightning fetcher + DataLoader)")
#: Pieces timed per training step; the others per batch (training and validation).
PER_STEP = ("train/loss logging", "progress bar, per train batch", "all callbacks' per-step hooks")
#: The callback hooks Lightning calls on every training step.
STEP_HOOKS = {"on_train_batch_start", "on_before_backward", "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad",
              "on_train_batch_end"}


def _reverts() -> dict[str, Any]:
    """name -> function that puts the old code back and returns a function that restores the new."""
    import lightning as L
    import torch

    import lightplug.trainer_factory as tf
    from lightplug.data.datamodule import ArrayDataset, LightplugDataModule
    from lightplug.module import PluginModule

    def old_training_step(self: Any, batch: dict[str, Any], batch_idx: int) -> Any:
        if self._hook("training_step"):
            loss = self.plugin.training_step(self, batch, batch_idx)
            if loss is None:
                return None
            parts: dict[str, Any] = {}
        else:
            _, loss, parts = self.compute(batch)
        size = len(batch["input"])
        self.log("train/loss", loss.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True)
        for name, value in parts.items():
            self.log(f"train/loss_{name}", value.detach(), on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return loss

    def old_getitems(self: Any, idx: list[int]) -> dict[str, Any]:
        t = torch.as_tensor(idx)
        return {"input": self.inputs[t], "target": self.targets[t], "index": self.indices[t]}

    def old_bar(*args: Any, **kwargs: Any) -> Any:
        from lightning.pytorch.callbacks import RichProgressBar

        return RichProgressBar(leave=True)

    def patch(owner: Any, name: str, value: Any) -> Any:
        saved = owner.__dict__[name] if name in owner.__dict__ else None

        def restore() -> None:
            if saved is None:
                delattr(owner, name)
            else:
                setattr(owner, name, saved)

        setattr(owner, name, value)
        return restore

    def log_every_step() -> Any:
        undo = [patch(PluginModule, "training_step", old_training_step), patch(PluginModule, "on_train_epoch_end", lambda self: None)]
        return lambda: [u() for u in undo]

    return {
        "self.log every step": log_every_step,
        "progress bar every step": lambda: patch(tf, "progress_bar", old_bar),
        "x[t] batch gather": lambda: patch(ArrayDataset, "__getitems__", old_getitems),
        "generic batch transfer": lambda: patch(LightplugDataModule, "transfer_batch_to_device", L.LightningDataModule.transfer_batch_to_device),
    }


class _Timers:
    """Thread CPU time spent in the code of each fix, and the number of training steps."""

    def __init__(self) -> None:
        self.total = {c: 0.0 for c in COMPONENTS}
        self.calls = {c: 0 for c in COMPONENTS}
        self.steps, self.in_step = 0, False

    def wrap(self, fn: Any, component: str, only_in_step: bool = False, count: bool = True) -> Any:
        import time

        def timed(*args: Any, **kwargs: Any) -> Any:
            if only_in_step and not self.in_step:
                return fn(*args, **kwargs)
            t = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[component] += time.thread_time() - t
                self.calls[component] += count

        return timed

    def install(self) -> Any:
        """Wrap the current code (new or reverted); returns a function that unwraps it."""
        from lightning.pytorch.loops import fetchers
        from lightning.pytorch.trainer import call

        import lightplug.trainer_factory as tf
        from lightplug.data.datamodule import ArrayDataset, LightplugDataModule
        from lightplug.module import PluginModule

        saved: list[tuple[Any, str, Any]] = [(PluginModule, n, PluginModule.__dict__.get(n))
                                             for n in ("training_step", "log", "_accumulate", "on_train_epoch_end")]
        saved += [(ArrayDataset, "__getitems__", ArrayDataset.__dict__.get("__getitems__")), (tf, "progress_bar", tf.progress_bar),
                  (LightplugDataModule, "transfer_batch_to_device", LightplugDataModule.__dict__.get("transfer_batch_to_device")),
                  (call, "_call_callback_hooks", call._call_callback_hooks),
                  (fetchers._PrefetchDataFetcher, "__next__", fetchers._PrefetchDataFetcher.__dict__["__next__"])]
        hooks = call._call_callback_hooks
        timed_hooks = self.wrap(hooks, "all callbacks' per-step hooks", count=False)

        def call_callback_hooks(trainer: Any, hook_name: str, *args: Any, **kwargs: Any) -> Any:
            if hook_name in STEP_HOOKS and trainer.training and not trainer.sanity_checking:
                return timed_hooks(trainer, hook_name, *args, **kwargs)
            return hooks(trainer, hook_name, *args, **kwargs)

        setattr(call, "_call_callback_hooks", call_callback_hooks)  # noqa: B010
        setattr(fetchers._PrefetchDataFetcher, "__next__",  # noqa: B010
                self.wrap(fetchers._PrefetchDataFetcher.__next__, "next batch (Lightning fetcher + DataLoader)"))
        step, log = PluginModule.training_step, PluginModule.log

        def training_step(module: Any, *args: Any, **kwargs: Any) -> Any:
            self.in_step, self.steps = True, self.steps + 1
            try:
                return step(module, *args, **kwargs)
            finally:
                self.in_step = False

        setattr(PluginModule, "training_step", training_step)  # noqa: B010 - setattr keeps mypy from judging the patch
        setattr(PluginModule, "log", self.wrap(log, "train/loss logging", only_in_step=True, count=False))  # noqa: B010
        setattr(PluginModule, "_accumulate", self.wrap(PluginModule._accumulate, "train/loss logging", only_in_step=True, count=False))  # noqa: B010
        setattr(PluginModule, "on_train_epoch_end", self.wrap(PluginModule.on_train_epoch_end, "train/loss logging", count=False))  # noqa: B010
        setattr(LightplugDataModule, "transfer_batch_to_device",  # noqa: B010
                self.wrap(LightplugDataModule.transfer_batch_to_device, "batch transfer to device"))
        setattr(ArrayDataset, "__getitems__", self.wrap(ArrayDataset.__getitems__, "batch gather (__getitems__)"))  # noqa: B010
        make_bar = tf.progress_bar

        def progress_bar(*args: Any, **kwargs: Any) -> Any:
            bar = make_bar(*args, **kwargs)
            bar.on_train_batch_end = self.wrap(bar.on_train_batch_end, "progress bar, per train batch")
            return bar

        tf.progress_bar = progress_bar

        def uninstall() -> None:
            for owner, name, value in saved:
                if value is None:
                    delattr(owner, name)
                else:
                    setattr(owner, name, value)

        return uninstall

    def per_step(self) -> dict[str, float]:
        """Seconds per training step (logging, progress bar) or per batch (gather, transfer)."""
        out = {}
        for c in COMPONENTS:
            n = self.steps if c in PER_STEP else self.calls[c]
            out[c] = self.total[c] / n if n else float("nan")
        return out


def measure_in_process(models: list[str], rounds: int, epochs: int, threads: int, workdir: Path) -> dict[str, Any]:
    """Run every (model, variant) ``rounds`` times in this process; model -> variant -> list of summaries
    (whole steps, and ``components``: seconds per step or batch spent in the code of each fix)."""
    from overhead import summarize

    import lightplug

    reverts = _reverts()
    results: dict[str, dict[str, list[dict[str, Any]]]] = {m: {v: [] for v in VARIANTS} for m in models}
    for r in range(rounds):
        for model in models:
            for variant in (VARIANTS if r % 2 == 0 else VARIANTS[::-1]):
                undo = [revert() for revert in reverts.values()] if variant == "all reverted" else []
                timers = _Timers()
                unwrap = timers.install()
                out = workdir / f"{model}-{VARIANTS.index(variant)}-{r}"
                try:
                    lightplug.train(f"model={model}", "trainer=cpu", f"trainer.max_epochs={epochs}", f"threads={threads}", "seed=0",
                                    "callbacks=[default,bench_timer]", f"hydra.run.dir={out}")
                finally:
                    unwrap()
                    for u in reversed(undo):
                        u()
                res = summarize(json.loads((out / "bench_steps.json").read_text()))
                res["components"] = timers.per_step()
                results[model][variant].append(res)
                print(f"  attribution round {r + 1}/{rounds} {model:10s} {variant:12s} per step {res['per_step'] * 1e3:.3f} ms "
                      f"(cpu {res['per_step_cpu'] * 1e3:.3f}) components (us) "
                      + ", ".join(f"{k}: {v * 1e6:.1f}" for k, v in res["components"].items()), file=sys.stderr, flush=True)
    return results


def render(results: dict[str, Any], settings: dict[str, Any]) -> Section:
    """The Markdown section: the cost of each fixed piece before and after, and whole steps."""
    rows, steps = [], []
    for model, variants in results.items():
        before, after = variants["all reverted"], variants["current"]
        for c in COMPONENTS:
            b, a = median([x["components"][c] for x in before]), median([x["components"][c] for x in after])
            unit = "step" if c in PER_STEP else "batch"
            rows.append([f"`{model}`", c, f"{b * 1e6:.1f}", f"{a * 1e6:.1f}", f"{(b - a) * 1e6:.1f} per {unit}"])
        for label, runs in (("before (all reverted)", before), ("after (current)", after)):
            steps.append([f"`{model}`", label, f"{median([x['per_step'] for x in runs]) * 1e3:.3f}",
                          f"{median([x['per_step_cpu'] for x in runs]) * 1e3:.3f}"])
    body = (f"The code each fix replaced is put back in place (kept in `benchmarks/attribution.py`) and `lightplug.train` runs in one "
            f"process, old and new code interleaved, {settings['rounds']} rounds of {settings['epochs']} epochs, `threads={settings['threads']}`. "
            f"The changed pieces are timed on their own (CPU time of the training thread, median over rounds), which a loaded machine "
            f"disturbs far less than whole steps:\n\n"
            + md_table(["model", "piece", "before us", "after us", "saved us"], rows)
            + "\n\nThe last two rows are not fixes; they show what remains: Lightning calls every callback (lightplug's "
              "checkpoint, RNG-state, signal, LR-monitor, progress-bar and evaluation callbacks, Lightning's model summary, the "
              "benchmark's timer) on six hooks per step, and fetches each batch through its fetcher and the `DataLoader` "
              "(the bare Lightning row of the overhead table pays the fetch too, not the callbacks)."
            + "\n\nWhole training steps with all four fixes reverted and with the current code (first epoch left out; on a busy "
              "machine these move by several percent from run to run):\n\n"
            + md_table(["model", "code", "per step ms", "CPU per step ms"], steps))
    return Section("Core overhead fixes: before and after", body, {"results": results, "settings": settings})


def run_benchmark(quick: bool = False, workdir: Path | None = None, rounds: int | None = None, epochs: int | None = None,
                  threads: int = 1, models: tuple[str, ...] = ("simple_cnn", "mlp"), log: Any = print) -> Section:
    """Run :func:`measure_in_process` in a child process (own plugin cache and site) and render it."""
    rounds = rounds or (1 if quick else 3)
    epochs = epochs or (2 if quick else 10)
    models = models[:1] if quick else models
    with tempfile.TemporaryDirectory(prefix="lp-attrib-") as tmp:
        base = Path(workdir or tmp)
        base.mkdir(parents=True, exist_ok=True)
        site = install_step_timer(base / "site")
        env = bench_env(site, base / "cache", threads)
        out = base / "attribution.json"
        cmd = [sys.executable, str(HERE / "attribution.py"), "--child", "--rounds", str(rounds), "--epochs", str(epochs),
               "--threads", str(threads), "--models", ",".join(models), "--workdir", str(base), "--json", str(out)]
        code, text, _ = run(cmd, env=env, cwd=base)
        if code != 0:
            raise RuntimeError(f"attribution failed ({code}):\n{text[-3000:]}")
        for line in text.splitlines():
            if line.startswith("  attribution"):
                log(line)
        results = json.loads(out.read_text())
    return render(results, {"rounds": rounds, "epochs": epochs, "threads": threads})


def main() -> None:
    """Command line: print the section; ``--child`` measures in this process (site and cache from the env)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--models", default="simple_cnn,mlp")
    p.add_argument("--workdir", type=Path)
    p.add_argument("--json", type=Path)
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        os.chdir(a.workdir)
        results = measure_in_process(a.models.split(","), a.rounds, a.epochs, a.threads, a.workdir)
        a.json.write_text(json.dumps(results))
        return
    section = run_benchmark(a.quick, a.workdir, a.rounds, a.epochs, a.threads, tuple(a.models.split(",")))
    print(section.markdown())


if __name__ == "__main__":
    main()
