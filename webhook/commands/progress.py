"""A status line on stderr for work that takes more than a second, on a terminal only.

The line is redrawn in place (carriage return, erase to end of line) by a daemon thread, so work
with no steps of its own (one TUF refresh, one image's verification) still shows it is alive;
work with steps (many manifests) calls ``update``. Nothing is written to a pipe or a file.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TextIO

_TICK = 0.2


class Progress:
    """``with Progress(stderr, "verifying ghcr.io/acme/app:v1") as progress: ... progress.update("3/40")``."""

    def __init__(self, stream: TextIO, label: str, *, delay: float = 1.0, env: Mapping[str, str] | None = None,
                 clock: Callable[[], float] = time.monotonic, enabled: bool | None = None) -> None:
        self._stream = stream
        self._label = label
        self._status = ""
        self._delay = delay
        self._clock = clock
        # Colour follows NO_COLOR; a plain status line only needs a terminal that can redraw it.
        env = os.environ if env is None else env
        self._enabled = enabled if enabled is not None else _is_tty(stream) and env.get("TERM") != "dumb"
        self._start = clock()
        self._shown = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def update(self, status: str, label: str | None = None) -> None:
        """The current step (e.g. ``12/40 workloads``); drawn at the next tick once the delay has passed."""
        with self._lock:
            self._status = status
            if label is not None:
                self._label = label

    def __enter__(self) -> Progress:
        self._start = self._clock()
        if self._enabled:
            self._thread = threading.Thread(target=self._run, name="signet-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)
        with self._lock:
            if self._shown:
                self._write("\r\x1b[K")

    def _run(self) -> None:
        while not self._stop.wait(_TICK):
            self.draw()

    def draw(self) -> None:
        """Redraw the line now, if the work has taken longer than the delay."""
        elapsed = self._clock() - self._start
        if elapsed < self._delay or self._stop.is_set():
            return
        with self._lock:
            status = f": {self._status}" if self._status else ""
            text = f"{self._label}{status} ({elapsed:.0f}s)"
            width = shutil.get_terminal_size((80, 24)).columns
            if len(text) >= width:
                text = text[: max(width - 2, 1)] + "…"
            self._write(f"\r\x1b[K{text}")
            self._shown = True

    def _write(self, text: str) -> None:
        try:
            self._stream.write(text)
            self._stream.flush()
        except (OSError, ValueError):  # a closed terminal must not break the work itself
            self._stop.set()


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
