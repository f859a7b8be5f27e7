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
    """``signet serve`` on 127.0.0.1 with the given flags; ``client`` trusts ``ca`` (None: plain HTTP).

    The constructor returns once ``/readyz`` answers 200 (``wait_ready=False``: once ``/healthz``
    does, for a server expected not to become ready). ``metrics=True`` adds ``--metrics-port``
    (``metrics_url``, where those are then polled); ``client_cert`` is the (certificate, key) the
    client presents; ``command`` replaces ``signet`` (e.g. a test harness taking the same flags).
    """

    def __init__(self, workdir: Path, ca: Path | None, *args: str, wait_ready: bool = True, metrics: bool = False,
                 client_cert: tuple[Path, Path] | None = None, command: list[str] | None = None) -> None:
        self.port = free_port()
        self.url = f"{'https' if ca else 'http'}://127.0.0.1:{self.port}"
        self.stdout = workdir / "signet.stdout"
        self.stderr = workdir / "signet.stderr"
        flags = ["--host", "127.0.0.1", "--port", str(self.port), *args]
        self.metrics_url: str | None = None
        if metrics:
            metrics_port = free_port()
            self.metrics_url = f"http://127.0.0.1:{metrics_port}"
            flags += ["--metrics-port", str(metrics_port)]
        env = {**os.environ, "HOME": str(workdir), "XDG_CACHE_HOME": str(workdir / "c"),
               "XDG_DATA_HOME": str(workdir / "d")}
        with self.stdout.open("wb") as out, self.stderr.open("wb") as err:
            self.proc = subprocess.Popen([*(command or [str(SIGNET)]), "serve", *flags], stdout=out, stderr=err,
                                         env=env, cwd=PROJECT)
        verify: ssl.SSLContext | bool = False
        if ca is not None:
            verify = ssl.create_default_context(cafile=str(ca))
            if client_cert is not None:
                verify.load_cert_chain(str(client_cert[0]), str(client_cert[1]))
        self.client = httpx.Client(base_url=self.url, verify=verify, timeout=30)
        ready = httpx.Client(base_url=self.metrics_url) if self.metrics_url else self.client
        started = time.monotonic()
        try:
            while time.monotonic() - started < 20:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"signet serve exited: {self.stderr.read_text()[-2000:]}")
                with contextlib.suppress(httpx.HTTPError):
                    if ready.get("/readyz" if wait_ready else "/healthz").status_code == 200:
                        self.startup_seconds = time.monotonic() - started
                        return
                time.sleep(0.05)
        finally:
            if ready is not self.client:
                ready.close()
        self.stop()
        raise RuntimeError(f"signet serve not ready in 20 s: {self.stderr.read_text()[-2000:]}")

    def workers(self) -> list[int]:
        """The worker processes (``signet serve`` supervises its workers from the first process)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def peak_rss_kib(self) -> int:
        """The largest peak resident set (VmHWM) of the workers, in KiB."""
        peaks = []
        for pid in self.workers():
            status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            peaks.append(int(status["VmHWM"].split()[0]))
        return max(peaks)

    def terminate(self, timeout: float = 30) -> float:
        """SIGTERM, then wait for the exit (of the workers too); the seconds it took."""
        workers = self.workers()
        started = time.monotonic()
        self.proc.terminate()
        self.proc.wait(timeout)
        while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in workers):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"workers {workers} still running {timeout} s after SIGTERM")
            time.sleep(0.01)
        return time.monotonic() - started

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _state(pid: int) -> str:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("State:"):
                return line.lower()
    return "zombie"  # gone


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
