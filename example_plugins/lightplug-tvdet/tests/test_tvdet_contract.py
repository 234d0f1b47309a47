"""Every check of `lightplug check-plugin` for the torchvision detectors, through the test kit."""

from lightplug.testing import PluginContract


class TestFcosContract(PluginContract):
    plugin = "fcos"


class TestRetinaNetContract(PluginContract):
    plugin = "retinanet"
