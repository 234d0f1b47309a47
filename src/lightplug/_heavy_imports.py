"""Importing torch and Lightning for a command that trains, with the cyclic garbage collector paused.

``import torch, lightning`` (which imports torchmetrics, torchvision, scipy, matplotlib and torch._dynamo) creates
millions of objects; the collector runs about a thousand times meanwhile and finds next to nothing, a quarter
of the imports' CPU time on this project's 2-core machine (benchmarks/RESULTS.md, start-up). In a process that
only trains (the ``lightplug train`` command, not a user's own process calling :func:`lightplug.train`), the
imported objects are then frozen (``gc.freeze``): later collections and the interpreter's shutdown skip them. The
price: the few cycles the imports left as garbage (about 12,000 objects, ~10 MB) stay allocated until the process
ends. Stdlib only.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused", "import_training_stack"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block (reference counting still frees everything else)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def import_training_stack(freeze: bool = False) -> None:
    """Import torch and Lightning with the collector paused; ``freeze``: move every object alive now to the
    permanent generation (for a process that exists to train: the command line, not a library call)."""
    with gc_paused():
        import lightning  # noqa: F401 - imports torch, torchmetrics and lightning.pytorch
        import torch  # noqa: F401
    if freeze:
        gc.freeze()
