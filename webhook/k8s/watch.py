"""Keep a :class:`PolicyStore` in step with the cluster's ClusterImagePolicy, ImagePolicy and TrustRoot objects.

One daemon thread per kind runs the informer loop of client-go, in small:

1. list, remember the list's ``resourceVersion``; objects of this kind the store got from the
   cluster earlier and that the list no longer has are removed;
2. watch from that ``resourceVersion`` (with bookmarks, a server-side timeout, and a read timeout
   above it); apply ADDED/MODIFIED/DELETED, remember each event's ``resourceVersion``;
3. a watch that ends (timeout) or breaks (connection dropped, API server restarting) resumes from
   the last ``resourceVersion`` seen, after an exponential, bounded backoff when it broke;
4. 410 Gone (an HTTP 410 or an ERROR event with code 410): that version is compacted: back to 1.

While disconnected the store keeps the last policies it had: admission goes on deciding with them.
An object that cannot be enforced as written stays in force as a fail-closed stand-in that denies
its images (see ``webhook.policy.loader.fail_closed_policy``), and its status says why; the
others keep working. Objects from ``--policies DIR`` share the store under their own keys: a
cluster object never replaces or removes one of them.

With ``--watch-policy-controller``, sigstore/policy-controller's ClusterImagePolicy and TrustRoot
(``policy.sigstore.dev``, read as ``v1alpha1``, their storage version, so that no conversion
webhook is needed) are watched the same way, translated with the same meaning, keyed apart from
Signet's objects of the same name, and their ``SignetReady`` condition written. Their CRDs may be
absent (policy-controller never installed, or removed): that kind then counts as listed and empty,
and is listed again from time to time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from kubernetes import client as k8s_client
from kubernetes import watch as k8s_watch

from webhook.k8s.client import GROUP, VERSION, Backoff, api_error
from webhook.k8s.status import VALID_MESSAGE, ReadyCondition, condition_type, write_ready
from webhook.policy.groups import POLICY_CONTROLLER_GROUP, qualified_key
from webhook.policy.loader import InvalidPolicyError, load_object
from webhook.policy.matching import PolicyStore

_logger = logging.getLogger(__name__)

HTTP_GONE: Final = 410
HTTP_NOT_FOUND: Final = 404


@dataclass(frozen=True)
class WatchedKind:
    """One CRD: its kind, plural, scope and API group/version; ``optional``: its CRD may be absent."""

    kind: str
    plural: str
    namespaced: bool
    group: str = GROUP
    version: str = VERSION
    optional: bool = False

    @property
    def label(self) -> str:
        """``plural.group``, as kubectl names the resource."""
        return f"{self.plural}.{self.group}"


KINDS: Final = (
    WatchedKind("ClusterImagePolicy", "clusterimagepolicies", namespaced=False),
    WatchedKind("ImagePolicy", "imagepolicies", namespaced=True),
    WatchedKind("TrustRoot", "trustroots", namespaced=False),
)
POLICY_CONTROLLER_KINDS: Final = (
    WatchedKind("ClusterImagePolicy", "clusterimagepolicies", namespaced=False, group=POLICY_CONTROLLER_GROUP,
                optional=True),
    WatchedKind("TrustRoot", "trustroots", namespaced=False, group=POLICY_CONTROLLER_GROUP, optional=True),
)


_new_watch: Any = k8s_watch.Watch  # untyped


class _Gone(Exception):
    """The resourceVersion we hold is too old: list again."""


def object_key(kind: WatchedKind, obj: Mapping[str, Any]) -> str | None:
    """The store key of a raw object (``ImagePolicy/ns/name``, ``TrustRoot/name``,
    ``ClusterImagePolicy.policy.sigstore.dev/name``); None without a name."""
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping) or not isinstance(metadata.get("name"), str):
        return None
    if kind.kind == "ImagePolicy":
        return f"{kind.kind}/{metadata.get('namespace')}/{metadata['name']}"
    return qualified_key(kind.kind, kind.group, metadata["name"])


def _fingerprint(obj: Mapping[str, Any]) -> str:
    """What a change must alter to matter: apiVersion, generation and spec (not status, not labels)."""
    metadata = obj.get("metadata") or {}
    relevant = [obj.get("apiVersion"), metadata.get("generation"), obj.get("spec")]
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def _resource_version(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    value = metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
    return str(value) if value else None


class PolicyWatcher:
    """List + watch the policy CRDs into ``store``; ``on_change`` after every applied change.

    ``start()`` launches the threads; ``ready`` is True once every kind was listed once;
    ``stop()`` ends them. ``write_status=False`` leaves the objects' status alone (read-only RBAC).
    ``system_namespace`` is Signet's own (where policy.sigstore.dev objects may name Secrets).
    """

    def __init__(
        self,
        api_client: Any,
        store: PolicyStore,
        *,
        on_change: Callable[[], None],
        kinds: Iterable[WatchedKind] = KINDS,
        watch_timeout: int = 300,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        write_status: bool = True,
        system_namespace: str | None = None,
    ) -> None:
        self._api = api_client
        self._custom: Any = k8s_client.CustomObjectsApi(api_client)
        self._store = store
        self._on_change = on_change
        self._kinds = tuple(kinds)
        self._watch_timeout = watch_timeout
        self._backoff = (backoff_initial, backoff_max)
        self._write_status = write_status
        self._system_namespace = system_namespace
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listed: set[str] = set()
        self._ready = threading.Event()
        self._seen: dict[str, str] = {}  # key -> fingerprint of the last applied version
        self._owned: dict[str, set[str]] = {k.label: set() for k in self._kinds}  # keys we put, by kind
        self._watches: dict[str, Any] = {}
        self._threads: list[threading.Thread] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start one daemon thread per kind (idempotent)."""
        if self._threads:
            return
        for kind in self._kinds:
            thread = threading.Thread(target=self._run, args=(kind,), name=f"signet-watch-{kind.label}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching; the store keeps its policies."""
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            while thread.is_alive() and time.monotonic() < deadline:
                # Again and again: a watch whose request is still starting is not interruptible yet.
                with self._lock:
                    watches = list(self._watches.values())
                for watch in watches:
                    watch.stop()
                thread.join(0.05)

    @property
    def ready(self) -> bool:
        """True once every kind has been listed (the store then has the cluster's policies)."""
        return self._ready.is_set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until :attr:`ready` (or ``timeout``); returns :attr:`ready`."""
        return self._ready.wait(timeout)

    # --- the loop ----------------------------------------------------------------------------

    def _run(self, kind: WatchedKind) -> None:
        backoff = Backoff(*self._backoff)
        position: list[str | None] = [None]  # the last resourceVersion seen; None: list first
        while not self._stop.is_set():
            try:
                if position[0] is None:
                    position[0] = self._relist(kind)
                    backoff.reset()
                self._watch(kind, position, backoff)
            except _Gone:
                _logger.info("%s: resourceVersion %s expired (410 Gone); listing again", kind.label, position[0])
                position[0] = None
            except Exception as exc:  # noqa: BLE001 - any failure: keep the last policies, retry later
                if self._stop.is_set():
                    return
                delay = backoff.next()
                if kind.optional and getattr(exc, "status", None) == HTTP_NOT_FOUND:
                    # The CRD is not installed (or was removed): nothing of this kind is in force.
                    self._absent(kind)
                    position[0] = None
                else:
                    _logger.warning("%s: %s failed (%s); retrying in %.1fs with the last known policies in force",
                                    kind.label, "list" if position[0] is None else "watch", api_error(exc), delay)
                self._stop.wait(delay)

    def _absent(self, kind: WatchedKind) -> None:
        """An optional kind whose CRD is missing: it counts as listed, with no objects."""
        changed = False
        for key in list(self._owned[kind.label]):
            changed |= self._forget(kind, key, notify=False)
        if changed:
            self._notify()
        if kind.label not in self._listed:
            _logger.info("%s: no such resource in the cluster (CRD not installed); looking again later", kind.label)
        self._mark_listed(kind)

    def _mark_listed(self, kind: WatchedKind) -> None:
        with self._lock:
            self._listed.add(kind.label)
            if len(self._listed) == len(self._kinds):
                self._ready.set()

    def _relist(self, kind: WatchedKind) -> str:
        listing = self._custom.list_cluster_custom_object(kind.group, kind.version, kind.plural)
        items = [i for i in listing.get("items") or [] if isinstance(i, Mapping)]
        changed = False
        present: set[str] = set()
        for item in items:
            key = object_key(kind, item)
            if key is not None:
                present.add(key)
                changed |= self._apply(kind, item, notify=False)
        for key in self._owned[kind.label] - present:
            changed |= self._forget(kind, key, notify=False)
        if changed:
            self._notify()
        self._mark_listed(kind)
        _logger.info("%s: listed %d object(s)", kind.label, len(items))
        return str((listing.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, kind: WatchedKind, position: list[str | None], backoff: Backoff) -> None:
        """One watch request from ``position[0]``, which follows every event (kept when the watch breaks)."""
        watch: Any = _new_watch()
        with self._lock:
            self._watches[kind.label] = watch
        try:
            stream = watch.stream(
                self._custom.list_cluster_custom_object, kind.group, kind.version, kind.plural,
                resource_version=position[0], allow_watch_bookmarks=True,
                timeout_seconds=self._watch_timeout,
                # The server ends the watch at timeout_seconds; a silent connection beyond that is dead.
                _request_timeout=(10, self._watch_timeout + 30),
            )
            for event in stream:
                if self._stop.is_set():
                    break
                position[0] = self._handle(kind, event) or position[0]
                backoff.reset()
        except k8s_client.ApiException as exc:
            if exc.status == HTTP_GONE:
                raise _Gone from exc
            raise
        finally:
            with self._lock:
                self._watches.pop(kind.label, None)

    def _handle(self, kind: WatchedKind, event: Mapping[str, Any]) -> str | None:
        kind_of_event, obj = event.get("type"), event.get("raw_object")
        if not isinstance(obj, Mapping):
            return None
        if kind_of_event == "ERROR":  # the client raises for these; a stray one still means "start over"
            if obj.get("code") == HTTP_GONE:
                raise _Gone
            raise k8s_client.ApiException(status=obj.get("code"), reason=str(obj.get("message")))
        if kind_of_event in ("ADDED", "MODIFIED"):
            self._apply(kind, obj, notify=True)
        elif kind_of_event == "DELETED":
            key = object_key(kind, obj)
            if key is not None:
                self._forget(kind, key, notify=True)
        return _resource_version(obj)

    # --- applying ----------------------------------------------------------------------------

    def _apply(self, kind: WatchedKind, obj: Mapping[str, Any], *, notify: bool) -> bool:
        """Validate one object into the store (or out of it); True when the store changed."""
        key = object_key(kind, obj)
        if key is None:
            return False
        fingerprint = _fingerprint(obj)
        if self._seen.get(key) == fingerprint:
            return False  # only status or metadata changed (e.g. our own status write): nothing to do
        generation = (obj.get("metadata") or {}).get("generation")
        generation = generation if isinstance(generation, int) else None
        try:
            policy = load_object(obj, source="cluster", system_namespace=self._system_namespace)
        except InvalidPolicyError as exc:
            condition = self._invalid(kind, key, exc, generation)
        else:
            self._store.put(policy, "cluster")
            self._owned[kind.label].add(key)
            _logger.info("%s %s in force (generation %s)", key, "updated" if key in self._seen else "added",
                         generation)
            condition = ReadyCondition(True, VALID_MESSAGE, generation)
        self._seen[key] = fingerprint
        if self._write_status:
            condition = replace(condition, type=condition_type(kind.group))
            write_ready(self._api, kind.plural, obj, condition, group=kind.group, version=kind.version)
        if notify:
            self._notify()
        return True

    def _invalid(self, kind: WatchedKind, key: str, exc: InvalidPolicyError, generation: int | None
                 ) -> ReadyCondition:
        """What stays in force for an object that cannot be enforced as written, and its status."""
        if exc.fail_closed is not None:
            # Its images stay covered, and denied: neither a looser policy nor noMatchPolicy gets them.
            self._store.put(exc.fail_closed, "cluster")
            self._owned[kind.label].add(key)
            _logger.warning("%s cannot be enforced as written; it denies every image it covers: %s", key, exc)
            return ReadyCondition(False, f"{exc}; until this is fixed, every image it covers is denied", generation)
        if key in self._owned[kind.label]:
            # Not even its images could be read: the last version in force stays in force.
            _logger.warning("invalid edit of %s ignored, its last version stays in force: %s", key, exc)
            return ReadyCondition(False, f"{exc}; the last valid version stays in force", generation)
        _logger.warning("invalid %s names no images it could cover; not in force: %s", key, exc)
        return ReadyCondition(False, str(exc), generation)

    def _forget(self, kind: WatchedKind, key: str, *, notify: bool) -> bool:
        self._seen.pop(key, None)
        if key not in self._owned[kind.label]:
            return False  # it was invalid: not in the store
        self._owned[kind.label].discard(key)
        self._store.remove(key, "cluster")
        _logger.info("%s deleted, no longer in force", key)
        if notify:
            self._notify()
        return True

    def _notify(self) -> None:
        try:
            self._on_change()
        except Exception:
            _logger.exception("on_change callback failed")
