"""The best epoch's validation files: decided once per validation by the rule of ModelCheckpoint, kept in memory,
written when the run ends (also by an exception after a validation) and at most every ``refresh_seconds`` during it."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import pytest
import torch


def _trainer(tmp_path: Path, epoch: int, step: int, value: float | None) -> Any:
    metrics = {} if value is None else {"val/acc": torch.tensor(value)}
    return types.SimpleNamespace(current_epoch=epoch, global_step=step, callback_metrics=metrics, world_size=1, checkpoint_callback=None,
                                 default_root_dir=str(tmp_path), callbacks=[], is_global_zero=True, sanity_checking=False)


def test_best_epoch_is_decided_once_per_validation_and_files_are_due_at_most_every_refresh_seconds(tmp_path: Path,
                                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lightplug.evaluation import artifacts
    from lightplug.evaluation.artifacts import BestEpoch

    clock = [100.0]
    monkeypatch.setattr(artifacts.time, "monotonic", lambda: clock[0])
    sched = BestEpoch("val/acc", "max", refresh_seconds=10.0, out_dir=tmp_path)
    sched.on_fit_start(_trainer(tmp_path, 0, 0, None), None)  # type: ignore[arg-type]
    seen = []
    for epoch, (value, seconds) in enumerate([(0.5, 3), (0.7, 3), (0.7, 3), (float("nan"), 3), (0.6, 3), (0.8, 1), (0.8, 20)]):
        clock[0] += seconds
        t = _trainer(tmp_path, epoch, 10 * epoch, value)
        improved = sched.observe(t)
        assert sched.observe(t) is improved  # asked again by the next callback: the same answer, decided once
        seen.append((improved, sched.best_epoch, sched.flush))
    # strictly better and not NaN improves (a tie does not: ModelCheckpoint keeps the first); files are due when
    # the best epoch changed and 10 s passed since the fit started or the last write
    assert seen == [(True, 0, False), (True, 1, False), (False, 1, False), (False, 1, True), (False, 1, False), (True, 5, False),
                    (False, 5, True)]
    assert sched.state_dict()["best"] == pytest.approx(0.8) and sched.state_dict()["best_epoch"] == 5

    only_at_end = BestEpoch("val/loss", "min", refresh_seconds=None, out_dir=tmp_path)
    for epoch in range(3):
        clock[0] += 1000
        only_at_end.observe(_trainer(tmp_path, epoch, epoch, None))  # no value: the latest validation is shown
    assert only_at_end.best_epoch == 2 and not only_at_end.flush


class _Recorder:
    """A BestEpochArtifacts keeping each validation's mean prediction and recording when it draws."""

    def __init__(self) -> None:
        from lightplug.evaluation.artifacts import BestEpochArtifacts

        class Recorder(BestEpochArtifacts):
            def __init__(self) -> None:
                super().__init__()
                self.renders: list[tuple[int, bool, float, int]] = []
                self._value = 0.0

            def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                                        dataloader_idx: int = 0) -> None:
                self._value = float(outputs)

            def collect(self, trainer: Any, pl_module: Any) -> Any:
                return {"value": torch.tensor(self._value)}

            def render(self, trainer: Any, pl_module: Any, data: Any, epoch: int, per_epoch: bool) -> dict[str, int]:
                self.renders.append((epoch, per_epoch, round(float(data["value"]), 3), trainer.current_epoch))
                path = Path(trainer.default_root_dir) / ("recorder.txt" if not per_epoch else f"recorder/epoch_{epoch:03d}.txt")
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(str(epoch))
                return {str(path): epoch}

        self.callback = Recorder()


def _fit(tmp_path: Path, callbacks: list[Any], scores: list[float], fail_at_epoch: int | None = None) -> Any:
    """A tiny real fit whose val/acc follows ``scores`` (1.0 in the sanity check); raises in training at ``fail_at_epoch``."""
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if self.current_epoch == fail_at_epoch:
                raise RuntimeError("boom")
            return (self.w - 1).pow(2).sum()

        def validation_step(self, batch: Any, batch_idx: int) -> Any:
            value = 1.0 if self.trainer.sanity_checking else scores[self.current_epoch]  # the sanity check must not count
            self.log("val/acc", value)
            return torch.tensor(value)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=2)
    trainer = L.Trainer(max_epochs=len(scores), accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=1, default_root_dir=str(tmp_path), callbacks=callbacks)
    trainer.fit(Tiny(), data, data)
    return trainer


def test_files_show_the_best_epoch_drawn_once_at_the_end_even_when_a_later_epoch_fails(tmp_path: Path) -> None:
    import json

    from lightplug.evaluation.artifacts import BestEpoch, artifact_summary

    rec = _Recorder().callback
    sched = BestEpoch("val/acc", "max", out_dir=tmp_path)  # refresh 60 s: this short fit draws nothing before it ends
    trainer = _fit(tmp_path, [sched, rec], [0.2, 0.9, 0.5, 0.4])
    assert rec.renders == [(1, False, 0.9, 4)]  # one drawing, once the 4 epochs ran, of epoch 1
    assert artifact_summary(trainer) == {"best_epoch": 1, "artifacts_epoch": 1, "artifacts": {"recorder.txt": 1}}
    assert json.loads((tmp_path / "artifacts.json").read_text())["files"] == {"recorder.txt": 1}

    failing = tmp_path / "failing"
    rec = _Recorder().callback
    with pytest.raises(RuntimeError, match="boom"):
        _fit(failing, [BestEpoch("val/acc", "max", out_dir=failing), rec], [0.2, 0.9, 0.5, 0.4], fail_at_epoch=2)
    assert rec.renders == [(1, False, 0.9, 2)]  # written when the run failed, for the best validation it had

    every = tmp_path / "every"
    rec = _Recorder().callback
    _fit(every, [BestEpoch("val/acc", "max", refresh_seconds=0, every_epoch=True, out_dir=every), rec], [0.2, 0.9, 0.5])
    assert rec.renders == [(0, True, 0.2, 0), (0, False, 0.2, 0), (1, True, 0.9, 1), (1, False, 0.9, 1), (2, True, 0.5, 2)]


def test_a_callback_alone_in_a_plain_trainer_shows_the_latest_validation(tmp_path: Path) -> None:
    rec = _Recorder().callback
    _fit(tmp_path, [rec], [0.9, 0.2])  # no BestEpoch and no checkpoint callback: nothing to rank by
    assert rec.renders == [(1, False, 0.2, 2)]


def test_the_kept_epoch_survives_a_checkpoint_until_it_is_written() -> None:
    rec = _Recorder().callback
    rec._pending = {"epoch": 3, "step": 40, "data": {"value": torch.tensor(0.5)}}
    again = _Recorder().callback
    again.load_state_dict(rec.state_dict())
    assert again._pending is not None and again._pending["epoch"] == 3 and float(again._pending["data"]["value"]) == 0.5
    again.load_state_dict({"best": 0.3})  # a checkpoint of the callback before it kept data: nothing pending
    assert again._pending is None
