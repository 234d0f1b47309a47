"""`lightplug predict`: images, .npy and CSV inputs prepared as in training, unreadable files skipped by
name, regression values in the data's units, and ONNX files run through onnxruntime without torch or
lightning giving the checkpoint's predictions."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run_cli

QUIET = ["trainer.enable_progress_bar=false", "trainer.enable_model_summary=false"]
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


def test_numpy_image_preparation_matches_the_training_transform() -> None:
    from lightplug.data.images import eval_transform
    from lightplug.evaluation.inputs import image_to_array

    rng = np.random.default_rng(0)
    pre = {"layout": "image", "in_channels": 3, "image_size": 16, "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    same = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    np.testing.assert_allclose(image_to_array(same, pre, (3, 16, 16)), eval_transform(pre)(same).numpy(), atol=1e-6)
    for size in ((40, 40), (37, 23)):  # resized: Pillow and torchvision may round a pixel differently, by one grey level at most
        img = Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))
        diff = np.abs(image_to_array(img, pre, (3, 16, 16)) - eval_transform(pre)(img).numpy())
        assert diff.max() <= 1.001 / 255 / 0.2


def test_arrays_are_scaled_from_the_source_range_and_reshaped() -> None:
    from lightplug.evaluation.inputs import InputReader

    pre = {"layout": "image", "in_channels": 1, "image_size": 2, "mean": [0.5], "std": [0.25], "source_range": [0, 16]}
    reader = InputReader(pre, (1, 2, 2))
    values = np.array([[[0, 4], [8, 16]]], dtype=np.float64)
    (sample,) = list(reader._arrays(values, Path("x.npy"), []))
    np.testing.assert_allclose(sample.values, [[[-2.0, -1.0], [0.0, 2.0]]])
    assert list(reader._arrays(np.zeros(5), Path("y.npy"), [])) == []
    assert reader.problems == ["y.npy: 5 values per file, but the model takes 4 per sample (1, 2, 2)"]


@pytest.fixture(scope="module")
def digits_image_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLP trained on digits as 1x8x8 images (the MLP flattens them itself)."""
    run = tmp_path_factory.mktemp("digits_img") / "run"
    r = run_cli("train", "model=mlp", "data.layout=image", "trainer.max_epochs=6", f"hydra.run.dir={run}", *QUIET, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr[-3000:]
    return run


@pytest.fixture(scope="module")
def digit_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """Digits 0-5 as 8x8 PNGs (0-255), digits 6-8 as one .npy stack (raw 0-16), 9-11 as CSV rows, one broken PNG."""
    from sklearn.datasets import load_digits

    d = load_digits()
    folder = tmp_path_factory.mktemp("inputs")
    for i in range(6):
        Image.fromarray((d.images[i] / 16 * 255).round().astype(np.uint8), mode="L").save(folder / f"d{i}.png")
    np.save(folder / "stack.npy", d.images[6:9])
    np.savetxt(folder / "rows.csv", d.data[9:12], delimiter=",", fmt="%g", header=",".join(f"p{i}" for i in range(64)), comments="")
    (folder / "broken.png").write_bytes(b"not an image at all")
    return folder, [int(t) for t in d.target[:12]]


def _read(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _in_order(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows in the order d0..d5.png, stack.npy rows, rows.csv rows."""
    def key(r: dict[str, str]) -> tuple[int, int]:
        name = Path(r["file"]).name
        return ({"stack.npy": 6, "rows.csv": 9}.get(name, int(name[1:-4]) if name.startswith("d") else 99), int(r["row"]))

    return sorted(rows, key=key)


@pytest.mark.slow
def test_predict_reads_images_arrays_and_csv_rows_and_skips_unreadable_files(digits_image_run: Path, digit_inputs: tuple[Path, list[int]],
                                                                             tmp_path: Path) -> None:
    folder, labels = digit_inputs
    out = tmp_path / "preds.csv"
    r = run_cli("predict", f"run={digits_image_run}", f"input={folder}", f"output={out}", "topk=2", "batch_size=5", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines() == [f"skipped {folder / 'broken.png'}: not a readable image (cannot identify image file "
                                             f"'{folder / 'broken.png'}')"]
    rows = _in_order(_read(out))
    assert list(rows[0]) == ["file", "row", "label_1", "confidence_1", "label_2", "confidence_2"]
    assert len(rows) == 12 and [int(r["row"]) for r in rows] == [0] * 6 + [0, 1, 2] * 2
    hits = sum(int(r["label_1"]) == t for r, t in zip(rows, labels))
    assert hits >= 10, [r["label_1"] for r in rows]
    assert all(1 >= float(r["confidence_1"]) >= float(r["confidence_2"]) >= 0 for r in rows)

    # the same digit gets the same answer as the training data's own tensor (the PNG only rounds to 256 levels)
    import lightplug
    from lightplug.data.datamodule import digits_datamodule
    from lightplug.data.plugins import DigitsConfig

    net = lightplug.load_model(digits_image_run / "checkpoints" / "best.ckpt")
    dm = digits_datamodule(DigitsConfig(layout="image"))
    split, pos = next((s, ids.index("0")) for s, ids in dm.sample_ids.items() if "0" in ids)  # row 0 of the data
    x = dm.datasets[split].inputs[pos : pos + 1]
    with torch.no_grad():
        probs = net(x).softmax(-1)[0]
    assert int(rows[0]["label_1"]) == int(probs.argmax()) and float(rows[0]["confidence_1"]) == pytest.approx(float(probs.max()), abs=2e-3)


@pytest.mark.slow
def test_predict_exits_2_when_nothing_can_be_read(digits_image_run: Path, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"junk")
    (tmp_path / "b.npy").write_bytes(b"junk")
    (tmp_path / "c.csv").write_text("x,y\nfoo,bar\n")
    r = run_cli("predict", f"run={digits_image_run}", f"input={tmp_path}", f"output={tmp_path / 'out.csv'}", env=ONE_THREAD)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()  # one line: the first reason and how many more
    assert len(lines) == 1 and lines[0].startswith(f"error: no prediction for input={tmp_path}: {tmp_path / 'a.png'}: not a readable image")
    assert lines[0].endswith("(and 2 more)"), lines
    assert not (tmp_path / "out.csv").exists()
    r = run_cli("predict", f"run={digits_image_run}", f"input={tmp_path}", "topk=0")
    assert r.returncode == 2 and "topk=0" in r.stderr


def _export_onnx(ckpt: Path, path: Path) -> dict[str, object]:
    """Write an ONNX file of a checkpoint's model with the ``lightplug.meta`` metadata (as `lightplug export` does)."""
    import onnx

    from lightplug.checkpoint import model_from_checkpoint, read_checkpoint

    loaded = read_checkpoint(ckpt)
    meta = loaded["lightplug"]
    net, _ = model_from_checkpoint(loaded)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, torch.zeros(1, 1, 8, 8), str(path), dynamo=False, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    model = onnx.load(str(path))
    described = {k: meta[k] for k in ("plugin", "task", "label_names", "preprocessing", "facts")} | {"input_shape": ["batch", 1, 8, 8]}
    prop = model.metadata_props.add()
    prop.key, prop.value = "lightplug.meta", json.dumps(described)
    onnx.save(model, str(path))
    return described


@pytest.mark.slow
def test_onnx_predictions_equal_the_checkpoint_without_importing_torch(digits_image_run: Path, digit_inputs: tuple[Path, list[int]],
                                                                       tmp_path: Path) -> None:
    folder, _ = digit_inputs
    onnx_file = tmp_path / "digits.onnx"
    _export_onnx(digits_image_run / "checkpoints" / "best.ckpt", onnx_file)
    from_ckpt, from_onnx = tmp_path / "ckpt.csv", tmp_path / "onnx.csv"
    r = run_cli("predict", f"run={digits_image_run}", f"input={folder}", f"output={from_ckpt}", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    code = ("import sys\nfrom lightplug.cli.main import main\n"
            f"rc = main(['predict', 'model={onnx_file}', 'input={folder}', 'output={from_onnx}'])\n"
            "print('HEAVY', sorted(m for m in ('torch', 'lightning', 'torchvision') if m in sys.modules))\nsys.exit(rc)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout
    assert "broken.png" in p.stderr
    a, b = _in_order(_read(from_ckpt)), _in_order(_read(from_onnx))
    assert [(x["file"], x["row"], x["label_1"], x["label_2"], x["label_3"]) for x in a] == [(y["file"], y["row"], y["label_1"], y["label_2"], y["label_3"]) for y in b]
    for x, y in zip(a, b):
        for k in ("confidence_1", "confidence_2", "confidence_3"):
            assert float(x[k]) == pytest.approx(float(y[k]), abs=1e-5)


@pytest.mark.slow
def test_onnx_file_without_lightplug_metadata_is_refused(tmp_path: Path, digit_inputs: tuple[Path, list[int]]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(torch.nn.Flatten(), torch.zeros(1, 1, 8, 8), str(tmp_path / "bare.onnx"), dynamo=False)
    r = run_cli("predict", f"model={tmp_path / 'bare.onnx'}", f"input={digit_inputs[0]}")
    assert r.returncode == 2 and "no 'lightplug.meta' metadata" in r.stderr
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    r = run_cli("predict", f"model={tmp_path / 'junk.onnx'}", f"input={digit_inputs[0]}")
    assert r.returncode == 2 and "onnxruntime cannot load it" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.slow
def test_regression_predictions_are_de_standardised(tmp_path: Path) -> None:
    from sklearn.datasets import load_diabetes

    import lightplug

    run = tmp_path / "run"
    r = run_cli("train", "model=mlp_regressor", "data=diabetes", "trainer.max_epochs=2", f"hydra.run.dir={run}", *QUIET, env=ONE_THREAD)
    assert r.returncode == 0, r.stderr[-3000:]
    data = load_diabetes()
    rows_csv = tmp_path / "patients.csv"
    with rows_csv.open("w", newline="") as f:  # columns in another order than training: picked by name
        writer = csv.writer(f)
        names = list(reversed(data.feature_names))
        writer.writerow(names)
        for x in data.data[:4]:
            writer.writerow([x[data.feature_names.index(n)] for n in names])
    out = tmp_path / "values.csv"
    r = run_cli("predict", f"run={run}", f"input={rows_csv}", f"output={out}", env=ONE_THREAD)
    assert r.returncode == 0, r.stderr
    rows = _read(out)
    assert list(rows[0]) == ["file", "row", "value"] and [r["row"] for r in rows] == ["0", "1", "2", "3"]
    net = lightplug.load_model(run / "checkpoints" / "best.ckpt")
    pre = net.lightplug_meta["preprocessing"]
    expected = net(torch.as_tensor(data.data[:4], dtype=torch.float32)).detach()[:, 0] * pre["target_std"][0] + pre["target_mean"][0]
    assert [float(r["value"]) for r in rows] == pytest.approx(expected.tolist(), rel=1e-4)


@pytest.mark.parametrize(("args", "message"), [
    (["input=no/such/folder"], "error: input=no/such/folder: no such file or folder"),
    (["input=empty"], "error: input=empty: no input file in the folder (looked for "),
    (["input=pics", "conf=2", "max_det=0"], "error: 2 problems in the config:"),
    (["input=pics", "draw=maybe"], "error: draw=maybe: expected true or false"),
])
def test_bad_arguments_are_refused_before_the_model_is_loaded(tmp_path: Path, args: list[str], message: str) -> None:
    """The checkpoint is garbage: an error about the arguments shows it was never opened (and torch never imported)."""
    garbage = tmp_path / "model.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    (tmp_path / "empty").mkdir()
    (tmp_path / "pics").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "pics" / "a.png")
    probe = ("import runpy, sys; sys.argv = ['lightplug', 'predict', *sys.argv[1:]]\n"
             "try:\n    runpy.run_module('lightplug', run_name='__main__')\n"
             "finally:\n    print('torch imported' if 'torch' in sys.modules else 'torch not imported', file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", probe, f"ckpt={garbage}", *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2, res.stderr
    assert res.stderr.splitlines()[0].startswith(message) and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.rstrip().endswith("torch not imported"), res.stderr
    if "conf=2" in args:
        assert "  conf=2: expected a number from 0 to 1" in res.stderr and "  max_det=0: expected a whole number of at least 1" in res.stderr


def test_input_under_the_home_folder_is_found_before_the_model_is_loaded(tmp_path: Path) -> None:
    """``input=~/...`` is expanded as the reader expands it: the garbage checkpoint, not the input, is refused."""
    (tmp_path / "pics").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "pics" / "a.png")
    garbage = tmp_path / "model.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    res = run_cli("predict", f"ckpt={garbage}", "input=~/pics", cwd=tmp_path, env={"HOME": str(tmp_path)})
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.startswith(f"error: checkpoint {garbage}: "), res.stderr
