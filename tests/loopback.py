"""Plumbing for the small HTTP stand-ins the tests serve on 127.0.0.1."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any


class JsonHandler(http.server.BaseHTTPRequestHandler):
    """A quiet request handler that answers JSON."""

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve_in_thread(handler: type[http.server.BaseHTTPRequestHandler]) -> tuple[http.server.ThreadingHTTPServer, int]:
    """Serve ``handler`` on a free loopback port from a daemon thread; returns the server and port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, int(server.server_address[1])
