"""One client or one request cannot freeze or exhaust ``signet serve`` (issue 9, finding 4), end to end.

Real ``signet serve`` processes on 127.0.0.1, spoken to over raw sockets where the attack is in
the wire format (chunked bodies, trickled headers, connections that say nothing), with the real
registry for signed images and a socket that never answers for a hung one. Each test states the
bound it checks; the timing ones poll ``/healthz`` on their own connection while the attack runs.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.e2e.servers import SignetServer, counting_proxy
from tests.integration.registry import LocalRegistry, silent_server
from tests.sigstore_kit import SigstoreKit
from tests.unit.admission.reviews import pod_spec, review_dict, workload
from tests.unit.server.tls_certs import TestCA

SIGNER, ISSUER = "signer@example.com", "https://oidc.example"
READ_TIMEOUT = 2.0
MAX_CONNECTIONS = 16
HEALTHZ_BUDGET = 0.1

POLICIES = f"""\
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: static}}
spec:
  images: [{{glob: "registry.example.com/**"}}]
  authorities: [{{name: ok, static: {{action: pass}}}}]
---
apiVersion: policy.signet.dev/v1alpha1
kind: ClusterImagePolicy
metadata: {{name: local}}
spec:
  images: [{{glob: "127.0.0.1:*/**"}}]
  authorities:
    - name: kit
      keyless:
        identities: [{{issuer: "{ISSUER}", subject: "{SIGNER}"}}]
"""


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=1)


@pytest.fixture(scope="module")
def setup(kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("hardening")
    (work / "policies").mkdir()
    (work / "policies" / "policies.yaml").write_text(POLICIES)
    (work / "trusted_root.json").write_bytes(kit.trusted_root_json())
    return work


def flags(work: Path, *extra: str) -> list[str]:
    return ["--policies", str(work / "policies"), "--trusted-root", str(work / "trusted_root.json"),
            "--allow-http-registry", "--read-timeout", str(READ_TIMEOUT), *extra]


@contextlib.contextmanager
def started(work: Path, *args: str, **options: Any) -> Iterator[SignetServer]:
    server = SignetServer(work, None, *args, **options)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(setup: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignetServer]:
    """Plain HTTP, so the wire-level tests can write exactly the bytes they mean."""
    with started(tmp_path_factory.mktemp("plain"), *flags(setup, "--max-connections", str(MAX_CONNECTIONS),
                                                          "--deadline", "3")) as signet:
        yield signet


def review(*images: str) -> bytes:
    return orjson.dumps(review_dict(workload("Pod", pod_spec(*images))))


def static_images(count: int) -> list[str]:
    return [f"registry.example.com/team/app{i}:v1" for i in range(count)]


def connect(server: SignetServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=10)


def read_answer(sock: socket.socket, timeout: float = 10) -> tuple[bytes, float]:
    """Everything the server sends until it closes (or resets) the connection, and when that was."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
    return data, time.monotonic()


POST_HEADERS = b"POST /validate HTTP/1.1\r\nHost: signet\r\nContent-Type: application/json\r\n"


# --- the body: bounded in size, JSON values and time ---------------------------------------------------------------


