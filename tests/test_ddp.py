"""DDP on CPU processes (gloo) under Hydra, as docs/scaling.md prints it and with every default on (progress bar,
model summary, evaluation callbacks, checkpoints): one output folder, rank-0 files only, metrics over every
rank's shard; multirun jobs that each launch their own ranks (Lightning dropped multirun + DDP, #15737); two
torchrun "nodes" on this machine; the tasks of a SLURM step.

A multi-process test can hang: every process here runs in its own process group, with a timeout, and the
group is killed when the test is done with it."""

from __future__ import annotations

import csv
import json
import os
import random
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import run_cli
from doc_commands import find

SCALING = "docs/scaling.md"
DOCUMENTED_DDP = "lightplug train model=mlp trainer=ddp trainer.accelerator=cpu trainer.devices=2"
DDP = ["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
TIMEOUT = 600


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The test's environment: no DDP variables of an outer launcher, the runs index in tmp_path, Python's own
    warning filters (run_cli's default would hide warnings a user sees)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") and k not in (
        "RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "LIGHTPLUG_DDP_ARGS")}
    return {**env, "PYTHONWARNINGS": "", "OMP_NUM_THREADS": "1", "LIGHTPLUG_RUNS_DB": str(tmp_path / "runs.db"), **extra}


def run_together(commands: list[tuple[str, dict[str, str]]], cwd: Path, timeout: float = TIMEOUT) -> list[tuple[int, str]]:
    """Start every ``(shell command, env)`` at once, each in its own process group; wait for all of them;
    kill every group on timeout (and anything left behind). Returns (exit code, output) per command."""
    procs = [subprocess.Popen(["bash", "-c", text], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              start_new_session=True) for text, env in commands]
    results = []
    try:
        for proc in procs:
            try:
                out, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                for p in procs:
                    _killpg(p)
                out, _ = proc.communicate()
                out += f"\n[test] killed after {timeout} s"
            results.append((proc.returncode, out))
    finally:
        for p in procs:
            _killpg(p)
    return results


def _killpg(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _free_port(low: int = 20000, high: int = 29999) -> int:
    """A port in [low, high] that nothing listens on now."""
    for _ in range(200):
        port = random.randint(low, high)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def _runs(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as con:
        return [(Path(r[0]).name, r[1]) for r in con.execute("select run_dir, status from runs order by id")]


def _assert_both_shards(run: Path) -> None:
    """val/acc is computed over both ranks' shards of the 359 validation samples: every logged value is a multiple
    of 1/360 (the DistributedSampler pads the split to 360 by giving rank 1 sample 0 a second time), and at the
    epoch of val_predictions.csv, which rank 0 wrote with every sample's row, 360 x val/acc is exactly its count
    of correct rows plus sample 0 once more."""
    acc = {int(r["epoch"]): float(r["val/acc"]) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/acc")}
    assert acc and all(abs(a * 360 - round(a * 360)) < 1e-3 for a in acc.values()), acc
    preds = list(csv.DictReader((run / "val_predictions.csv").open()))
    assert len(preds) == 359 and {int(r["index"]) for r in preds} == set(range(359))
    correct = sum(r["correct"] == "True" for r in preds) + sum(r["correct"] == "True" for r in preds if r["index"] == "0")
    assert round(acc[int(preds[0]["epoch"])] * 360) == correct, (acc, correct)


def test_a_progress_bar_that_lightning_disabled_draws_nothing(tmp_path: Path) -> None:
    """Lightning disables the progress bar on every rank but 0; the throttled bar then must not read the
    batch counts that only an enabled bar sets (it raised AssertionError on rank 1 of every DDP run)."""
    import lightning as L
    from lightning.pytorch.demos.boring_classes import BoringModel

    from lightplug.trainer_factory import progress_bar

    bar = progress_bar()

    class NotRankZero(L.Callback):  # what ProgressBar.setup does on a rank other than 0
        def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
            bar.disable()

    # a bare Lightning Trainer around the bar alone: checkpoints, summary and logger are not what this test is about
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, callbacks=[bar, NotRankZero()], logger=False,
                        enable_checkpointing=False, enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(BoringModel())
    assert bar.is_disabled and trainer.state.finished and bar.progress is None


@pytest.mark.slow
def test_the_documented_ddp_command_runs_with_every_default_on(tmp_path: Path) -> None:
    """docs/scaling.md's command, as typed (10 epochs, bar, summary, evaluation callbacks, checkpoints), in an
    empty folder: one run folder, rank-0 files only, metrics of both ranks, and the accuracy of one process."""
    cmd = find(DOCUMENTED_DDP, SCALING)
    env = _env(tmp_path)
    (code, out), = run_together([(cmd.text, env)], tmp_path)
    assert code == 0, out[-4000:]
    assert "MEMBER: 2/2" in out and "Traceback" not in out, out[-4000:]
    assert "Epoch 9/9" in out, out[-2000:]  # rank 0 drew its progress bar to the end
    assert out.count("Total params") == 1  # the model summary, once
    # one run folder: nothing written anywhere else (no second folder from the child rank)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["outputs"]
    runs = [p for p in (tmp_path / "outputs").glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    ddp = runs[0]
    assert sorted(p.name for p in (ddp / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    for name in ("config.json", "summary.json", "metrics.csv", "confusion_matrix.png", "val_predictions.csv", ".hydra/config.yaml"):
        assert (ddp / name).is_file(), name
    _assert_both_shards(ddp)
    assert _runs(tmp_path / "runs.db") == [(ddp.name, "completed")]  # rank 0 recorded it, the child rank did not

    # resumed under DDP into the same folder, one more epoch: rank 1 once died putting the history back into a
    # CSV logger that only rank 0 has
    rel = ddp.relative_to(tmp_path)
    (code, out), = run_together([(f"{cmd.key} resume=last hydra.run.dir={rel} trainer.max_epochs=11", env)], tmp_path)
    assert code == 0 and "Traceback" not in out, out[-4000:]
    epochs = [int(r["epoch"]) for r in csv.DictReader((ddp / "metrics.csv").open()) if r.get("val/acc")]
    assert epochs == list(range(11)), epochs
    assert _runs(tmp_path / "runs.db") == [(ddp.name, "completed"), (ddp.name, "completed")]

    single = tmp_path / "single"
    one = run_cli("train", "model=mlp", f"hydra.run.dir={single}", cwd=tmp_path, env=env)
    assert one.returncode == 0, one.stderr[-2000:]
    a = json.loads((single / "summary.json").read_text())["best"]
    b = json.loads((ddp / "summary.json").read_text())["best"]
    # One process and two ranks are different runs (the batch is split, sums run in another order), so they are
    # compared within a tolerance, not bit for bit (issue 26). The mlp on digits lands at 0.975-0.983 over seeds and
    # thread counts (benchmarks/results/metric_spread.json, readme_mlp): 0.93 and a 0.05 gap leave room for other CPUs.
    assert b >= 0.93 and abs(a - b) < 0.05, (a, b)
    # rank 0 wrote the validation files once, for the best epoch, with both ranks' samples
    summary = json.loads((ddp / "summary.json").read_text())
    assert summary["artifacts_epoch"] == summary["best_epoch"] is not None and "confusion_matrix.png" in summary["artifacts"]
    samples = list(csv.DictReader((ddp / "val_predictions.csv").open()))
    assert {int(r["epoch"]) for r in samples} == {summary["best_epoch"]}


@pytest.mark.slow
def test_multirun_with_ddp_runs_each_job_with_its_own_ranks_in_its_own_folder(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep"
    out = run_cli("train", "-m", "model=mlp", "model.hidden=16,32", "trainer.max_epochs=1", *DDP, f"hydra.sweep.dir={sweep}",
                  cwd=tmp_path, env=_env(tmp_path), timeout=TIMEOUT)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stdout + out.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["sweep"]  # no second multirun folder from a child rank
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "multirun.yaml"]
    for job, hidden in zip(sorted(p for p in sweep.iterdir() if p.is_dir()), (16, 32)):
        assert json.loads((job / "config.json").read_text())["model"]["hidden"] == hidden
        assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
        assert json.loads((job / "summary.json").read_text())["best"] is not None
        _assert_both_shards(job)
    assert [s for _, s in _runs(tmp_path / "runs.db")] == ["completed", "completed"]


@pytest.mark.slow
def test_ddp_detection_map_covers_both_ranks(tmp_path: Path) -> None:
    """mAP under DDP is computed over both ranks' images: the logged val/map_50 equals a one-process
    evaluation of the same weights on the whole validation split (32 images: no sampler padding)."""
    env = _env(tmp_path, LIGHTPLUG_PLUGIN_PATH=str(Path(__file__).parent / "detection_plugins"))
    data = ["data=shapes", "data.task=detection", "data.image_size=32", "data.num_samples=128", "data.val_fraction=0.25", "data.test_fraction=0"]
    run = tmp_path / "ddp"
    two = run_cli("train", "model=tiny_fcos", *data, "trainer.max_epochs=1", *DDP, f"hydra.run.dir={run}", cwd=tmp_path, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    logged = [float(r["val/map_50"]) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/map_50")]
    one = run_cli("test", f"ckpt={run / 'checkpoints' / 'last.ckpt'}", "model=tiny_fcos", cwd=tmp_path, env=env)  # a local plugin: named
    assert one.returncode == 0, one.stderr[-3000:]
    report = json.loads((run / "checkpoints" / "test_metrics.json").read_text())
    value = float(report["metrics"]["test/map_50"])
    assert logged and value == pytest.approx(logged[-1], abs=1e-4), (value, logged)
    rows = list(csv.DictReader((run / "val_predictions.csv").open()))
    assert len(rows) == 32 and len({r["index"] for r in rows}) == 32  # rank 0 wrote both ranks' images


@pytest.mark.slow
def test_two_nodes_on_one_machine(tmp_path: Path) -> None:
    """docs/scaling.md's two-node block, run as typed on a free port: two torchrun launches of one CPU process
    each make one job of 2 ranks in one run folder, rank 0 writes, the metrics cover both nodes' halves; then
    the block's last line continues the run on one process from its last.ckpt. LIGHTPLUG_MAX_EPOCHS (a testing
    aid the core reads) shortens it to 2 epochs, and 3 for the resumed run."""
    node0 = find("torchrun --nnodes=2 --node-rank=0 --nproc-per-node=1 --master-addr=127.0.0.1 --master-port=29500 -m lightplug train "
                 "model=mlp trainer=ddp trainer.accelerator=cpu trainer.devices=1 trainer.num_nodes=2 hydra.run.dir=runs/two-nodes", SCALING)
    node1 = find(node0.key.replace("--node-rank=0", "--node-rank=1"), SCALING)
    resume = find("lightplug train model=mlp resume=last hydra.run.dir=runs/two-nodes trainer.max_epochs=15", SCALING)
    port = str(_free_port())
    env = _env(tmp_path, LIGHTPLUG_MAX_EPOCHS="2")
    (code0, out0), (code1, out1) = run_together([(n.text.replace("--master-port=29500", f"--master-port={port}"), env) for n in (node0, node1)], tmp_path)
    assert code0 == 0 and code1 == 0, out0[-3000:] + "\n----- node 1 -----\n" + out1[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in out1 and "GLOBAL_RANK: 0, MEMBER: 1/2" in out0
    assert "Epoch 1/1" in out0 and "Epoch" not in out1  # rank 0's bar; Lightning disabled rank 1's
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["runs"]
    run = tmp_path / "runs" / "two-nodes"
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["two-nodes"]
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert (run / ".hydra" / "overrides.yaml").is_file()
    _assert_both_shards(run)
    assert _runs(tmp_path / "runs.db") == [("two-nodes", "completed")]  # rank 0 recorded it, rank 1 did not
    assert json.loads((run / "config.json").read_text())["trainer"]["num_nodes"] == 2

    (code, out), = run_together([(resume.text, _env(tmp_path, LIGHTPLUG_MAX_EPOCHS="3"))], tmp_path)
    assert code == 0, out[-3000:]
    epochs = [int(r["epoch"]) for r in csv.DictReader((run / "metrics.csv").open()) if r.get("val/acc")]
    assert epochs == [0, 1, 2], epochs  # the two epochs of both nodes, then one more on one process
    assert json.loads((run / "summary.json").read_text())["best"] >= 0.5
    assert [s for _, s in _runs(tmp_path / "runs.db")] == ["completed", "completed"]


_SLURM_TASK = {"SLURM_NTASKS": "2", "SLURM_NPROCS": "2", "SLURM_NTASKS_PER_NODE": "2", "SLURM_TASKS_PER_NODE": "2", "SLURM_NNODES": "1",
               "SLURM_JOB_NUM_NODES": "1", "SLURM_NODEID": "0", "SLURM_NODELIST": "localhost", "SLURM_JOB_NODELIST": "localhost",
               "SLURM_JOB_NAME": "digits", "SLURM_STEP_ID": "0", "SLURM_CPUS_PER_TASK": "1"}

_SELECTION = """
import json, os
from hydra import compose, initialize_config_dir
from lightplug.cli.train import register_configs, _choices
from lightplug.config.finalize import finalize, plain_choices
from lightplug.config.paths import conf_dir
from lightplug.registry import get_registry
from lightplug.trainer_factory import build_trainer
args = ["model=mlp", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"]
register_configs(get_registry(), _choices(args))
with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
    cfg = compose("train", overrides=args, return_hydra_config=True)
run = finalize(cfg, plain_choices(cfg.hydra.runtime.choices), args)
t = build_trainer(run.cfg, __import__("pathlib").Path(os.environ["OUT"]), run)
env = t.strategy.cluster_environment
print(json.dumps({"env": type(env).__name__, "global_rank": t.global_rank, "local_rank": t.local_rank, "node_rank": t.node_rank,
                  "world_size": t.world_size, "launches": not env.creates_processes_externally}))
"""


@pytest.mark.slow
def test_slurm_tasks_select_lightnings_slurm_environment_and_their_ranks(tmp_path: Path) -> None:
    """The variables a task of `srun` (1 node, --ntasks-per-node=2) sees: Lightning's SLURMEnvironment is chosen,
    with the rank srun gave (checked on the Trainer lightplug builds, for task 1; in an interactive allocation
    lightplug launches the ranks itself); then two such tasks train one run together, as the SLURM script of
    docs/scaling.md does: one folder, the task ranks, metrics of both halves."""
    task1 = _env(tmp_path, **_SLURM_TASK, SLURM_JOB_ID="123", SLURM_PROCID="1", SLURM_LOCALID="1", OUT=str(tmp_path / "probe"))
    interactive = {**task1, "SLURM_JOB_NAME": "interactive", "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}
    seen = []
    for env in (task1, interactive):
        probe = subprocess.run([sys.executable, "-c", _SELECTION], env=env, capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path)
        assert probe.returncode == 0, probe.stderr[-3000:]
        seen.append(json.loads(probe.stdout.strip().splitlines()[-1]))
    assert seen[0] == {"env": "SLURMEnvironment", "global_rank": 1, "local_rank": 1, "node_rank": 0, "world_size": 2, "launches": False}
    assert seen[1]["env"] == "LightningEnvironment" and seen[1]["launches"] is True

    srun_line = find("srun lightplug train model=tiny_resnet trainer=ddp trainer.accelerator=gpu trainer.num_nodes=2 trainer.devices=4 "
                     "hydra.run.dir=outputs/slurm-${SLURM_JOB_ID}", SCALING)
    assert re.search(r"hydra\.run\.dir=outputs/slurm-\$\{SLURM_JOB_ID\}", srun_line.text)
    port = _free_port(15000, 24999)  # Lightning's SLURM port: 15000 + the job id's last 4 digits
    job = f"9{port - 15000:04d}"
    command = f"lightplug train model=mlp {' '.join(DDP)} trainer.max_epochs=2 hydra.run.dir=outputs/slurm-${{SLURM_JOB_ID}}"
    tasks = [(command, _env(tmp_path, **_SLURM_TASK, SLURM_JOB_ID=job, SLURM_JOBID=job, SLURM_PROCID=str(r), SLURM_LOCALID=str(r)))
             for r in (0, 1)]
    (code0, out0), (code1, out1) = run_together(tasks, tmp_path)
    assert code0 == 0 and code1 == 0, out0[-3000:] + "\n----- task 1 -----\n" + out1[-3000:]
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in out0 and "GLOBAL_RANK: 1, MEMBER: 2/2" in out1
    assert out0.count("MEMBER:") == 1 and out1.count("MEMBER:") == 1  # no rank launched by lightplug or Lightning
    assert sorted(p.name for p in (tmp_path / "outputs").iterdir()) == [f"slurm-{job}"]
    run = tmp_path / "outputs" / f"slurm-{job}"
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    _assert_both_shards(run)
    assert _runs(tmp_path / "runs.db") == [(run.name, "completed")]


@pytest.mark.parametrize(("env", "added"), [({"RANK": "1"}, True), ({"RANK": "0"}, False), ({"SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, True),
                                            ({"SLURM_PROCID": "0", "SLURM_NTASKS": "2"}, False), ({}, False)])
def test_a_rank_other_than_0_from_torchrun_or_srun_leaves_hydras_record_to_rank_0(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                                                  added: bool) -> None:
    """Every rank of an external launcher runs the same command line into the shared run folder; only rank 0
    writes Hydra's `.hydra` files there (two writers of one file on a shared filesystem race)."""
    from lightplug.cli.train import _child_args

    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "LIGHTPLUG_DDP_ARGS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    args = ["model=mlp", "hydra.run.dir=runs/x"]
    assert _child_args(args) == ([*args, "hydra.output_subdir=null"] if added else args)
