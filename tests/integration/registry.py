"""A real registry for tests: Debian's ``docker-registry`` (CNCF distribution) on a free loopback port.

Variants: plain, htpasswd Basic auth, and token auth (the registry trusts JWTs signed by a test
key whose certificate it gets as ``rootcertbundle``; a small token endpoint here issues them).
Push helpers write what cosign writes: images, legacy ``.sig``/``.att`` manifests, and v3 bundle
referrers with the referrers fallback index (this registry version has no referrers API).
Everything binds to 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.loopback import JsonHandler, serve_in_thread

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
COSIGN_SIGN_PREDICATE = "https://sigstore.dev/cosign/sign/v1"

TOKEN_SERVICE = "signet-test-registry"
TOKEN_ISSUER = "signet-test-issuer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


# --- htpasswd ---------------------------------------------------------------------------------


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash for htpasswd (the only scheme the registry accepts); skips when no tool can make one.

    Tried in order: the ``bcrypt`` package, the stdlib ``crypt`` module (Python < 3.13, libxcrypt
    does bcrypt), ``htpasswd`` from apache2-utils.
    """
    with contextlib.suppress(ImportError):
        import bcrypt  # type: ignore[import-not-found,unused-ignore]

        return str(bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import crypt

            hashed = crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
            if hashed and hashed.startswith("$2"):
                return hashed
        except ImportError:
            pass
    exe = shutil.which("htpasswd")
    if exe:
        out = subprocess.run([exe, "-nbB", "-C", "4", "u", password], capture_output=True, text=True, check=True)
        return out.stdout.strip().split(":", 1)[1]
    # The test command installs bcrypt: a missing one is a broken set-up, not a reason to skip.
    raise RuntimeError("cannot make a bcrypt htpasswd: install the `bcrypt` package or apache2-utils")


# --- token auth -------------------------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class TokenIssuer:
    """Mints registry JWTs (ES256) with an ``x5c`` header the registry checks against its rootcertbundle."""

    def __init__(self, issuer: str = TOKEN_ISSUER, service: str = TOKEN_SERVICE) -> None:
        self.issuer, self.service = issuer, service
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "signet test token issuer")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def mint(self, access: list[dict[str, Any]], *, subject: str = "", lifetime: int = 300) -> str:
        header = {
            "typ": "JWT",
            "alg": "ES256",
            "x5c": [base64.b64encode(self.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + lifetime,
            "nbf": now - 10,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        der = self._key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return f"{signing_input}.{_b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def push_token(self, repository: str) -> str:
        return self.mint([{"type": "repository", "name": repository, "actions": ["pull", "push"]}])


@dataclass
class TokenServer:
    """``GET /token?service=&scope=`` on loopback; anonymous pull, or only with the given Basic credentials."""

    issuer: TokenIssuer
    credentials: tuple[str, str] | None = None
    lifetime: int = 300
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        server = self

        class Handler(JsonHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if server.credentials is not None:
                    expected = "Basic " + base64.b64encode(":".join(server.credentials).encode()).decode()
                    if self.headers.get("Authorization") != expected:
                        self._send(401, {"errors": [{"code": "UNAUTHORIZED", "message": "bad credentials"}]})
                        return
                access = []
                for scope in query.get("scope", []):
                    kind, _, rest = scope.partition(":")
                    name, _, _actions = rest.rpartition(":")
                    access.append({"type": kind, "name": name, "actions": ["pull"]})
                token = server.issuer.mint(access, lifetime=server.lifetime)
                # access_token only: some registries (and the spec's OAuth2 form) never send "token".
                self._send(200, {"access_token": token, "expires_in": server.lifetime})

        self._http, port = serve_in_thread(Handler)
        self.port = port

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()


# --- the registry -----------------------------------------------------------------------------


class LocalRegistry:
    """docker-registry in ``workdir``: open, with ``htpasswd=(user, password)``, or with ``token=TokenServer``."""

    def __init__(
        self, workdir: Path, *, htpasswd: tuple[str, str] | None = None, token: TokenServer | None = None
    ) -> None:
        exe = shutil.which("docker-registry")
        if exe is None:
            raise RuntimeError("Debian's docker-registry is not installed (scripts/test installs it)")
        self.workdir = workdir
        self.host = f"127.0.0.1:{free_port()}"
        self.url = f"http://{self.host}"
        self.htpasswd = htpasswd
        self.token = token
        config = [
            "version: 0.1",
            "log:\n  level: error",
            f"storage:\n  filesystem:\n    rootdirectory: {workdir / 'data'}\n  delete:\n    enabled: true",
            f"http:\n  addr: {self.host}",
        ]
        if htpasswd is not None:
            path = workdir / "htpasswd"
            path.write_text(f"{htpasswd[0]}:{bcrypt_hash(htpasswd[1])}\n")
            config.append(f"auth:\n  htpasswd:\n    realm: signet-test\n    path: {path}")
        if token is not None:
            bundle = workdir / "token-ca.pem"
            bundle.write_bytes(token.issuer.cert_pem)
            config.append(
                f"auth:\n  token:\n    realm: {token.realm}\n    service: {token.issuer.service}\n"
                f"    issuer: {token.issuer.issuer}\n    rootcertbundle: {bundle}"
            )
        (workdir / "config.yml").write_text("\n".join(config) + "\n")
        self._log = (workdir / "registry.log").open("wb")
        env = {**os.environ, "OTEL_TRACES_EXPORTER": "none"}
        self.proc = subprocess.Popen(
            [exe, "serve", str(workdir / "config.yml")], stdout=self._log, stderr=subprocess.STDOUT, env=env
        )
        self._http = httpx.Client(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(httpx.HTTPError):
                self._http.get(f"{self.url}/v2/")  # any answer, 401 included, means it serves
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"docker-registry did not start; log: {(workdir / 'registry.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._http.close()
        self._log.close()

    # --- pushing ------------------------------------------------------------------------------

    def _auth_headers(self, repo: str) -> dict[str, str]:
        if self.htpasswd is not None:
            return {"Authorization": "Basic " + base64.b64encode(":".join(self.htpasswd).encode()).decode()}
        if self.token is not None:
            return {"Authorization": f"Bearer {self.token.issuer.push_token(repo)}"}
        return {}

    def push_blob(self, repo: str, data: bytes) -> str:
        digest = sha256_digest(data)
        headers = self._auth_headers(repo)
        started = self._http.post(f"{self.url}/v2/{repo}/blobs/uploads/", headers=headers)
        assert started.status_code == 202, started.text
        location = httpx.URL(self.url).join(started.headers["Location"])
        done = self._http.put(
            location.copy_add_param("digest", digest),
            content=data,
            headers={**headers, "Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text
        return digest

    def push_manifest(self, repo: str, reference: str | None, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        """PUT a manifest by tag, or by its own digest when ``reference`` is None; returns its digest."""
        digest = sha256_digest(body)
        headers = {**self._auth_headers(repo), "Content-Type": media_type}
        response = self._http.put(
            f"{self.url}/v2/{repo}/manifests/{reference or digest}", content=body, headers=headers
        )
        assert response.status_code == 201, response.text
        return digest

    def _config(self, repo: str, data: bytes, media_type: str = OCI_CONFIG) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": self.push_blob(repo, data), "size": len(data)}

    def push_random_image(self, repo: str, tag: str | None = "latest") -> str:
        """A small one-layer image with random content; returns its manifest digest."""
        layer = os.urandom(64)
        config = canonical_json({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}})
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self._config(repo, config),
            "layers": [{"mediaType": OCI_LAYER, "digest": self.push_blob(repo, layer), "size": len(layer)}],
        }
        return self.push_manifest(repo, tag, canonical_json(manifest))

    def push_legacy_signature(
        self,
        repo: str,
        image_digest: str,
        layers: list[tuple[bytes, Mapping[str, str]]],
        *,
        suffix: str = "sig",
        layer_media_type: str = SIMPLE_SIGNING,
    ) -> str:
        """The ``sha256-<hex>.<suffix>`` manifest cosign writes: one layer per (payload, annotations)."""
        descriptors = [
            {
                "mediaType": layer_media_type,
                "digest": self.push_blob(repo, payload),
                "size": len(payload),
                "annotations": dict(annotations),
            }
            for payload, annotations in layers
        ]
        config = canonical_json(
            {"architecture": "", "os": "", "rootfs": {"type": "layers", "diff_ids": []}, "config": {}}
        )
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": self._config(repo, config),
            "layers": descriptors,
        }
        return self.push_manifest(repo, image_digest.replace(":", "-") + f".{suffix}", canonical_json(manifest))

    def push_bundle_referrer(
        self,
        repo: str,
        subject_digest: str,
        bundle: bytes,
        *,
        predicate_type: str = COSIGN_SIGN_PREDICATE,
        subject_media_type: str = OCI_MANIFEST,
        subject_size: int = 0,
        artifact_type: str = BUNDLE_V03,
    ) -> str:
        """A cosign v3 referrer (empty config, one bundle layer, ``subject``) plus its fallback-tag index entry."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": self._config(repo, b"{}", OCI_EMPTY),
            "layers": [{"mediaType": artifact_type, "digest": self.push_blob(repo, bundle), "size": len(bundle)}],
            "subject": {"mediaType": subject_media_type, "digest": subject_digest, "size": subject_size},
            "annotations": {
                "dev.sigstore.bundle.content": "dsse-envelope",
                "dev.sigstore.bundle.predicateType": predicate_type,
            },
        }
        body = canonical_json(manifest)
        digest = self.push_manifest(repo, None, body)
        self.add_fallback_referrer(
            repo,
            subject_digest,
            {
                "mediaType": OCI_MANIFEST,
                "digest": digest,
                "size": len(body),
                "artifactType": artifact_type,
                "annotations": manifest["annotations"],
            },
        )
        return digest

    def add_fallback_referrer(self, repo: str, subject_digest: str, descriptor: Mapping[str, Any]) -> None:
        """Append a descriptor to the ``sha256-<hex>`` referrers fallback index (as go-containerregistry does)."""
        tag = subject_digest.replace(":", "-")
        existing = self._http.get(
            f"{self.url}/v2/{repo}/manifests/{tag}", headers={**self._auth_headers(repo), "Accept": OCI_INDEX}
        )
        manifests = existing.json()["manifests"] if existing.status_code == 200 else []
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*manifests, dict(descriptor)]}
        self.push_manifest(repo, tag, canonical_json(index), OCI_INDEX)

    def blob_path(self, digest: str) -> Path:
        """Where the filesystem driver keeps a blob (manifests too): for tampering tests."""
        hex_digest = digest.split(":", 1)[1]
        return (
            self.workdir
            / "data"
            / "docker"
            / "registry"
            / "v2"
            / "blobs"
            / "sha256"
            / hex_digest[:2]
            / hex_digest
            / "data"
        )


# --- misbehaving servers ----------------------------------------------------------------------


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A socket that accepts connections and never answers: a hung registry. Yields ``host:port``."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        listener.close()


@contextlib.contextmanager
def status_server(status: int) -> Iterator[str]:
    """An HTTP server answering every request with ``status``: a broken registry. Yields ``host:port``."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> None:
            body = b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = _answer

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
