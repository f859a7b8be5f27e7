"""A loopback stand-in for the Kubernetes API server, enough for the official client's list/watch.

What it speaks (JSON over HTTP/1.1 on 127.0.0.1):
- the three Signet CRDs, and policy-controller's ClusterImagePolicy and TrustRoot (resources
  ``clusterimagepolicies.policy.sigstore.dev`` and ``trustroots.policy.sigstore.dev`` in
  ``put``; with ``pc_crds=False`` they are not installed and every request for them is a 404):
  ``GET`` lists (cluster path, and ``namespaces/{ns}/imagepolicies``) with
  ``metadata.resourceVersion``; ``?watch=1&resourceVersion=N`` streams JSON lines (chunked, like
  the real server) of ADDED/MODIFIED/DELETED, BOOKMARK on demand, and an ERROR event with code
  410 when N is older than the compaction point (or an HTTP 410 with ``gone_as_http``);
  ``PATCH .../status`` (merge patch of ``status``, bumps resourceVersion, not generation).
- core/v1: ``GET`` secrets, configmaps and serviceaccounts, ``POST``/``GET`` events, ``GET`` pods (all namespaces).
Tests drive it: ``put``/``delete`` objects (watchers see the events), ``bookmark()``,
``drop_watches()`` (closes streams abruptly), ``compact()`` (older resourceVersions become 410),
``outage`` (every request answers 503). ``announce=False`` changes state without a watch event
(as if it happened while the client was away). ``requests`` records every call.

What it does not cover: authentication and authorisation (RBAC, 401/403), field and label
selectors, pagination (``limit``/``continue``), server-side apply, strategic merge and JSON patch,
optimistic concurrency (``resourceVersion`` preconditions, 409 Conflict), CRD schema validation
and defaulting, admission, protobuf, watch-list streaming (``sendInitialEvents``), HTTP/2, TLS.
"""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
import urllib.parse
from typing import Any

from tests.loopback import JsonHandler

GROUP_PATH = "/apis/policy.signet.dev/v1alpha1"
PC_GROUP = "policy.sigstore.dev"
PLURALS = {"clusterimagepolicies": "ClusterImagePolicy", "imagepolicies": "ImagePolicy", "trustroots": "TrustRoot"}
_CRD = re.compile(r"^/apis/(?P<group>policy\.signet\.dev|policy\.sigstore\.dev)/v1alpha1"
                  r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?P<status>/status)?$")
_CORE = re.compile(r"^/api/v1(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>[a-z]+)(?:/(?P<name>[^/]+))?$")
Key = tuple[str, str, str]  # (resource, namespace or "", name)


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}


