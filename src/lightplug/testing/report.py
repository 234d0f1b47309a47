"""The outcome of checking a plugin: one :class:`CheckResult` per check, gathered in a :class:`CheckReport`.

Plain data, no torch: a report prints as the lines ``lightplug check-plugin`` shows and turns into JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["PASS", "FAIL", "SKIP", "CheckResult", "CheckReport", "PluginCheckFailed"]

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"


class PluginCheckFailed(AssertionError):
    """Raised by :meth:`CheckReport.raise_for_failures`; an ``AssertionError`` so pytest shows it as a failure."""


@dataclass
class CheckResult:
    """One check: its name (``forward``, ``build[preset=easy]``, ...), ``PASS``/``FAIL``/``SKIP`` and why."""

    name: str
    status: str
    reason: str
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == PASS

    @property
    def failed(self) -> bool:
        return self.status == FAIL

    def line(self, width: int = 12) -> str:
        """The line ``check-plugin`` prints, e.g. ``PASS  forward       input (4, 64) -> output (4, 10)``."""
        return f"{self.status}  {self.name.ljust(width)}  {self.reason}"


@dataclass
class CheckReport:
    """All checks of one plugin, in the order they ran.

    Example:
        >>> report = check_plugin("mlp")  # doctest: +SKIP
        >>> report.ok, [r.name for r in report.failures]  # doctest: +SKIP
        (True, [])
    """

    plugin: str
    kind: str
    results: list[CheckResult] = field(default_factory=list)
    #: where the plugin came from (``lightplug-mlp 0.1.0, lightplug_mlp:MLP``); empty when it could not be loaded
    source: str = ""
    #: the names of the checks that will run, known once the plugin is loaded
    planned: list[str] = field(default_factory=list)

    @property
    def loaded(self) -> bool:
        """Whether the plugin was found and imported (the ``load`` check passed)."""
        first = self.results[0] if self.results else None
        return first is not None and first.name == "load" and first.passed

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.failed]

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not count against it)."""
        return self.loaded and not self.failures

    def __getitem__(self, name: str) -> CheckResult:
        for r in self.results:
            if r.name == name:
                return r
        raise KeyError(f"{self.kind} {self.plugin!r} has no check named {name!r} (checks: {', '.join(self.names())})")

    def names(self) -> list[str]:
        return [r.name for r in self.results]

    def counts(self) -> dict[str, int]:
        return {s: sum(r.status == s for r in self.results) for s in (PASS, FAIL, SKIP)}

    def summary(self) -> str:
        """``7 passed, 1 failed, 1 skipped``."""
        c = self.counts()
        return f"{c[PASS]} passed, {c[FAIL]} failed, {c[SKIP]} skipped"

    def lines(self) -> list[str]:
        """One line per check, then the summary."""
        width = max((len(r.name) for r in self.results), default=8)
        return [r.line(width) for r in self.results] + [f"{self.kind} {self.plugin}: {self.summary()}"]

    def to_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "kind": self.kind, "source": self.source, "ok": self.ok, "summary": self.counts(),
                "checks": [asdict(r) for r in self.results]}

    def raise_for_failures(self) -> None:
        """Raise :class:`PluginCheckFailed` naming every failed check and its reason; do nothing when all passed.

        Raises:
            PluginCheckFailed: ``model 'x' failed 2 checks: forward: ...; backward: ...``.
        """
        if self.ok:
            return
        failed = self.failures or self.results[:1]
        details = "\n".join(f"  {r.name}: {r.reason}" for r in failed)
        noun = "check" if len(failed) == 1 else "checks"
        raise PluginCheckFailed(f"{self.kind} {self.plugin!r} failed {len(failed)} {noun}:\n{details}")