def test_a_chunked_body_is_cut_at_the_limit_with_memory_bounded(server: SignetServer) -> None:
    before = server.peak_rss_kib()
    sock = connect(server)
    sock.sendall(POST_HEADERS + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    sent, answer = 0, b""
    sock.setblocking(False)
    deadline = time.monotonic() + 60
    while sent < 512 * 1024 * 1024 and time.monotonic() < deadline and b"\r\n\r\n{" not in answer:
        readable, writable, _ = select.select([sock], [sock], [], 1)
        if readable:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        elif writable:
            with contextlib.suppress(BlockingIOError):
                sent += sock.send(chunk)
    sock.setblocking(True)
    more, _ = read_answer(sock, 5)
    answer += more
    sock.close()
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    status = orjson.loads(answer.partition(b"\r\n\r\n")[2])
    assert status["code"] == 413 and "larger than the limit of 16777216 bytes" in status["message"]
    # The server stopped reading at 16 MiB (the rest never left this process), and held no more than that.
    assert sent < 64 * 1024 * 1024
    assert server.peak_rss_kib() - before < 64 * 1024, (before, server.peak_rss_kib())


def test_a_declared_oversized_body_is_refused_unread(server: SignetServer) -> None:
    sock = connect(server)
    sock.sendall(POST_HEADERS + b"Content-Length: 536870912\r\n\r\n{")
    answer, _ = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 413 ") and b"body of 536870912 bytes is larger" in answer


def test_a_body_of_countless_tiny_values_is_refused(server: SignetServer) -> None:
    body = b"[" + b"[]," * 400_000 + b"[]]"  # 1.2 MB that orjson would turn into 400,000 lists
    response = server.client.post("/validate", content=body)
    assert response.status_code == 413 and "JSON values" in response.json()["message"]


def test_headers_then_no_body_is_answered_408_after_the_read_timeout(server: SignetServer) -> None:
    sock = connect(server)
    started_at = time.monotonic()
    sock.sendall(POST_HEADERS + b"Content-Length: 100\r\n\r\n{\"apiVersion\":")
    answer, closed_at = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 ") and b"not received within 2 s" in answer
    assert READ_TIMEOUT - 0.2 < closed_at - started_at < READ_TIMEOUT + 2.5


def test_headers_trickled_forever_are_cut_off(server: SignetServer) -> None:
    sock = connect(server)
    started_at = time.monotonic()
    sock.sendall(b"POST /validate HTTP/1.1\r\n")
    with contextlib.suppress(OSError):
        for _ in range(40):  # one header byte every 0.2 s: 8 s if nobody stops it
            sock.sendall(b"X")
            time.sleep(0.2)
    answer, closed_at = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert closed_at - started_at < READ_TIMEOUT + 1.5


def test_a_connection_that_says_nothing_is_closed(server: SignetServer) -> None:
    sock = connect(server)
    started_at = time.monotonic()
    answer, closed_at = read_answer(sock)
    assert answer == b"" and READ_TIMEOUT - 0.2 < closed_at - started_at < READ_TIMEOUT + 1.5


def test_endless_headers_are_refused(server: SignetServer) -> None:
    sock = connect(server)
    with contextlib.suppress(OSError):
        sock.sendall(b"GET /healthz HTTP/1.1\r\n" + b"X-Filler: " + b"a" * (1024 * 1024))
    answer, _ = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")


def test_idle_and_slow_clients_cannot_crowd_out_admissions(server: SignetServer) -> None:
    idle = [connect(server) for _ in range(MAX_CONNECTIONS)]
    slow = [connect(server) for _ in range(MAX_CONNECTIONS)]
    for sock in slow:
        sock.sendall(POST_HEADERS + b"Content-Length: 1000\r\n\r\n{")
    time.sleep(0.3)
    try:
        with httpx.Client(base_url=server.url, timeout=5) as fresh:
            started_at = time.monotonic()
            response = fresh.post("/validate", content=review(*static_images(2)))
            assert response.status_code == 200 and response.json()["response"]["allowed"] is True
            assert time.monotonic() - started_at < 1
    finally:
        for sock in idle + slow:
            sock.close()


def test_an_answer_left_unread_drops_the_connection(server: SignetServer) -> None:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    requests = 3000
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: signet\r\n\r\n" * requests)
    time.sleep(READ_TIMEOUT + 2)  # never reading meanwhile
    received, _ = read_answer(sock, 10)
    sock.close()
    # Had the server waited for us, all 3000 answers would arrive now; it gave up after the read timeout.
    assert 0 < received.count(b"HTTP/1.1 200 ") < requests / 2
    assert server.client.get("/healthz").status_code == 200


# --- distinct images --------------------------------------------------------------------------------------------


def test_a_review_over_the_image_cap_is_denied_before_any_registry_request(server: SignetServer,
                                                                          registry: LocalRegistry) -> None:
    with counting_proxy(registry.url) as proxy:
        images = [f"{proxy.host}/hardening/many/app{i}:v1" for i in range(300)]
        started_at = time.monotonic()
        response = server.client.post("/validate", content=review(*images))
        elapsed = time.monotonic() - started_at
        answer = response.json()["response"]
        assert response.status_code == 200 and answer["allowed"] is False
        message = answer["status"]["message"]
        assert "300 distinct images" in message and "256" in message and "--max-images" in message
        assert proxy.requests == [] and elapsed < 1


def test_the_image_cap_is_a_flag(setup: Path, tmp_path: Path) -> None:
    with started(tmp_path, *flags(setup, "--max-images", "3")) as signet:
        assert signet.client.post("/validate", content=review(*static_images(3))).json()["response"]["allowed"]
        denied = signet.client.post("/validate", content=review(*static_images(4))).json()["response"]
        assert denied["allowed"] is False and "4 distinct images, more than the 3" in denied["status"]["message"]


# --- /healthz while the worst request of each kind is in flight ---------------------------------------------------


def healthz_latencies(server: SignetServer, action: Callable[[], None]) -> list[float]:
    """``action`` in this thread while another polls /healthz on its own connection every 10 ms."""
    latencies: list[float] = []
    done = threading.Event()

    def poll() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            client.get("/healthz")  # connect before the clock starts
            while not done.is_set():
                started_at = time.perf_counter()
                assert client.get("/healthz").status_code == 200
                latencies.append(time.perf_counter() - started_at)
                time.sleep(0.01)

    poller = threading.Thread(target=poll)
    poller.start()
    time.sleep(0.1)
    try:
        action()
    finally:
        time.sleep(0.05)
        done.set()
        poller.join()
    return latencies


def stays_responsive(server: SignetServer, action: Callable[[], None]) -> None:
    """Every /healthz during ``action`` under 100 ms; a run spoiled by a busy CI machine is retried twice."""
    worst: list[float] = []
    for _ in range(3):
        latencies = healthz_latencies(server, action)
        assert len(latencies) >= 3
        if max(latencies) < HEALTHZ_BUDGET:
            return
        worst.append(max(latencies))
    pytest.fail(f"/healthz took {[round(w * 1000) for w in worst]} ms at worst in three runs")


def env_review() -> bytes:
    """16 MiB of environment variables, just under the bound on JSON values (~198,000)."""
    spec = pod_spec("registry.example.com/team/app:v1")
    spec["containers"][0]["env"] = [{"name": f"VAR_{i}", "value": "x" * 220} for i in range(66_000)]
    return orjson.dumps(review_dict(workload("Pod", spec)))


def many_containers_review() -> bytes:
    """60,000 containers (the most the value bound lets through): the longest walk and patch."""
    spec = {"containers": [{"name": f"c{i}", "image": "registry.example.com/team/app:v1"} for i in range(60_000)]}
    return orjson.dumps(review_dict(workload("Pod", spec)))


def one_string_review() -> bytes:
    obj = workload("Pod", pod_spec("registry.example.com/team/app:v1"))
    obj["metadata"]["annotations"] = {"blob": "x" * (16 * 1024 * 1024 - 4096)}
    return orjson.dumps(review_dict(obj))


@pytest.mark.parametrize(("kind", "route"), [("16 MiB string", "/validate"), ("16 MiB of env", "/validate"),
                                             ("60,000 containers", "/validate"), ("60,000 containers", "/mutate")])
def test_healthz_is_fast_during_the_largest_reviews(server: SignetServer, kind: str, route: str) -> None:
    body = {"16 MiB string": one_string_review, "16 MiB of env": env_review,
            "60,000 containers": many_containers_review}[kind]()
    assert 3 * 1024 * 1024 < len(body) < 16 * 1024 * 1024

    def admit() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            response = client.post(route, content=body)
            assert response.status_code == 200 and response.json()["response"]["allowed"] is True

    stays_responsive(server, admit)


def test_healthz_is_fast_during_256_images_at_a_hung_registry(server: SignetServer) -> None:
    with silent_server() as host:
        body = review(*[f"{host}/hardening/hung/app{i}:v1" for i in range(256)])

        def admit() -> None:
            answer = server.client.post("/validate", content=body).json()["response"]
            assert answer["allowed"] is False and "256 of 256" in answer["status"]["message"]

        stays_responsive(server, admit)


def test_healthz_is_fast_during_256_signed_images(server: SignetServer, registry: LocalRegistry,
                                                  kit: SigstoreKit) -> None:
    def push(i: int) -> str:
        repo = f"hardening/signed/app{i}"
        digest = registry.push_random_image(repo, None)
        sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}", identity=SIGNER)
        registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
        return f"{registry.host}/{repo}@{digest}"

    with ThreadPoolExecutor(8) as pool:
        images = list(pool.map(push, range(256)))
    rounds = iter(range(3))

    def admit() -> None:
        # A new set of images per round would need new pushes: the first round is the cold one that counts,
        # later rounds (a retry on a busy machine) at least exercise the warm path.
        next(rounds)
        # Allowed, or not all verified within the fixture's 3 s deadline on a slow machine: either way decided.
        response = server.client.post("/validate", content=review(*images))
        assert response.status_code == 200 and response.json()["response"]["uid"]

    stays_responsive(server, admit)