class FakeApiServer:
    """The stand-in; ``url`` is what ``kubernetes.client.Configuration(host=...)`` takes."""

    def __init__(self, *, gone_as_http: bool = False, pc_crds: bool = True) -> None:
        self.gone_as_http = gone_as_http
        self.pc_crds = pc_crds
        self.objects: dict[Key, dict[str, Any]] = {}
        self.history: list[tuple[int, str, str, dict[str, Any]]] = []  # (rv, resource, type, object)
        self.requests: list[tuple[str, str]] = []  # (method, path with query)
        self.rv = 100
        self.compacted = 0
        self.outage = False  # True: every request gets 503 (the API server is down)
        self._cond = threading.Condition()
        self._drop = 0  # generation counter: watches opened before a drop end abruptly
        self._http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._http.daemon_threads = True
        threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        port = self._http.server_address[1]
        self._http.handle_error = lambda request, client_address: None  # type: ignore[method-assign]  # resets
        self.url = f"http://127.0.0.1:{port}"

    # --- test controls ---------------------------------------------------------------------

    def put(self, resource: str, obj: dict[str, Any], *, announce: bool = True) -> dict[str, Any]:
        """Create or replace (a spec change bumps ``metadata.generation``); watchers see it if ``announce``."""
        meta = obj.setdefault("metadata", {})
        key = (resource, meta.get("namespace", ""), meta["name"])
        with self._cond:
            old = self.objects.get(key)
            generation = (old or {}).get("metadata", {}).get("generation", 0)
            if old is None or old.get("spec") != obj.get("spec"):
                generation += 1
            meta["generation"] = generation
            meta.setdefault("uid", f"uid-{meta['name']}")
            if old is not None and "status" in old and "status" not in obj:
                obj["status"] = old["status"]
            self._record(resource, "MODIFIED" if old else "ADDED", key, obj, announce=announce)
        return obj

    def delete(self, resource: str, name: str, namespace: str = "", *, announce: bool = True) -> None:
        with self._cond:
            obj = self.objects.pop((resource, namespace, name))
            self._record(resource, "DELETED", None, obj, announce=announce)

    def bookmark(self) -> None:
        with self._cond:
            self.history.append((self.rv, "*", "BOOKMARK", {"metadata": {"resourceVersion": str(self.rv)}}))
            self._cond.notify_all()

    def drop_watches(self) -> None:
        with self._cond:
            self._drop += 1
            self._cond.notify_all()

    def compact(self) -> None:
        """Forget history: a watch from an older resourceVersion gets 410 Gone; open watches are dropped."""
        with self._cond:
            self.rv += 1
            self.compacted = self.rv
            self.history.clear()
            self.drop_watches()

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p in self.requests if m == method and p.startswith(path_prefix))

    def stop(self) -> None:
        self.drop_watches()
        self._http.shutdown()
        self._http.server_close()

    # --- state -------------------------------------------------------------------------------

    def _record(self, resource: str, kind: str, key: Key | None, obj: dict[str, Any], *, announce: bool = True
                ) -> None:
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        if key is not None:
            self.objects[key] = obj
        if announce:
            self.history.append((self.rv, resource, kind, json.loads(json.dumps(obj))))
        self._cond.notify_all()

    def _list(self, resource: str, namespace: str) -> list[dict[str, Any]]:
        return [o for (r, ns, _), o in sorted(self.objects.items())
                if r == resource and (not namespace or ns == namespace)]

    # --- HTTP --------------------------------------------------------------------------------

    def _handler(self) -> type[JsonHandler]:
        server = self

        class Handler(JsonHandler):
            protocol_version = "HTTP/1.1"

            def _route(self, method: str) -> None:
                server.requests.append((method, self.path))
                if server.outage:
                    self._send(503, _status(503, "ServiceUnavailable", "the stand-in is down"))
                    return
                url = urllib.parse.urlsplit(self.path)
                query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                crd, core = _CRD.match(url.path), _CORE.match(url.path)
                match = crd or core
                if match is None:
                    self._send(404, _status(404, "NotFound", f"no route {url.path}"))
                    return
                resource = crd["plural"] if crd else match["resource"]
                if crd and crd["group"] == PC_GROUP:
                    if not server.pc_crds:
                        self._send(404, _status(404, "NotFound", "the server could not find the requested resource"))
                        return
                    resource = f"{resource}.{PC_GROUP}"
                namespace, name = match["ns"] or "", match["name"]
                if method == "GET" and name is None and query.get("watch") in ("1", "true"):
                    self._watch(resource, namespace, int(query.get("resourceVersion") or 0),
                                float(query.get("timeoutSeconds") or 60))
                elif method == "GET" and name is None:
                    with server._cond:
                        items = server._list(resource, namespace)
                        rv = str(server.rv)
                    self._send(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": rv},
                                     "items": items})
                elif method == "GET":
                    self._object(resource, namespace, name)
                elif method == "POST" and resource == "events" and isinstance(body, dict):
                    body.setdefault("metadata", {})["namespace"] = namespace
                    server.put("events", body)
                    self._send(201, body)
                elif method in ("PATCH", "PUT") and crd and crd["status"] and name and isinstance(body, dict):
                    self._patch_status(resource, namespace, name, body)
                else:
                    self._send(405, _status(405, "MethodNotAllowed", f"{method} {url.path}"))

            def _object(self, resource: str, namespace: str, name: str) -> None:
                obj = server.objects.get((resource, namespace, name))
                if obj is None:
                    self._send(404, _status(404, "NotFound", f'{resource} "{name}" not found'))
                else:
                    self._send(200, obj)

            def _patch_status(self, resource: str, namespace: str, name: str, body: dict[str, Any]) -> None:
                with server._cond:
                    obj = server.objects.get((resource, namespace, name))
                    if obj is None:
                        self._send(404, _status(404, "NotFound", f'{resource} "{name}" not found'))
                        return
                    obj["status"] = {**obj.get("status", {}), **body.get("status", {})}
                    server._record(resource, "MODIFIED", (resource, namespace, name), obj)
                    self._send(200, obj)

            def _watch(self, resource: str, namespace: str, since: int, timeout: float) -> None:
                with server._cond:  # the 410 check and the drop snapshot see the same state
                    gone = since and since < server.compacted
                    status = _status(410, "Expired", f"too old resource version: {since}")
                    if gone and server.gone_as_http:
                        self._send(410, status)
                        return
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    if gone:
                        self._chunk({"type": "ERROR", "object": status})
                        self._chunk(None)
                        return
                with server._cond:
                    drop, deadline = server._drop, time.monotonic() + timeout
                    position = next((i for i, entry in enumerate(server.history) if entry[0] > since),
                                    len(server.history))
                    while True:
                        if server._drop != drop:
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)  # abrupt: no terminating chunk
                            return
                        for _rv, res, kind, obj in server.history[position:]:
                            ns = obj.get("metadata", {}).get("namespace", "")
                            if res in (resource, "*") and (not namespace or not ns or ns == namespace):
                                self._chunk({"type": kind, "object": obj})
                        position = len(server.history)
                        if time.monotonic() >= deadline:
                            self._chunk(None)  # a clean end, as at timeoutSeconds
                            return
                        server._cond.wait(min(1.0, max(deadline - time.monotonic(), 0.01)))

            def _chunk(self, event: dict[str, Any] | None) -> None:
                data = b"" if event is None else json.dumps(event).encode() + b"\n"
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

            def do_GET(self) -> None:
                self._route("GET")

            def do_POST(self) -> None:
                self._route("POST")

            def do_PATCH(self) -> None:
                self._route("PATCH")

            def do_PUT(self) -> None:
                self._route("PUT")

        return Handler
