"""Every check of `lightplug check-plugin` (custom steps and two optimizers included), through the test kit."""

from lightplug.testing import PluginContract


class TestAuxLossCNNContract(PluginContract):
    plugin = "aux_loss_cnn"


class TestTwoOptimizerMLPContract(PluginContract):
    plugin = "two_optimizer_mlp"
