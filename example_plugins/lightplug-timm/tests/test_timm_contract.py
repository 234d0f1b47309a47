"""Every check of `lightplug check-plugin` for a small timm architecture, through the test kit."""

from lightplug.testing import PluginContract


class TestTimmContract(PluginContract):
    plugin = "timm"
    overrides = {"arch": "resnet10t"}
