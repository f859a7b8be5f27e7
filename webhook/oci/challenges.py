"""``WWW-Authenticate`` challenges (RFC 7235), parsed leniently: registries format them loosely."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge of a ``WWW-Authenticate`` header; ``scheme`` is lower case."""

    scheme: str
    params: Mapping[str, str]


_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


def parse_www_authenticate(values: str | list[str]) -> list[Challenge]:
    """Parse RFC 7235 challenges: several per header, several headers, quoted params with commas."""
    text = ", ".join(values) if isinstance(values, list) else values
    challenges: list[tuple[str, dict[str, str]]] = []
    pos, end = 0, len(text)
    while pos < end:
        if text[pos] in " \t,":
            pos += 1
            continue
        match = _TOKEN_RE.match(text, pos)
        if match is None:  # garbage: skip a character rather than give up on the rest
            pos += 1
            continue
        word, pos = match.group(0), match.end()
        probe = pos
        while probe < end and text[probe] in " \t":
            probe += 1
        if probe < end and text[probe] == "=" and challenges:
            probe += 1
            while probe < end and text[probe] in " \t":
                probe += 1
            quoted = _QUOTED_RE.match(text, probe)
            if quoted is not None:
                value, pos = re.sub(r"\\(.)", r"\1", quoted.group(1)), quoted.end()
            else:
                bare = _TOKEN_RE.match(text, probe)
                value, pos = (bare.group(0), bare.end()) if bare else ("", probe)
            challenges[-1][1][word.lower()] = value
        else:
            challenges.append((word.lower(), {}))
    return [Challenge(scheme, params) for scheme, params in challenges]
