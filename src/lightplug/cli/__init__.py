"""The command-line interface; see :func:`lightplug.cli.main.main`."""
