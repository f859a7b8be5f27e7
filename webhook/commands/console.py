"""How every command talks to its user: text or one JSON document, colour on a terminal, exit meanings.

Conventions shared by all commands (README "Command line conventions"):
- ``-o json``: stdout carries exactly one JSON object, also on errors, with ``exitCode`` and
  ``exitMeaning``; keys are camelCase, as Kubernetes writes them.
- colour and the symbols ✔ ✘ ⚠ only when the stream is a terminal and ``NO_COLOR`` is unset
  (https://no-color.org); pipes and files get plain words.
- one ``Error:`` prefix for a failure, with a ``Hint:`` line when one is known.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TextIO

EXIT_OK: Final = 0
EXIT_REJECTED: Final = 1
EXIT_USAGE: Final = 2

EXIT_MEANINGS: Final[Mapping[int, str]] = {
    EXIT_OK: "success: verified, admitted or valid",
    EXIT_REJECTED: "rejected: not verified, denied or invalid; or a registry, Rekor or TUF failure (see error)",
    EXIT_USAGE: "usage or input error: nothing was checked",
}

ErrorType = Literal["usage", "input", "verification", "infrastructure", "internal"]

# What the command line asked for, known before parsing succeeds (usage errors need it too).
REQUESTED_OUTPUT: ContextVar[str] = ContextVar("signet_output", default="text")

_STYLES: Final = {"ok": "32", "deny": "31", "warn": "33", "bold": "1", "dim": "2", "error": "1;31", "hint": "36"}
_SYMBOLS: Final = {"allow": "✔", "verified": "✔", "valid": "✔", "deny": "✘", "rejected": "✘", "error": "✘",
                   "warn": "⚠", "warning": "⚠", "skip": "-"}
_VERDICT_STYLE: Final = {"allow": "ok", "verified": "ok", "valid": "ok", "deny": "deny", "rejected": "deny",
                         "error": "deny", "warn": "warn", "warning": "warn", "skip": "dim"}


def fancy(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """Colour and symbols for ``stream``: a terminal, ``NO_COLOR`` unset, not a dumb terminal, able to encode ✔."""
    env = os.environ if env is None else env
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return False
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:
        "✔✘⚠…".encode(getattr(stream, "encoding", None) or "ascii")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


@dataclass
class Console:
    """One command's output: format, streams and what they can show."""

    output: str = "text"
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    meanings: Mapping[int, str] = field(default_factory=lambda: EXIT_MEANINGS)
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Console:
        meanings = {**EXIT_MEANINGS, **(getattr(args, "exit_meanings", None) or {})}
        return cls(output=getattr(args, "output", None) or REQUESTED_OUTPUT.get(), meanings=meanings)

    @property
    def json(self) -> bool:
        return self.output == "json"

    @property
    def color(self) -> bool:
        return fancy(self.out, self.env)

    @property
    def err_color(self) -> bool:
        return fancy(self.err, self.env)

    # -- text ------------------------------------------------------------------------------------

    def paint(self, text: str, style: str, *, stream: TextIO | None = None) -> str:
        """``text`` in ``style`` (see ``_STYLES``) when the stream shows colour, else unchanged."""
        if not fancy(stream or self.out, self.env) or style not in _STYLES:
            return text
        return f"\x1b[{_STYLES[style]}m{text}\x1b[0m"

    def shown(self, word: str) -> str:
        """What ``verdict`` shows, without colour: ``✔ allow`` on a terminal, ``allow`` in a pipe (for widths)."""
        return f"{_SYMBOLS.get(word, '')} {word}".strip() if self.color else word

    def verdict(self, word: str, width: int = 0) -> str:
        """``✔ allow`` in green on a terminal; ``allow`` in a pipe; padded to ``width`` visible characters."""
        text = self.shown(word)
        padding = " " * max(width - len(text), 0)
        return self.paint(text, _VERDICT_STYLE.get(word, "bold")) + padding

    def symbol(self, word: str) -> str:
        """The bare symbol for ``word`` on a terminal (coloured), else an empty string."""
        if not self.color or word not in _SYMBOLS:
            return ""
        return self.paint(_SYMBOLS[word], _VERDICT_STYLE.get(word, "bold"))

    def print(self, text: str = "") -> None:
        write(self.out, text + "\n")

    def note(self, text: str) -> None:
        """Something for the human at the terminal, on stderr (never mixed into stdout's data)."""
        write(self.err, text + "\n")

    # -- documents -------------------------------------------------------------------------------

    def document(self, body: Mapping[str, Any], exit_code: int) -> None:
        """The one JSON document of a ``-o json`` run: ``exitCode`` and ``exitMeaning`` first."""
        head = {"exitCode": exit_code, "exitMeaning": self.meanings.get(exit_code, EXIT_MEANINGS[EXIT_REJECTED])}
        write(self.out, json.dumps({**head, **body}, indent=2) + "\n")

    def error(self, message: str, *, exit_code: int, kind: ErrorType, hint: str | None = None,
              extra: Mapping[str, Any] | None = None, document: bool = True) -> None:
        """A failure: ``Error: …`` (and ``Hint: …``) on stderr; with ``-o json`` also the document on stdout
        (``document=False``: the command printed its own)."""
        lines = message.strip().splitlines() or ["unknown error"]
        text = f"{self.paint('Error:', 'error', stream=self.err)} {lines[0]}\n"
        text += "".join(f"  {line}\n" for line in lines[1:])
        if hint:
            text += f"{self.paint('Hint:', 'hint', stream=self.err)} {hint}\n"
        write(self.err, text)
        if self.json and document:
            error: dict[str, Any] = {"type": kind, "message": message.strip()}
            if hint:
                error["hint"] = hint
            self.document({**(extra or {}), "error": error}, exit_code)


def write(stream: TextIO, text: str) -> None:
    """Write and flush; a reader that went away (``signet denials | head``) ends the output, not the command."""
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:
        # Further writes, and the interpreter's flush at exit, go nowhere instead of failing again.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 image``, ``2 images``, ``0 policies`` (with ``plural_form``)."""
    word = singular if count == 1 else (plural_form or f"{singular}s")
    return f"{count} {word}"
