"""Every check of `lightplug check-plugin` for the U-Net (segmentation outputs), through the test kit."""

from lightplug.testing import PluginContract


class TestUNetContract(PluginContract):
    plugin = "unet"
