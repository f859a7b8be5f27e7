"""Identity regular expressions: Go's ``regexp`` syntax, run by RE2 in linear time and bounded memory.

cosign and policy-controller compile ``subjectRegExp``/``issuerRegExp`` (and cosign's
``--certificate-*-regexp`` flags) with Go's ``regexp`` and call ``MatchString``: an unanchored
search, with ASCII-only ``\\d \\w \\s \\b`` and POSIX classes, ``$`` only at the end of the text.
google-re2 is the same engine family with the same syntax and semantics; the few constructs only
RE2 C++ accepts are refused here, so that a pattern means the same thing in both places.
"""

from __future__ import annotations

import bisect
import functools
from typing import Any, Final, Literal

import re2

from webhook.errors import PolicyError

RegexpMode = Literal["full", "search"]
"""``full``: the whole value must match (policy.signet.dev). ``search``: a match anywhere (Go, cosign)."""

MAX_MEMORY: Final = 1 << 20
"""RE2's budget per pattern (program and DFA caches): a larger pattern is refused, not allocated.
Identity regexps compile to a few thousand instructions at most; 1 MiB also bounds compile time
(about 10 ms for the largest accepted pattern) and the cache below (128 MiB at worst)."""
MAX_LENGTH: Final = 4096
"""Longest pattern accepted (the CRDs allow 1024; policy-controller sets no limit). RE2's parser,
like Go's, is quadratic on some long patterns: 40,000 characters can take 0.1 s."""
MAX_NESTING: Final = 200
"""Deepest group nesting accepted. Go refuses parse trees deeper than 1000 and one group level adds
at most four nodes (capture, repetition, concatenation, alternation), so Go accepts all of these."""
_SHOWN: Final = 256
"""Text longer than this is cut in messages (policy-controller sets no length limit on patterns)."""
_ESCAPES: Final = {
    **{code: f"\\x{code:02x}" for code in [*range(0x20), *range(0x7F, 0xA0)]},
    0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r", 0x2028: "\\x{2028}", 0x2029: "\\x{2029}",
}

_LOOKAROUND = ("(?=", "(?!", "(?<=", "(?<!")
# Go refuses a repetition count of ten digits or more; RE2 reads such braces as literal text instead.
_GO_MAX_COUNT_DIGITS: Final = 10
_DIGITS: Final = frozenset("0123456789")


def _options() -> Any:
    options = re2.Options()
    options.max_mem = MAX_MEMORY
    options.never_capture = True  # only "does it match" is asked: lets RE2 answer with its DFA
    options.log_errors = False  # a refused pattern is reported to the user, not to stderr
    return options


_OPTIONS: Final = _options()


def shown(text: str) -> str:
    """A pattern or certificate value for messages: as written, control characters escaped, long text cut.

    An escaped control character reads the same to RE2 (``\\n``), and a SAN with a newline is visible.
    """
    short = text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
    return short.translate(_ESCAPES)


class Regexp:
    """A compiled identity regexp; ``describe()`` shows it as written with its mode."""

    __slots__ = ("_compiled", "mode", "pattern")

    def __init__(self, pattern: str, mode: RegexpMode, compiled: Any) -> None:
        self.pattern = pattern
        self.mode: RegexpMode = mode
        self._compiled = compiled

    def matches(self, value: str) -> bool:
        try:
            text = value.encode("utf-8")
        except UnicodeEncodeError:
            return False  # lone surrogates: not text a certificate can carry, so never a match
        found = self._compiled.fullmatch(text) if self.mode == "full" else self._compiled.search(text)
        return found is not None

    def describe(self) -> str:
        return f"{shown(self.pattern)} ({'full match' if self.mode == 'full' else 'search'})"


def compile_regexp(pattern: str, mode: RegexpMode) -> Regexp:
    """Compile ``pattern`` (Go syntax) for ``mode``; PolicyError says what is wrong with it."""
    if mode not in ("full", "search"):
        raise ValueError(f"unknown regexp mode {mode!r}")
    return Regexp(pattern, mode, _compiled(pattern))


@functools.lru_cache(maxsize=128)
def _compiled(pattern: str) -> Any:
    """RE2's program for ``pattern``, shared by both modes (verifications reuse it)."""
    if len(pattern) > MAX_LENGTH:
        raise PolicyError(f"invalid regular expression {shown(pattern)}: longer than {MAX_LENGTH} characters")
    try:
        compiled = re2.compile(pattern, _OPTIONS)
    except UnicodeEncodeError as exc:
        raise PolicyError(f"invalid regular expression {shown(pattern)}: not valid Unicode text") from exc
    except re2.error as exc:
        raise PolicyError(f"invalid regular expression {shown(pattern)}: {_explain(exc)}") from exc
    refusal = _go_refusal(pattern)
    if refusal is not None:
        raise PolicyError(f"invalid regular expression {shown(pattern)}: {refusal}")
    return compiled


def check_regexp(pattern: str) -> None:
    """Raise PolicyError unless ``pattern`` is a regexp Go and RE2 both accept (mode-independent)."""
    compile_regexp(pattern, "full")


