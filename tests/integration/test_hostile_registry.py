"""A registry that lies, redirects inside and serves too much, against the real client over real sockets.

The hostile registry and the targets it points at are plain ``http.server``s on 127.0.0.1; each
target counts the TCP connections it accepts, so "refused" means no packet reached it. Names that
must resolve inside (``intranet.test`` → 10.x, ``metadata.test`` → 169.254.169.254,
``rebind.test`` → 127.0.0.1) come from a resolver handed to the client; ``localhost`` is resolved
by the system.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from webhook.oci import (
    EgressRefusedError,
    ImageBudgetError,
    ImageNotFoundError,
    RegistryClient,
    discover_signatures,
    parse_reference,
)
from webhook.oci.egress import system_resolver

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
IMAGE_DIGEST = "sha256:" + "ab" * 32
SECRET = b"SECRET-INSTANCE-CREDENTIALS"
NAMES = {"intranet.test": ["10.20.30.40"], "metadata.test": ["169.254.169.254"], "rebind.test": ["127.0.0.1"]}


async def resolve(host: str, port: int) -> list[str]:
    return NAMES[host] if host in NAMES else await system_resolver(host, port)


# --- servers ----------------------------------------------------------------------------------


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.connections = 0

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.connections += 1  # every accepted TCP connection, whatever follows on it
        return True


Answer = tuple[int, dict[str, str], bytes | Iterator[bytes]]
Route = Callable[[str, str, dict[str, str]], Answer | None]


@dataclass
class Served:
    """A loopback HTTP server answering by ``route(method, path, headers)``; logs what it was asked."""

    route: Route
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                served.log.append(f"{self.command} {self.path}")
                answer = served.route(self.command, self.path, dict(self.headers.items()))
                status, headers, body = answer if answer is not None else (404, {}, b'{"errors":[]}')
                self.send_response(status)
                chunked = not isinstance(body, bytes)
                for name, value in headers.items():
                    self.send_header(name, value)
                if chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                elif "Content-Length" not in headers:
                    self.send_header("Content-Length", str(len(body)))  # type: ignore[arg-type]
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    if isinstance(body, bytes):
                        self.wfile.write(body)
                        return
                    for chunk in body:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass  # the client stopped reading: exactly what a bound is for

            do_GET = do_HEAD = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = _Server(Handler)
        self.port = int(self.server.server_address[1])
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def connections(self) -> int:
        return self.server.connections

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Served]:
    """What an attacker wants reached: answers everything with a secret."""
    served = Served(lambda _m, _p, _h: (200, {"Content-Type": "text/plain"}, SECRET))
    yield served
    served.stop()


@pytest.fixture
def hostile() -> Iterator[Callable[[Route], Served]]:
    started: list[Served] = []

    def start(route: Route) -> Served:
        started.append(Served(route))
        return started[-1]

    yield start
    for served in started:
        served.stop()


def client() -> RegistryClient:
    return RegistryClient(allow_http=True, resolver=resolve)


# --- redirects --------------------------------------------------------------------------------

REDIRECTS = [
    ("http://127.0.0.1:{port}/x", "127.0.0.1:{port}", "a redirect to another origin must use https"),
    ("https://127.0.0.1:{port}/x", "127.0.0.1:{port}", "127.0.0.1:{port} is a loopback address"),
    ("https://[::ffff:127.0.0.1]:{port}/x", "[::ffff:127.0.0.1]:{port}", "is a loopback address"),
    ("https://localhost:{port}/x", "localhost:{port}", "localhost resolves to"),
    ("https://rebind.test:{port}/x", "rebind.test:{port}", "rebind.test resolves to 127.0.0.1, which is a loopback"),
    ("https://intranet.test:{port}/x", "intranet.test:{port}", "resolves to 10.20.30.40, which is a private address"),
    ("https://metadata.test/latest/meta-data/", "metadata.test", "resolves to 169.254.169.254, which is a link-local"),
    ("https://169.254.169.254/latest/meta-data/", "169.254.169.254", "169.254.169.254 is a link-local address"),
    ("http://10.0.0.1/x", "10.0.0.1", "a redirect to another origin must use https"),
]


@pytest.mark.parametrize(("location", "host", "rule"), REDIRECTS)
async def test_redirects_never_reach_an_inside_target(
    hostile: Callable[[Route], Served], target: Served, location: str, host: str, rule: str
) -> None:
    where = location.format(port=target.port)
    blob = "sha256:" + "cd" * 32
    registry = hostile(lambda _m, path, _h: (302, {"Location": where}, b"") if "/blobs/" in path else None)
    async with client() as c:
        with pytest.raises(EgressRefusedError) as caught:
            await c.get_blob(parse_reference(f"{registry.host}/acme/app"), blob)
    message = str(caught.value)
    assert message.startswith(
        f"registry {registry.host} redirected GET blob {blob} of acme/app to {host.format(port=target.port)}: refused, "
    )
    assert rule.format(port=target.port) in message
    assert target.connections == 0 and target.log == []
    assert SECRET.decode() not in message
    # The target is reachable, so the count above could have been anything but zero:
    assert httpx.get(f"http://{target.host}/x").content == SECRET and target.connections == 1


@pytest.mark.parametrize("redirect_body", ["small", "endless"])
async def test_a_redirect_on_the_registry_itself_is_followed(
    hostile: Callable[[Route], Served], redirect_body: str
) -> None:
    payload = b"payload"
    digest = "sha256:" + hashlib.sha256(payload).hexdigest()

    def route(_m: str, path: str, _h: dict[str, str]) -> Answer | None:
        if path.startswith("/v2/acme/app/blobs/"):
            body: bytes | Iterator[bytes] = b"moved" if redirect_body == "small" else iter([b"x" * 65536] * 100_000)
            return 307, {"Location": f"/storage/{digest}"}, body
        return (200, {}, payload) if path.startswith("/storage/") else None

    registry = hostile(route)
    tracemalloc.start()
    try:
        async with client() as c:
            assert await c.get_blob(parse_reference(f"{registry.host}/acme/app"), digest) == payload
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert registry.log == [f"GET /v2/acme/app/blobs/{digest}", f"GET /storage/{digest}"]
    # A small redirect body is read so the connection is reused; a huge one is abandoned, not read.
    assert registry.connections == (1 if redirect_body == "small" else 2)
    assert peak < 4 * MiB


# --- token realms -----------------------------------------------------------------------------

REALMS = [
    ("https://intranet.test/token", "intranet.test", "private address"),
    ("https://metadata.test/token", "metadata.test", "link-local address"),
    ("http://localhost:{port}/token", "localhost:{port}", "a token realm to another origin must use https"),
    ("https://rebind.test:{port}/token", "rebind.test:{port}", "loopback address"),
    ("https://[::1]:{port}/token", "[::1]:{port}", "loopback address"),
]


@pytest.mark.parametrize(("realm", "host", "rule"), REALMS)
async def test_token_realms_never_reach_an_inside_target(
    hostile: Callable[[Route], Served], target: Served, realm: str, host: str, rule: str
) -> None:
    challenge = f'Bearer realm="{realm.format(port=target.port)}",service="registry"'
    registry = hostile(lambda _m, _p, _h: (401, {"WWW-Authenticate": challenge}, b""))
    async with client() as c:
        with pytest.raises(EgressRefusedError) as caught:
            await c.resolve_digest(parse_reference(f"{registry.host}/acme/app:v1"))
    assert str(caught.value).startswith(
        f"registry {registry.host} named token realm {host.format(port=target.port)}: refused, "
    )
    assert rule in str(caught.value)
    assert target.connections == 0 and len(registry.log) == 1


# --- referrers pagination ---------------------------------------------------------------------


@pytest.mark.parametrize("link", ["http://127.0.0.1:{port}/v2/acme/app/referrers/x?n=2",
                                  "https://intranet.test/v2/acme/app/referrers/x?n=2"])
async def test_referrers_pages_stay_on_the_registry(
    hostile: Callable[[Route], Served], target: Served, link: str
) -> None:
    page = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    headers = {"Content-Type": OCI_INDEX, "Link": f'<{link.format(port=target.port)}>; rel="next"'}
    registry = hostile(lambda _m, path, _h: (200, headers, page) if "/referrers/" in path else None)
    async with client() as c:
        with pytest.raises(EgressRefusedError, match=r"sent a referrers page link to .*: refused, referrers pages "
                                                      r"must stay on the registry's own origin"):
            await c.referrers(parse_reference(f"{registry.host}/acme/app"), IMAGE_DIGEST)
    assert target.connections == 0


# --- volume -----------------------------------------------------------------------------------


def _many_layers(count: int, size: int) -> bytes:
    layers = [{"mediaType": SIMPLE_SIGNING, "digest": f"sha256:{i:064x}", "size": size} for i in range(count)]
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": layers}).encode()


async def test_a_thousand_layers_of_4_mib_cost_one_budget(hostile: Callable[[Route], Served]) -> None:
    manifest = _many_layers(1000, 4 * MiB)
    chunk = b"\0" * 65536

    def route(_m: str, path: str, _h: dict[str, str]) -> Answer | None:
        if path.endswith(".sig"):
            return 200, {"Content-Type": OCI_MANIFEST}, manifest
        if "/blobs/" in path:
            return 200, {}, iter([chunk] * (4 * MiB // len(chunk)))
        return None

    registry = hostile(route)
    ref = parse_reference(f"{registry.host}/acme/app@{IMAGE_DIGEST}")
    tracemalloc.start()
    started = time.monotonic()
    try:
        async with client() as c:
            with pytest.raises(ImageBudgetError) as caught:
                await discover_signatures(c, ref)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(caught.value).startswith(f"signature data of image {ref} exceeds the budget of 16 MiB per image: ")
    blob_requests = [line for line in registry.log if "/blobs/" in line]
    assert len(blob_requests) <= 4  # 16 MiB of 4 MiB blobs, not 1000 of them
    print(f"1000 x 4 MiB layers: {len(blob_requests)} blob requests, peak {peak / MiB:.1f} MiB held")
    assert peak < 48 * MiB, f"held {peak / MiB:.0f} MiB"
    assert time.monotonic() - started < 10


# --- 404 --------------------------------------------------------------------------------------


def _not_found(code: str) -> Answer:
    return 404, {"Content-Type": "application/json"}, json.dumps({"errors": [{"code": code}]}).encode()


async def test_a_missing_image_is_a_verdict_and_missing_signatures_are_none(
    hostile: Callable[[Route], Served],
) -> None:
    registry = hostile(lambda _m, _p, _h: _not_found("MANIFEST_UNKNOWN"))
    async with client() as c:
        with pytest.raises(ImageNotFoundError) as caught:
            await c.resolve_digest(parse_reference(f"{registry.host}/acme/app:v1-typo"))
        found = await discover_signatures(c, parse_reference(f"{registry.host}/acme/app@{IMAGE_DIGEST}"))
    assert str(caught.value) == (
        f"image {registry.host}/acme/app:v1-typo does not exist (registry {registry.host} answered 404)"
    )
    assert len(found) == 0 and found.errors == []  # signature tags that 404: simply no signatures


async def test_a_missing_repository_behind_a_digestless_head_is_a_verdict(
    hostile: Callable[[Route], Served],
) -> None:
    def route(method: str, _p: str, _h: dict[str, str]) -> Answer:
        # HEAD says nothing useful (no Docker-Content-Digest); the GET that follows says NAME_UNKNOWN.
        return (200, {"Content-Type": OCI_MANIFEST}, b"") if method == "HEAD" else _not_found("NAME_UNKNOWN")

    registry = hostile(route)
    async with client() as c:
        with pytest.raises(ImageNotFoundError, match=re.escape(f"(registry {registry.host} answered 404)")):
            await c.resolve_digest(parse_reference(f"{registry.host}/nobody/here:v1"))
    assert [line.split()[0] for line in registry.log] == ["HEAD", "GET"]
