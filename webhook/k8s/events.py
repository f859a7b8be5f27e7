"""Denials as Kubernetes Events (reason ``ImageDenied``, type Warning) on the denied object.

``denied()`` only queues: a daemon thread creates the Events, so admission never waits on the API
server. Two limits keep a crash-looping controller from flooding etcd: the same (namespace, kind,
name, message) is recorded once per ``dedupe_window`` seconds, and a token bucket bounds the rate
overall (``rate`` per second, bursts of ``burst``). What is dropped is counted and logged at debug
level; every decision stays in the JSON audit log anyway. Errors are logged, never raised.

Besides the message (the one the admission response carried), each Event carries annotations
that ``signet denials`` reads back: ``signet.dev/user`` and ``signet.dev/images`` (the per-image
records of the audit annotation: digest, policy, authority, signer, issuer, Rekor log index).
"""

from __future__ import annotations

import logging
import os
import queue
import re
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from kubernetes import client as k8s_client

from webhook.admission.outcome import ImageOutcome, clean, images_annotation
from webhook.k8s.client import api_error

_logger = logging.getLogger(__name__)

REASON: Final = "ImageDenied"
COMPONENT: Final = "signet"
MAX_MESSAGE: Final = 1024
USER_ANNOTATION: Final = "signet.dev/user"
IMAGES_ANNOTATION: Final = "signet.dev/images"
_MAX_IMAGES_ANNOTATION: Final = 16 * 1024
_NAME_UNSAFE = re.compile(r"[^a-z0-9.-]+")


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate, self._burst, self._clock = rate, float(burst), clock
        self._tokens = float(burst)
        self._last = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False


def _event_name(name: str) -> str:
    """``<object name>.<random>``, as kubectl shows Events (a valid DNS subdomain)."""
    base = _NAME_UNSAFE.sub("-", (name or "signet").lower()).strip(".-")[:200] or "signet"
    return f"{base}.{secrets.token_hex(8)}"


def _bounded(message: str) -> str:
    """One line per denied image kept (``signet denials`` splits on them), at most 1024 characters."""
    text = "\n".join(clean(line, MAX_MESSAGE) for line in message.splitlines())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


class EventRecorder:
    """Queues denials and creates the Events from a daemon thread (started on first use)."""

    def __init__(
        self,
        api_client: Any,
        *,
        namespace_default: str = "default",
        rate: float = 5.0,
        burst: int = 20,
        dedupe_window: float = 300.0,
        queue_size: int = 1000,
        instance: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._core: Any = k8s_client.CoreV1Api(api_client)
        self._namespace_default = namespace_default
        self._bucket = TokenBucket(rate, burst, clock)
        self._window = dedupe_window
        self._clock = clock
        self._instance = instance or os.environ.get("HOSTNAME") or "signet"
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=queue_size)
        self._recent: dict[tuple[str, str, str, str], float] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0  # deduplicated, over the rate, or queue full
        self.failed = 0   # the API server refused or could not be reached

    def denied(
        self,
        kind: str,
        name: str,
        namespace: str | None,
        uid: str | None,
        message: str,
        *,
        api_version: str | None = None,
        user: str | None = None,
        images: Sequence[ImageOutcome] = (),
    ) -> bool:
        """Queue an ``ImageDenied`` Event on the object; False when it was rate-limited or deduplicated.

        The object may not exist (a denied CREATE never does): the Event still names it.
        """
        namespace = namespace or self._namespace_default
        message = _bounded(message)
        key = (namespace, kind, name, message)
        with self._lock:
            now = self._clock()
            if len(self._recent) > 4096:
                self._recent = {k: t for k, t in self._recent.items() if t > now}
            if self._recent.get(key, 0.0) > now or not self._bucket.take():
                self.dropped += 1
                _logger.debug("event for %s %s/%s not recorded (rate-limited or repeated)", kind, namespace, name)
                return False
            self._recent[key] = now + self._window
            self._ensure_thread()
        body = self._body(kind, name, namespace, uid=uid, message=message, api_version=api_version, user=user,
                          images=images)
        try:
            self._queue.put_nowait(body)
        except queue.Full:
            self.dropped += 1
            _logger.warning("event queue full: denial of %s %s/%s not recorded as an Event", kind, namespace, name)
            return False
        return True

    def _body(self, kind: str, name: str, namespace: str, *, uid: str | None, message: str,
              api_version: str | None, user: str | None, images: Sequence[ImageOutcome]) -> dict[str, Any]:
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        annotations: dict[str, str] = {}
        if user:
            annotations[USER_ANNOTATION] = clean(user, 256)
        if images:
            annotations[IMAGES_ANNOTATION] = images_annotation(images, _MAX_IMAGES_ANNOTATION)
        involved: dict[str, Any] = {"kind": kind, "name": name, "namespace": namespace}
        if uid:
            involved["uid"] = uid
        if api_version:
            involved["apiVersion"] = api_version
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": _event_name(name), "namespace": namespace, "annotations": annotations},
            "involvedObject": involved,
            "reason": REASON,
            "message": message,
            "type": "Warning",
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "reportingInstance": self._instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    # --- the sender --------------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._send_loop, name="signet-events", daemon=True)
            self._thread.start()

    def _send_loop(self) -> None:
        while True:
            body = self._queue.get()
            try:
                if body is None:
                    return
                self._create(body)
            finally:
                self._queue.task_done()

    def _create(self, body: dict[str, Any]) -> None:
        namespace = body["metadata"]["namespace"]
        try:
            self._core.create_namespaced_event(namespace, body, _preload_content=False)
        except Exception as exc:  # noqa: BLE001 - an Event is best effort: log, count, go on
            self.failed += 1
            involved = body["involvedObject"]
            _logger.warning("cannot create the ImageDenied event for %s %s/%s: %s", involved["kind"], namespace,
                            involved["name"], api_error(exc))

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every queued Event was sent (for tests and shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """Send what is queued, then end the thread."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout)
