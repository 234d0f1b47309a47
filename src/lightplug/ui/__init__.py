"""``lightplug ui``: a local web page that lists the plugins, renders a form from each plugin's JSON Schema,
launches ``lightplug train`` with the checked overrides and shows the runs, their curves and results.

The server (:mod:`.app`) needs the ``ui`` extra (fastapi, uvicorn); the page is plain HTML, CSS and
JavaScript in ``static/``.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args, **kwargs):  # type: ignore[no-untyped-def]
    """Build the FastAPI app; see :func:`lightplug.ui.app.create_app`."""
    from .app import create_app as _create

    return _create(*args, **kwargs)
