"""Helpers for the end-to-end tests: ``signet serve`` as a subprocess with TLS, and a counting proxy."""

from __future__ import annotations

import contextlib
import http.server
import os
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx

from tests.integration.registry import free_port

PROJECT = Path(__file__).resolve().parents[2]
SIGNET = PROJECT / ".venv" / "bin" / "signet"


class SignetServer:
    """``signet serve`` on 127.0.0.1 with the given flags; ``client`` trusts ``ca``."""

    def __init__(self, workdir: Path, ca: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.stdout = workdir / "signet.stdout"
        self.stderr = workdir / "signet.stderr"
        command = [str(SIGNET), "serve", "--host", "127.0.0.1", "--port", str(self.port), *args]
        env = {**os.environ, "HOME": str(workdir), "XDG_CACHE_HOME": str(workdir / "c"),
               "XDG_DATA_HOME": str(workdir / "d")}
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen(command, stdout=out, stderr=err, env=env)
        self.client = httpx.Client(base_url=self.url, verify=ssl.create_default_context(cafile=str(ca)), timeout=30)
        started = time.monotonic()
        while time.monotonic() - started < 20:
            if self.proc.poll() is not None:
                raise RuntimeError(f"signet serve exited: {self.stderr.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if self.client.get("/readyz").status_code == 200:
                    self.startup_seconds = time.monotonic() - started
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"signet serve not ready in 20 s: {self.stderr.read_text()[-2000:]}")

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class CountingProxy:
    """A plain HTTP reverse proxy in front of a registry that records every request (method, path)."""

    def __init__(self, upstream: str) -> None:
        self.requests: list[tuple[str, str]] = []
        lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                with lock:
                    proxy.requests.append((self.command, self.path))
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                request = urllib.request.Request(upstream + self.path, data=body, method=self.command, headers=headers)
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        status, reply_headers, data = response.status, response.headers, response.read()
                except urllib.error.HTTPError as exc:
                    status, reply_headers, data = exc.code, exc.headers, exc.read()
                self.send_response(status)
                for key, value in reply_headers.items():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length", "date", "server"):
                        self.send_header(key, value)
                upstream_length = reply_headers.get("Content-Length")
                self.send_header("Content-Length", upstream_length if self.command == "HEAD" and upstream_length
                                 else str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self, fragment: str) -> int:
        return sum(fragment in path for _method, path in list(self.requests))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def counting_proxy(upstream: str) -> Iterator[CountingProxy]:
    proxy = CountingProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.stop()
