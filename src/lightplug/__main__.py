"""``python -m lightplug`` is the ``lightplug`` command."""

from lightplug.cli.main import run

if __name__ == "__main__":
    run()
