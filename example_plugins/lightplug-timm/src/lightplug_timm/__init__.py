"""Any `timm <https://github.com/huggingface/pytorch-image-models>`_ architecture as a lightplug plugin.

``lightplug train model=timm model.arch=resnet18`` builds ``timm.create_model("resnet18", pretrained=False, ...)``
with the data's channels and classes. Importing this package is cheap: timm (and torch) load when the
plugin checks or builds a config.
"""

from __future__ import annotations

from .plugin import TimmConfig, TimmModel

__all__ = ["TimmConfig", "TimmModel"]
