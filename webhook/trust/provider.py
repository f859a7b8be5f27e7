"""The server's current trust root: loaded once, refreshed in the background, swapped atomically.

Readers call :attr:`TrustRootProvider.current` from any thread (or the event loop): it reads
one attribute and never blocks or touches the network. A daemon worker thread runs the TUF
refresh (python-tuf is synchronous) at start and then every ``refresh_interval``; a failure
keeps the last good root and retries with exponential backoff. ``on_change`` callbacks let
caches drop verdicts computed under the old root.

Sources: ``tuf`` (fresh refresh), ``cache`` (last verified refresh, offline), ``embedded``
(shipped with Signet), ``file`` (``--trusted-root``, static), ``env`` (cosign's variables).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from webhook.errors import TrustError
from webhook.trust.tuf_client import TufClient
from webhook.verify.trustroot import TrustedRoot

_logger = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL = timedelta(hours=24)
DEFAULT_BACKOFF_INITIAL = timedelta(seconds=30)
DEFAULT_BACKOFF_MAX = timedelta(hours=1)

ChangeCallback = Callable[[TrustedRoot], None]


@dataclass(frozen=True)
class TrustRootStatus:
    """What ``/readyz`` and the metrics report about the trust root (an immutable snapshot)."""

    ready: bool
    source: str | None = None
    fingerprint: str | None = None
    loaded_at: datetime | None = None
    last_refresh_attempt: datetime | None = None
    last_refresh_success: datetime | None = None
    last_error: str | None = None
    consecutive_failures: int = 0
    next_refresh_at: datetime | None = None
    dynamic: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready form (RFC 3339 times)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat().replace("+00:00", "Z") if value else None

        return {
            "ready": self.ready,
            "source": self.source,
            "fingerprint": self.fingerprint,
            "loadedAt": iso(self.loaded_at),
            "lastRefreshAttempt": iso(self.last_refresh_attempt),
            "lastRefreshSuccess": iso(self.last_refresh_success),
            "lastError": self.last_error,
            "consecutiveFailures": self.consecutive_failures,
            "nextRefreshAt": iso(self.next_refresh_at),
            "dynamic": self.dynamic,
        }


def backoff_delay(failures: int, initial: timedelta, maximum: timedelta) -> timedelta:
    """``initial * 2**(failures-1)``, capped at ``maximum``: 30 s, 1 min, 2 min … 1 h."""
    if failures <= 0:
        return initial
    seconds = initial.total_seconds() * (2 ** min(failures - 1, 32))
    return timedelta(seconds=min(seconds, maximum.total_seconds()))


class TrustRootProvider:
    """Holds the trust root the verifier uses; see the module docstring."""

    def __init__(
        self,
        *,
        tuf_client: TufClient | None = None,
        static_root: TrustedRoot | None = None,
        static_source: str = "file",
        refresh_interval: timedelta = DEFAULT_REFRESH_INTERVAL,
        backoff_initial: timedelta = DEFAULT_BACKOFF_INITIAL,
        backoff_max: timedelta = DEFAULT_BACKOFF_MAX,
    ) -> None:
        if (tuf_client is None) == (static_root is None):
            raise ValueError("give exactly one of tuf_client and static_root")
        self._client = tuf_client
        self._interval = refresh_interval
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._callbacks: list[ChangeCallback] = []
        self._callbacks_lock = threading.Lock()
        self._refresh_lock = threading.Lock()  # one refresh at a time (worker vs refresh_now)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        # Readers get these two by plain attribute reads; writers replace them whole, which is
        # atomic in CPython, so no reader ever sees a half-updated root or status.
        self._root: TrustedRoot | None = None
        self._status = TrustRootStatus(ready=False, dynamic=tuf_client is not None)
        if static_root is not None:
            self._install(static_root, static_source)

    # -- construction ----------------------------------------------------------------------

    @classmethod
    def from_tuf(
        cls,
        client: TufClient,
        *,
        refresh_interval: timedelta = DEFAULT_REFRESH_INTERVAL,
        backoff_initial: timedelta = DEFAULT_BACKOFF_INITIAL,
        backoff_max: timedelta = DEFAULT_BACKOFF_MAX,
    ) -> TrustRootProvider:
        """Trust from a TUF mirror, refreshed in the background after :meth:`start`."""
        return cls(tuf_client=client, refresh_interval=refresh_interval,
                   backoff_initial=backoff_initial, backoff_max=backoff_max)

    @classmethod
    def from_file(cls, path: str | Path) -> TrustRootProvider:
        """``--trusted-root FILE``: a static trusted_root.json, no TUF (raises TrustError)."""
        return cls(static_root=TrustedRoot.from_file(path), static_source="file")

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, base: bytes | None = None) -> TrustRootProvider | None:
        """cosign's ``SIGSTORE_*`` variables, or None when none of them is set."""
        from webhook.trust.env_roots import trusted_root_from_env

        document = trusted_root_from_env(env, base=base)
        if document is None:
            return None
        return cls(static_root=TrustedRoot.from_json(document), static_source="env")

    # -- readers (never block) -------------------------------------------------------------

    @property
    def current(self) -> TrustedRoot:
        """The trust root to verify with; TrustError if none could be loaded yet."""
        root = self._root
        if root is None:
            raise TrustError(f"no trust root loaded yet: {self._status.last_error or 'not started'}")
        return root

    def get(self) -> TrustedRoot | None:
        """The trust root, or None before the first successful load."""
        return self._root

    def status(self) -> TrustRootStatus:
        return self._status

    @property
    def ready(self) -> bool:
        return self._root is not None

    def on_change(self, callback: ChangeCallback) -> None:
        """Call ``callback(new_root)`` (in the refresh thread) whenever the root changes."""
        with self._callbacks_lock:
            self._callbacks.append(callback)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Load the offline fallback now (no network), then refresh in a daemon thread.

        Readers have a root immediately when anything is cached or embedded; the worker
        replaces it as soon as the first TUF refresh succeeds.
        """
        if self._client is None or self._thread is not None:
            return
        if self._root is None:
            self._load_fallback()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="signet-trust-refresh", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop the worker (a refresh in progress finishes first, bounded by fetch timeouts)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def refresh_now(self) -> bool:
        """Run one TUF refresh synchronously; True on success (status records the error)."""
        if self._client is None:
            return True
        with self._refresh_lock:
            attempt = datetime.now(UTC)
            try:
                root = TrustedRoot.from_json(self._client.refresh())
            except TrustError as exc:
                failures = self._status.consecutive_failures + 1
                delay = backoff_delay(failures, self._backoff_initial, self._backoff_max)
                _logger.warning(
                    "trust root refresh failed (%d in a row, retry in %s), keeping %s root: %s",
                    failures, delay, self._status.source or "no", exc.reason,
                )
                self._status = replace(
                    self._status, last_refresh_attempt=attempt, last_error=exc.reason,
                    consecutive_failures=failures, next_refresh_at=attempt + delay,
                )
                return False
            self._install(root, "tuf")
            self._status = replace(
                self._status, last_refresh_attempt=attempt, last_refresh_success=attempt,
                last_error=None, consecutive_failures=0, next_refresh_at=attempt + self._interval,
            )
            return True

    def trigger_refresh(self) -> None:
        """Ask the worker to refresh now instead of waiting for the next scheduled time."""
        self._wake.set()

    # -- internals -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            ok = self.refresh_now()
            delay = self._interval if ok else backoff_delay(
                self._status.consecutive_failures, self._backoff_initial, self._backoff_max
            )
            self._wake.wait(delay.total_seconds())
            self._wake.clear()

    def _load_fallback(self) -> None:
        assert self._client is not None
        try:
            document, source = self._client.last_good_trusted_root()
            root = TrustedRoot.from_json(document)
        except TrustError as exc:
            _logger.warning("no offline trust root for %s: %s", self._client.mirror_url, exc.reason)
            self._status = replace(self._status, last_error=exc.reason)
            return
        _logger.warning(
            "using the %s trust root until the first TUF refresh from %s succeeds",
            source, self._client.mirror_url,
        )
        self._install(root, source)

    def _install(self, root: TrustedRoot, source: str) -> None:
        previous = self._root
        if previous is not None and previous.fingerprint == root.fingerprint:
            # Same document (e.g. the cached root confirmed by TUF): keep the object, so
            # identity-keyed caches stay warm; only the source is news.
            self._status = replace(self._status, source=source)
            return
        self._root = root
        self._status = replace(
            self._status, ready=True, source=source, fingerprint=root.fingerprint, loaded_at=datetime.now(UTC)
        )
        if previous is None:
            return
        _logger.info(
            "trust root changed: %s -> %s (%s)", previous.fingerprint[:12], root.fingerprint[:12], source
        )
        with self._callbacks_lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(root)
            except Exception:  # a broken cache hook must not stop trust refreshes
                _logger.exception("trust root on_change callback failed")
