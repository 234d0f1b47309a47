"""The test kit's checks for a callback plugin: it loads, its schema is valid, and it builds a Lightning
callback that runs through a tiny real fit."""

from lightplug.testing import PluginContract


class TestPredictionGridContract(PluginContract):
    plugin = "prediction_grid"
    kind = "callback"
