"""The hand-written PyTorch loop that ``detection.py`` times against ``lightplug train model=yolo``.

Same work as ``lightplug train model=yolo model.cfg=yolov8n data=shapes data.task=detection data.image_size=96``:

- the model: Ultralytics' ``DetectionModel`` (``yolov8n.yaml``, ``nc=3``) as the plugin builds it
  (``lightplug.build_model("yolo", cfg="yolov8n", num_classes=3)``: the same module, loss gains and init);
- the data: the same generated shapes, split and transforms (resize, random horizontal flip, normalisation),
  built with ``lightplug.data.shapes_data.shapes_datamodule`` and served by a plain ``DataLoader``
  (batch size 32, shuffled, the same collate: one target dict per image);
- the loss: Ultralytics' own ``model.loss(batch, preds)`` (v8DetectionLoss), its targets converted here by
  hand to Ultralytics' layout (``batch_idx``, ``cls``, normalised ``cx, cy, w, h``), summed over box, class
  and DFL and divided by the batch size, as the plugin does;
- Adam, learning rate 1e-3 (the core's default), the same torch thread count.

Each step is forward, loss, backward, ``step``, ``zero_grad``. After each epoch a validation pass runs the
model in eval mode over the validation images (forward only: no NMS, no mAP). Lightning, the logging and the
metrics are absent.

Run: ``python benchmarks/_detection_loop.py --epochs 3 --threads 1 --out steps.json``; it writes the JSON of
``_step_timer.py`` (so that ``overhead.summarize`` reads both sides the same way).
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def ultralytics_targets(targets: list[dict[str, Any]], height: int, width: int) -> dict[str, Any]:
    """One dict per image (``boxes`` K x 4 xyxy pixels, ``labels`` K) -> Ultralytics' batch layout."""
    import torch

    idx = torch.cat([torch.full((len(t["labels"]),), float(i)) for i, t in enumerate(targets)])
    cls = torch.cat([t["labels"].float() for t in targets]).view(-1, 1)
    b = torch.cat([t["boxes"].reshape(-1, 4) for t in targets])
    xywh = torch.stack(((b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 1)
    return {"batch_idx": idx, "cls": cls, "bboxes": xywh / torch.tensor([width, height, width, height], dtype=torch.float32)}


def train(epochs: int, image_size: int = 96, cfg: str = "yolov8n", lr: float = 1e-3, threads: int = 0, seed: int = 0,
          max_batches: int = 0, val_batches: int = 0, num_samples: int = 0) -> dict[str, Any]:
    """Train with a plain loop; return the timestamps (the JSON of ``_step_timer.py``).

    ``max_batches``/``val_batches`` (0: all) cut the epochs short, for smoke runs; ``num_samples`` (0: the data's
    default) generates fewer images.
    """
    import torch
    from torch.utils.data import DataLoader

    import lightplug
    from lightplug.data.detection import detection_collate
    from lightplug.data.shapes import ShapesConfig
    from lightplug.data.shapes_data import shapes_datamodule

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data_cfg = ShapesConfig(task="detection", image_size=image_size, **({"num_samples": num_samples} if num_samples else {}))
    dm = shapes_datamodule(data_cfg)
    train_loader = DataLoader(dm.datasets["train"], batch_size=data_cfg.batch_size, shuffle=True, collate_fn=detection_collate)
    val_loader = DataLoader(dm.datasets["val"], batch_size=data_cfg.batch_size, shuffle=False, collate_fn=detection_collate)
    net = lightplug.build_model("yolo", cfg=cfg, num_classes=3, in_channels=3)
    model = net.model  # the Ultralytics DetectionModel (net pads to a multiple of 32: 96 needs none)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    batches: list[tuple[int, float, float]] = []
    val: list[list[float]] = []
    first_step_wall, last_loss = None, float("nan")
    for epoch in range(epochs):
        net.train()
        for i, batch in enumerate(train_loader):
            if max_batches and i >= max_batches:
                break
            now, cpu = time.perf_counter(), time.process_time()
            if first_step_wall is None:
                first_step_wall = time.time()
            batches.append((epoch, now, cpu))
            x = batch["input"]
            preds = net(x)
            parts, _ = model.loss(ultralytics_targets(batch["target"], x.shape[-2], x.shape[-1]), preds)
            loss = parts.sum() / x.shape[0]
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            last_loss = float(loss.detach())
        v0, c0 = time.perf_counter(), time.process_time()
        net.eval()
        with torch.no_grad():
            for i, batch in enumerate(val_loader):
                if val_batches and i >= val_batches:
                    break
                net(batch["input"])
        val.append([epoch, v0, time.perf_counter(), c0, time.process_time()])
    return {"batches": batches, "val": val, "first_step_wall": first_step_wall, "fit_end": time.perf_counter(),
            "source": "raw", "last_loss": last_loss}


def main() -> None:
    """Command line: train and write the timestamps to ``--out``."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--cfg", default="yolov8n")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-batches", type=int, default=0, help="training batches per epoch (0: all)")
    p.add_argument("--val-batches", type=int, default=0, help="validation batches per epoch (0: all)")
    p.add_argument("--num-samples", type=int, default=0, help="images generated (0: the data's default, 2000)")
    p.add_argument("--out", default="steps.json")
    a = p.parse_args()
    timing = train(a.epochs, a.image_size, a.cfg, a.lr, a.threads, a.seed, a.max_batches, a.val_batches, a.num_samples)
    with open(a.out, "w") as fh:
        json.dump(timing, fh)


if __name__ == "__main__":
    main()
