"""Validation, test and inference: what a run tells about its model beyond one number.

- :mod:`.callbacks`: the evaluation callbacks a run gets from its config (used by ``build_callbacks``);
- :mod:`.confusion`: the confusion matrix and per-class accuracy of classification runs (a callback);
- :mod:`.predictions` (with :mod:`.per_sample`): per-sample validation results, ``val_predictions.csv``;
- :mod:`.results`: the worst cases of a run, as a table and an image grid (``lightplug results``);
- :mod:`.evaluate`: a checkpoint on a data split (``lightplug test``);
- :mod:`.inference` (with :mod:`.inputs`): predictions for files (``lightplug predict``), through PyTorch
  or onnxruntime;
- :mod:`.options`: the ``key=value`` arguments of ``test`` and ``predict``.

Importing this package is cheap; each module imports torch, lightning or onnxruntime when it needs them.
See docs/evaluation.md for what every metric, file and column means.
"""

from __future__ import annotations

__all__: list[str] = []