def test_healthz_is_fast_during_slow_body_clients(server: SignetServer) -> None:
    def trickle() -> None:
        socks = [connect(server) for _ in range(MAX_CONNECTIONS - 2)]
        try:
            for sock in socks:
                sock.sendall(POST_HEADERS + b"Content-Length: 100000\r\n\r\n")
            for _ in range(10):
                for sock in socks:
                    sock.sendall(b" " * 10)
                time.sleep(0.1)
        finally:
            for sock in socks:
                sock.close()

    stays_responsive(server, trickle)


# --- TLS: the handshake deadline, client certificates, the metrics port ----------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("pki")
    server_ca, client_ca, stranger = TestCA("server CA"), TestCA("API server client CA"), TestCA("someone else")
    server_ca.issue(work / "tls.crt", work / "tls.key")
    client_ca.issue(work / "client.crt", work / "client.key", common_name="kube-apiserver")
    stranger.issue(work / "stranger.crt", work / "stranger.key", common_name="kube-apiserver")
    return {"ca": server_ca.write_ca(work / "ca.pem"), "client_ca": client_ca.write_ca(work / "client-ca.pem"),
            "tls.crt": work / "tls.crt", "tls.key": work / "tls.key", "client.crt": work / "client.crt",
            "client.key": work / "client.key", "stranger.crt": work / "stranger.crt",
            "stranger.key": work / "stranger.key"}


