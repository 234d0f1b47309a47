"""Every check of `lightplug check-plugin` for the YOLO plugin (detection outputs), through the test kit."""

from lightplug.testing import PluginContract


class TestYoloContract(PluginContract):
    plugin = "yolo"
