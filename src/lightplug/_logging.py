"""Quiet, single-copy logging for runs: Lightning's messages go through Hydra's handlers once, and the
few messages that say nothing to a lightplug user are filtered by their exact text (never blanket)."""

from __future__ import annotations

import logging
import warnings

__all__ = ["quiet_lightning"]

# Warnings that are expected in every lightplug run and that the user cannot act on.
_EXPECTED_WARNINGS = (
    r"Experiment logs directory .* exists and is not empty",  # Hydra made the run folder first
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # lightning vs. newer torch, harmless
    r"The number of training batches \(\d+\) is smaller than the logging interval",  # epoch metrics are logged anyway
)


#: Lightning's info lines that say nothing: no GPU or TPU exists (when one does, the lines stay, and Lightning's
#: "GPU available but not used" warning too).
_NOTHING_TO_SAY = frozenset({"GPU available: False, used: False", "TPU available: False, using: 0 TPU cores"})


class _DropTips(logging.Filter):
    """Lightning's advertising tips, and device lines that only say a device is absent (exact text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = str(record.msg)
        return not text.startswith("💡 Tip") and text not in _NOTHING_TO_SAY


def quiet_lightning() -> None:
    """Route Lightning's log records through the root handlers once and drop advertising tips."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        if logging.getLogger().handlers:
            for handler in list(lg.handlers):
                if type(handler) is logging.StreamHandler:
                    lg.removeHandler(handler)
            lg.propagate = True
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())
    for pattern in _EXPECTED_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
