"""A small Rekor-v1-compatible log server for tests: the signing kit's Merkle log behind the API routes Signet uses.

Routes: ``POST /api/v1/log/entries/retrieve`` (``entries`` by proposed hashedrekord, ``entryUUIDs``,
``logIndexes``), ``GET /api/v1/log/entries?logIndex=N`` and ``GET /api/v1/log/entries/{uuid}``.
Binds 127.0.0.1 on a free port; counts requests; ``fail_with`` makes every answer that status.
"""

from __future__ import annotations

import json
import urllib.parse
from typing import Any

from tests.loopback import JsonHandler, serve_in_thread
from tests.sigstore_kit.tlog import LogEntry, RekorV1Log


class RekorServer:
    def __init__(self, log: RekorV1Log) -> None:
        self.log = log
        self.requests: list[str] = []
        self.fail_with: int | None = None
        server = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                server.requests.append(f"GET {self.path}")
                if server.fail_with is not None:
                    self._send(server.fail_with, {"code": server.fail_with, "message": "boom"})
                    return
                url = urllib.parse.urlsplit(self.path)
                query = urllib.parse.parse_qs(url.query)
                if url.path == "/api/v1/log/entries" and "logIndex" in query:
                    entry = server.by_index(int(query["logIndex"][0]))
                elif url.path.startswith("/api/v1/log/entries/"):
                    entry = server.by_uuid(url.path.rsplit("/", 1)[1])
                else:
                    self._send(404, {"code": 404, "message": "no such route"})
                    return
                if entry is None:
                    self._send(404, {"code": 404, "message": "entry not found"})
                else:
                    self._send(200, server.log.api_entry(entry))

            def do_POST(self) -> None:
                server.requests.append(f"POST {self.path}")
                if server.fail_with is not None:
                    self._send(server.fail_with, {"code": server.fail_with, "message": "boom"})
                    return
                if urllib.parse.urlsplit(self.path).path != "/api/v1/log/entries/retrieve":
                    self._send(404, {"code": 404, "message": "no such route"})
                    return
                length = int(self.headers.get("Content-Length", "0"))
                query = json.loads(self.rfile.read(length) or b"{}")
                found: list[LogEntry | None] = []
                found.extend(server.by_proposed(e) for e in query.get("entries", []))
                found.extend(server.by_uuid(u) for u in query.get("entryUUIDs", []))
                found.extend(server.by_index(i) for i in query.get("logIndexes", []))
                self._send(200, [server.log.api_entry(e) for e in found if e is not None])

        self._http, port = serve_in_thread(Handler)
        self.url = f"http://127.0.0.1:{port}"

    # --- lookups --------------------------------------------------------------------------------

    def by_index(self, log_index: int) -> LogEntry | None:
        return next((e for e in self.log.entries if e.log_index == log_index), None)

    def by_uuid(self, uuid: str) -> LogEntry | None:
        return next((e for e in self.log.entries if uuid.lower().endswith(e.leaf_hash.hex())), None)

    def by_proposed(self, proposed: Any) -> LogEntry | None:
        """Match as Rekor does for hashedrekord: the same artifact hash, signature and verifier."""
        try:
            spec = proposed["spec"]
            wanted = (spec["data"]["hash"]["value"], spec["signature"]["content"],
                      spec["signature"]["publicKey"]["content"])
        except (KeyError, TypeError):
            return None
        for entry in self.log.entries:
            try:
                body = json.loads(entry.body)
                logged = body["spec"]
                have = (logged["data"]["hash"]["value"], logged["signature"]["content"],
                        logged["signature"]["publicKey"]["content"])
            except (ValueError, KeyError, TypeError):
                continue
            if body.get("kind") == "hashedrekord" and have == wanted:
                return entry
        return None

    @property
    def retrieve_count(self) -> int:
        return sum(1 for r in self.requests if r.startswith("POST /api/v1/log/entries/retrieve"))

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
