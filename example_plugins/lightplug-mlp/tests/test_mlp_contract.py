"""Every check of `lightplug check-plugin`, through the test kit: one pytest test per check."""

from lightplug.testing import PluginContract


class TestMLPContract(PluginContract):
    plugin = "mlp"


class TestMLPRegressorContract(PluginContract):
    plugin = "mlp_regressor"
