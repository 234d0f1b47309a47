"""The shell commands that README.md and docs/*.md print, read from their fenced blocks.

Used by tests/test_docs_commands.py (which runs every one of them) and by tests that run a documented command
themselves (tests/test_ddp.py), so that a test and its doc cannot drift apart.

What counts as a command (the rules are also in docs/reliability.md, "Every documented command runs"):

- Blocks fenced as ``bash``, ``sh`` or ``shell``: every line that is not empty and not a ``#`` comment is a
  command; a line ending in ``\\`` continues on the next. ``#!``/``#SBATCH`` lines are comments.
- Blocks fenced as ``console``: a transcript. ``$ `` starts a command; the lines under it are its output, which
  the run must print (in order; ``...`` stands for any text). Output that starts with ``error:`` means exit code 2.
- Blocks fenced as ``text`` (or unfenced, or any other language) are never run, and may not hold a ``$ ``
  command line: a command the reader may type belongs in a block that runs.
- ``<!-- docs-test: compose-only (REASON) -->`` on the line before a block marks commands that need hardware
  this machine lacks (GPUs, 8 devices, a SLURM cluster): each ``lightplug train`` in it runs as composition,
  ``--cfg job`` (a ``torchrun ... -m`` or ``srun`` launcher in front is dropped, ``-m`` sweeps take their first
  value), which checks every key and value without training.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ROOT", "PAGES", "Command", "Problem", "commands", "key_of", "find", "compose_form"]

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
SHELL = {"bash", "sh", "shell", "console"}
_FENCE = re.compile(r"^(\s*)```(\S*)")
_MARK = re.compile(r"<!--\s*docs-test:\s*compose-only\s*\((.+?)\)\s*-->")


@dataclass(frozen=True)
class Command:
    """One command of a page, as typed."""

    page: str  # "README.md", "docs/scaling.md"
    line: int  # its first line in the page
    text: str  # as typed; continuation lines keep their backslash-newline
    compose_reason: str | None = None  # set when the block is marked compose-only
    output: tuple[str, ...] = field(default=())  # console blocks: the output printed under it
    console: bool = False

    @property
    def key(self) -> str:
        return key_of(self.text)

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


@dataclass(frozen=True)
class Problem:
    """A block the harness refuses (a command hidden in a block that never runs)."""

    where: str
    message: str


def key_of(text: str) -> str:
    """A command on one line, without its trailing ``# comment``: what skip lists and tests name."""
    joined = re.sub(r"\\\n\s*", " ", text).strip()
    quote, out = "", []
    for i, ch in enumerate(joined):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or joined[i - 1].isspace()):
            break
        out.append(ch)
    return " ".join("".join(out).split())


def _blocks(path: Path) -> list[tuple[int, str, str | None, list[str]]]:
    """(first line number, language, compose-only reason, lines) of every fenced block of ``path``."""
    lines = path.read_text().splitlines()
    out: list[tuple[int, str, str | None, list[str]]] = []
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, lang = m.group(1), m.group(2).lower()
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        mark = _MARK.search(before)
        body, j = [], i + 1
        while j < len(lines) and not lines[j].startswith(indent + "```"):
            body.append(lines[j][len(indent):] if lines[j].startswith(indent) else lines[j])
            j += 1
        out.append((i + 2, lang, mark.group(1) if mark else None, body))
        i = j + 1
    return out


def _logical(body: list[str], start: int, console: bool) -> list[tuple[int, str, list[str]]]:
    """(line, command, output lines) of a block's commands."""
    out: list[tuple[int, str, list[str]]] = []
    k = 0
    while k < len(body):
        line = body[k]
        stripped = line.strip()
        if console and not line.startswith("$ "):
            if out:
                out[-1][2].append(line)
            k += 1
            continue
        if not console and (not stripped or stripped.startswith("#")):
            k += 1
            continue
        first, parts = k, [line[2:] if console else line]
        while parts[-1].rstrip().endswith("\\") and k + 1 < len(body):
            k += 1
            parts.append(body[k])
        out.append((start + first, "\n".join(parts), []))
        k += 1
    return out


def commands(pages: tuple[Path, ...] = PAGES) -> tuple[list[Command], list[Problem]]:
    """Every command of ``pages`` in page order, and the blocks that break the rules above."""
    found: list[Command] = []
    problems: list[Problem] = []
    for path in pages:
        page = str(path.relative_to(ROOT))
        for start, lang, reason, body in _blocks(path):
            if lang not in SHELL:
                for n, line in enumerate(body):
                    if line.startswith("$ "):
                        problems.append(Problem(f"{page}:{start + n}", f"a ```{lang or '(no language)'} block holds the command "
                                                f"{line[2:]!r}: put it in a ```bash or ```console block, which the suite runs"))
                continue
            console = lang == "console"
            for line, text, output in _logical(body, start, console):
                while output and not output[-1].strip():
                    output.pop()
                found.append(Command(page, line, text, reason, tuple(output), console))
    return found, problems


def find(key: str, page: str | None = None) -> Command:
    """The documented command whose :func:`key_of` is ``key`` (in ``page``, if given); fails when the docs lost it."""
    hits = [c for c in commands()[0] if c.key == key and (page is None or c.page == page)]
    assert hits, f"no documented command {key!r}{' in ' + page if page else ''}: the docs and this test disagree"
    return hits[0]


_TORCHRUN = re.compile(r"^torchrun\s.*?\s-m\s+lightplug\s", re.S)


def compose_form(text: str) -> str | None:
    """The composition-only form of a ``lightplug train`` command (``--cfg job``), or None for other commands."""
    one = re.sub(r"\\\n\s*", " ", text).strip()
    one = _TORCHRUN.sub("lightplug ", one)
    one = re.sub(r"^srun\s+", "", one)
    body = key_of(one)
    if not body.startswith("lightplug train "):
        return None
    words = []
    for word in shlex.split(body)[2:]:
        if word in ("-m", "--multirun"):
            continue
        key, eq, value = word.partition("=")
        if eq and "," in value and not re.search(r"[\[\](){}'\"]", value):
            word = f"{key}={value.split(',')[0]}"
        words.append(word)
    return " ".join(_quote(w) for w in ["lightplug", "train", *words, "--cfg", "job"])


def _quote(word: str) -> str:
    """``word`` for bash: as it is when it is plain (``${VAR}`` still expands), else quoted."""
    return word if re.fullmatch(r"[\w@%+=:,./{}$~-]+", word) else shlex.quote(word)
