"""Example data and callback plugins for lightplug: ``data=csv`` and ``callbacks=[default,prediction_grid]``."""
