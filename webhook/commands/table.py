"""Aligned text tables that fit a width: the widest columns give way first, cut cells end in ``…``."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, TextIO

from webhook.admission.outcome import clean

SEPARATOR = "  "
_LAST_RESORT = 4


@dataclass(frozen=True)
class Column:
    header: str
    shrink: bool = True
    """May be cut to fit; times and counts are not."""
    cut: Literal["end", "middle"] = "end"
    """``middle`` keeps both ends (an image's registry and its tag)."""
    minimum: int = 8


def terminal_width(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> int | None:
    """``COLUMNS`` when set, else the terminal's width when ``stream`` is one; None (no limit) for a pipe."""
    env = os.environ if env is None else env
    columns = env.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    stream = stream or sys.stdout
    try:
        if stream.isatty():
            return shutil.get_terminal_size().columns
    except (AttributeError, ValueError, OSError):
        return None
    return None


def cut(text: str, width: int, how: Literal["end", "middle"] = "end") -> str:
    """``text`` in at most ``width`` characters, the cut marked with ``…``."""
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    if how == "middle":
        head = (width - 1) * 2 // 5
        return text[:head] + "…" + text[len(text) - (width - 1 - head):]
    return text[: width - 1] + "…"


def fit(columns: Sequence[Column], natural: Sequence[int], width: int | None) -> list[int]:
    """Column widths within ``width``: shrinkable columns are capped at one level, lowest that fits."""
    if width is None:
        return list(natural)
    budget = width - len(SEPARATOR) * (len(columns) - 1)
    if sum(natural) <= budget:
        return list(natural)
    floors = [n if not c.shrink else min(n, max(len(c.header), c.minimum)) for c, n in zip(columns, natural,
                                                                                             strict=True)]
    if sum(floors) > budget:  # a narrow terminal: even headers may be cut
        floors = [n if not c.shrink else min(n, _LAST_RESORT) for c, n in zip(columns, natural, strict=True)]

    def total(cap: int) -> int:
        return sum(max(f, min(n, cap)) if c.shrink else n
                   for c, n, f in zip(columns, natural, floors, strict=True))

    low, high = 0, max(natural)
    while low < high:  # the largest cap that fits
        middle = (low + high + 1) // 2
        if total(middle) <= budget:
            low = middle
        else:
            high = middle - 1
    return [max(f, min(n, low)) if c.shrink else n for c, n, f in zip(columns, natural, floors, strict=True)]


def render(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int | None,
           paint: Callable[[int, str], str] | None = None) -> list[str]:
    """Header and rows as lines; ``paint(column, padded_cell)`` may colour a cell after it was cut and padded."""
    # Cells may come from hostile input (Events anyone can create): no escape sequence reaches the terminal.
    rows = [[clean(cell, 4096) for cell in row] for row in rows]
    natural = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    widths = fit(columns, natural, width)
    lines = []
    for number, row in enumerate([[c.header for c in columns], *rows]):
        cells = []
        for index, (column, cell) in enumerate(zip(columns, row, strict=True)):
            text = cut(cell, widths[index], column.cut).ljust(widths[index])
            cells.append(paint(index, text) if paint is not None and number else text)
        lines.append(SEPARATOR.join(cells).rstrip())
    return lines
