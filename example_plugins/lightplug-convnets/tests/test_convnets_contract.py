"""Every check of `lightplug check-plugin`, through the test kit: one pytest test per check."""

from lightplug.testing import PluginContract


class TestSimpleCNNContract(PluginContract):
    plugin = "simple_cnn"


class TestTinyResNetContract(PluginContract):
    plugin = "tiny_resnet"
