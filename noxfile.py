"""Developer sessions: `nox -s tests`, `nox -s lint`, `nox -s typecheck`, `nox -s bench`."""

from __future__ import annotations

import glob

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The README's install (project and example plugins, not editable), then the test suite."""
    session.install(".[dev]", *sorted(glob.glob("example_plugins/*/")))
    session.run("pytest", *session.posargs, env={"WANDB_MODE": "offline", "MPLBACKEND": "Agg"})


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff on the core, the tests and the example plugins."""
    session.install("ruff>=0.5")
    session.run("ruff", "check", "src", "tests", "example_plugins", "noxfile.py")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    """mypy on src/lightplug."""
    session.install("-e", ".", "mypy>=1.10", "types-PyYAML")
    session.run("mypy", "src/lightplug")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Every benchmark in benchmarks/, writing benchmarks/RESULTS.md."""
    session.install(".[dev]", *sorted(glob.glob("example_plugins/*/")))
    session.run("python", "benchmarks/run_all.py", *session.posargs)