def tls_flags(pki: dict[str, Path]) -> list[str]:
    return ["--tls-cert", str(pki["tls.crt"]), "--tls-key", str(pki["tls.key"])]


def test_a_stalled_tls_handshake_is_dropped(setup: Path, pki: dict[str, Path], tmp_path: Path) -> None:
    signet = SignetServer(tmp_path, pki["ca"], *flags(setup), *tls_flags(pki))
    try:
        sock = connect(signet)
        started_at = time.monotonic()
        answer, closed_at = read_answer(sock)  # TCP connected, never a ClientHello
        assert answer == b"" and closed_at - started_at < READ_TIMEOUT + 1.5
    finally:
        signet.stop()


def test_client_certificates_and_the_metrics_port(setup: Path, pki: dict[str, Path], tmp_path: Path) -> None:
    signet = SignetServer(tmp_path, pki["ca"], *flags(setup), *tls_flags(pki), "--client-ca", str(pki["client_ca"]),
                          metrics=True, client_cert=(pki["client.crt"], pki["client.key"]))
    try:
        assert signet.client.post("/validate", content=review(*static_images(1))).json()["response"]["allowed"]
        for path in ("/healthz", "/readyz", "/metrics"):
            assert signet.client.get(path).status_code == 404  # not on the admission port
        assert signet.metrics_url is not None
        assert httpx.get(signet.metrics_url + "/healthz").json() == {"status": "ok"}
        assert "signet_admission_decisions_total" in httpx.get(signet.metrics_url + "/metrics").text
        for cert in (None, (pki["stranger.crt"], pki["stranger.key"])):
            context = ssl.create_default_context(cafile=str(pki["ca"]))
            if cert is not None:
                context.load_cert_chain(str(cert[0]), str(cert[1]))
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                httpx.post(signet.url + "/validate", content=review(*static_images(1)), verify=context, timeout=5)
    finally:
        signet.stop()


# --- SIGTERM: drained, and gone within the grace whatever is in flight ----------------------------------------------

GRACE = 3.0


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_during_a_slow_review_exits_within_the_grace(setup: Path, tmp_path: Path, workers: int) -> None:
    signet = SignetServer(tmp_path, None, *flags(setup, "--deadline", "8", "--shutdown-grace", str(GRACE),
                                                 "--workers", str(workers)))
    try:
        with silent_server() as host, ThreadPoolExecutor(4) as pool:
            pending = [pool.submit(signet.client.post, "/validate", content=review(f"{host}/hardening/hung:v{i}"))
                       for i in range(4)]
            time.sleep(0.5)
            assert not any(f.done() for f in pending)
            elapsed = signet.terminate()
            for future in pending:  # answered or cut off, never left hanging
                with contextlib.suppress(httpx.HTTPError):
                    future.result(timeout=1)
        assert elapsed < GRACE, elapsed
    finally:
        signet.stop()


@pytest.mark.parametrize(("how", "workers"), [("python", 1), ("c", 2)])
def test_sigterm_with_a_worker_stuck_in_a_request_exits_within_the_grace(tmp_path: Path, how: str,
                                                                         workers: int) -> None:
    # "python": the worker's own watchdog fires (the signal handler runs between bytecodes);
    # "c": a C call holds the GIL, no handler can run, and the supervisor SIGKILLs the worker.
    harness = [sys.executable, "-m", "tests.e2e.stuck_server", how]
    signet = SignetServer(tmp_path, None, "--shutdown-grace", str(GRACE), "--workers", str(workers),
                          command=harness)
    try:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(signet.client.post, "/validate", content=review(*static_images(1)))
            for _ in range(100):
                if f"stuck in {how}" in signet.stderr.read_text():
                    break
                time.sleep(0.05)
            assert not pending.done()
            elapsed = signet.terminate()
            with contextlib.suppress(httpx.HTTPError):
                pending.result(timeout=1)
        assert elapsed < GRACE, elapsed
        log = signet.stderr.read_text()
        if how == "python":  # the watchdog says where the worker was stuck
            assert "stuck_server.py" in log and "Timeout (0:00:02" in log
        else:
            assert "still running" in log and "killing them" in log
    finally:
        signet.stop()