def _explain(exc: re2.error) -> str:
    """RE2's message, with what Python or PCRE habit most likely caused it."""
    raw = exc.args[0] if exc.args else ""
    message = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    code, _, argument = message.partition(": ")
    message = shown(message)  # RE2 quotes the rest of the pattern, which may be long
    hint = None
    if code == "pattern too large - compile failed":
        return f"the pattern is too large (its compiled form would exceed {MAX_MEMORY >> 20} MiB)"
    if code == "invalid perl operator" and argument in _LOOKAROUND:
        hint = "lookahead and lookbehind are not supported by Go's regexp (RE2 syntax)"
    elif code == "invalid perl operator":
        hint = ("Go's regexp knows only (?:...), (?P<name>...), (?<name>...) and the flags i, m, s, U; "
                "no lookaround, atomic groups, conditionals, comments or x flag")
    elif code == "invalid escape sequence" and (argument[1:2].isdigit() or argument == "\\k"):
        hint = "backreferences are not supported by Go's regexp (RE2 syntax)"
    elif code == "invalid escape sequence" and argument == "\\Z":
        hint = "\\Z is not supported; \\z is the end of the text"
    elif code == "bad repetition operator":
        hint = "repetition operators cannot be stacked (no possessive quantifiers)"
    elif code == "invalid character class range" and argument[:2] in ("\\p", "\\P"):
        hint = ("unknown Unicode class; use the names RE2 knows, such as \\p{L}, \\p{Lu}, \\p{Nd} "
                "or \\p{Greek} (not long names or aliases such as \\p{Letter})")
    return f"{message} ({hint})" if hint else message


def _go_refusal(pattern: str) -> str | None:
    """What Go's regexp refuses in a pattern RE2 accepted, or None.

    Only called on patterns RE2 parsed, so the scan can rely on their syntax being valid. It is
    linear in the pattern: patterns of policy-controller documents have no length limit.
    """
    named_ends = _positions(pattern, ":]")
    depth = 0
    i, end = 0, len(pattern)
    while i < end:
        char = pattern[i]
        if char == "\\":
            following = pattern[i + 1:i + 2]
            if following == "C":
                return "\\C (any byte) is not supported by Go's regexp"
            if following == "Q":
                close = pattern.find("\\E", i + 2)
                i = end if close < 0 else close + 2
                continue
            i += 2
        elif char == "[":
            i = _class_end(pattern, i, named_ends)
        elif char == "{":
            counts = _repeat_counts(pattern, i)
            if counts is not None and max(map(len, counts)) >= _GO_MAX_COUNT_DIGITS:
                return f"repetition count {{{','.join(counts)}}} is too large"
            i += 1
        elif char == "(":
            depth += 1
            if depth > MAX_NESTING:
                return f"groups nest more than {MAX_NESTING} deep"
            name = _capture_name(pattern, i)
            if name is not None and not _ascii_word(name):
                return f"group name {name} is not supported by Go's regexp (only A-Z, a-z, 0-9 and _)"
            i += 1
        else:
            if char == ")":
                depth -= 1
            i += 1
    return None


def _positions(text: str, needle: str) -> list[int]:
    found: list[int] = []
    index = text.find(needle)
    while index >= 0:
        found.append(index)
        index = text.find(needle, index + 1)
    return found


def _class_end(pattern: str, start: int, named_ends: list[int]) -> int:
    """The index after the character class opening at ``start`` (``[]a]`` and ``[^]a]`` hold a ]).

    Like Go, ``[:`` opens a named class when ``:]`` follows anywhere later (``named_ends``).
    """
    i = start + 1
    if pattern.startswith("^", i):
        i += 1
    if pattern.startswith("]", i):
        i += 1
    while i < len(pattern) and pattern[i] != "]":
        if pattern[i] == "\\":
            i += 2
            continue
        if pattern.startswith("[:", i):
            later = bisect.bisect_left(named_ends, i + 2)
            if later < len(named_ends):
                i = named_ends[later] + 2
                continue
        i += 1
    return i + 1


def _repeat_counts(pattern: str, start: int) -> list[str] | None:
    """The counts of ``{n}``, ``{n,}`` or ``{n,m}`` at ``start``; None when Go reads literal text there."""
    counts: list[str] = []
    i = start + 1
    for _ in range(2):
        digits_end = i
        while digits_end < len(pattern) and pattern[digits_end] in _DIGITS:
            digits_end += 1
        count = pattern[i:digits_end]
        if count[:1] == "0" and len(count) > 1:
            return None  # "{01}": a leading zero makes the braces literal text, in Go as in RE2
        following = pattern[digits_end:digits_end + 1]
        if not count and not (counts and following == "}"):
            return None  # "{,3}", "{x}"
        if count:
            counts.append(count)
        if following == "}":
            return counts
        if following != "," or len(counts) == 2:
            return None
        i = digits_end + 1
    return None


def _capture_name(pattern: str, start: int) -> str | None:
    for opening in ("(?P<", "(?<"):
        if pattern.startswith(opening, start):
            close = pattern.find(">", start)
            return pattern[start + len(opening):close] if close > 0 else None
    return None


def _ascii_word(name: str) -> bool:
    return name.isascii() and name.replace("_", "a").isalnum()
