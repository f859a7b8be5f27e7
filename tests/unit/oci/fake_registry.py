"""An in-memory OCI registry behind ``httpx.MockTransport``: the seam for unit tests of the client."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
HOST = "registry.test"

_PATH = re.compile(r"^/v2/(?P<repo>.+)/(?P<kind>manifests|blobs|referrers)/(?P<ref>[^/]+)$")


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


@dataclass
class FakeRegistry:
    """Repos of manifests/blobs; knobs for referrers support, auth, CDN redirects and faults."""

    host: str = HOST
    referrers_api: bool = False
    referrers_page_size: int = 0  # 0: one page
    auth: str | None = None  # None, "bearer" or "basic"
    credentials: tuple[str, str] | None = None
    token_lifetime: int = 300
    blob_redirects: int = 0  # hops through cdn.test before the blob
    send_digest_header: bool = True
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    blobs: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Callable[[httpx.Request], httpx.Response]] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)
    tokens_issued: int = 0

    # --- content ------------------------------------------------------------------------------

    def put_blob(self, data: bytes) -> dict[str, Any]:
        digest = digest_of(data)
        self.blobs[digest] = data
        return {"mediaType": "application/octet-stream", "digest": digest, "size": len(data)}

    def put_manifest(self, repo: str, body: bytes, media_type: str = OCI_MANIFEST, tag: str | None = None) -> str:
        digest = digest_of(body)
        self.manifests[(repo, digest)] = (body, media_type)
        if tag is not None:
            self.manifests[(repo, tag)] = (body, media_type)
        return digest

    def put_image(self, repo: str, tag: str | None = "latest", seed: bytes = b"layer") -> str:
        config = self.put_blob(b"{}")
        layer = self.put_blob(seed)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}
        return self.put_manifest(repo, dumps(manifest), tag=tag)

    def put_legacy_sig(
        self, repo: str, image: str, payloads: list[bytes], suffix: str = "sig", media_type: str = SIMPLE_SIGNING
    ) -> str:
        layers = [
            {**self.put_blob(p), "mediaType": media_type, "annotations": {"n": str(i)}} for i, p in enumerate(payloads)
        ]
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": self.put_blob(b"{}"), "layers": layers}
        return self.put_manifest(repo, dumps(manifest), tag=image.replace(":", "-") + f".{suffix}")

    def put_referrer(
        self,
        repo: str,
        subject: str,
        bundle: bytes,
        artifact_type: str = BUNDLE_V03,
        predicate: str = "https://sigstore.dev/cosign/sign/v1",
    ) -> dict[str, Any]:
        """A bundle referrer manifest; returns its descriptor (for the API or a fallback index)."""
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {**self.put_blob(b"{}"), "mediaType": "application/vnd.oci.empty.v1+json"},
            "layers": [{**self.put_blob(bundle), "mediaType": artifact_type}],
            "subject": {"mediaType": OCI_MANIFEST, "digest": subject, "size": 1},
            "annotations": {"dev.sigstore.bundle.predicateType": predicate},
        }
        body = dumps(manifest)
        digest = self.put_manifest(repo, body)
        return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(body), "artifactType": artifact_type}

    def referrers_of(self, repo: str, subject: str) -> list[dict[str, Any]]:
        found = []
        for (r, ref), (body, _) in self.manifests.items():
            if r != repo or not ref.startswith("sha256:"):
                continue
            doc = json.loads(body)
            if doc.get("subject", {}).get("digest") == subject:
                found.append(
                    {
                        "mediaType": OCI_MANIFEST,
                        "digest": ref,
                        "size": len(body),
                        "artifactType": doc.get("artifactType"),
                    }
                )
        return found

    def put_fallback_index(self, repo: str, subject: str, descriptors: list[dict[str, Any]]) -> None:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        self.put_manifest(repo, dumps(index), OCI_INDEX, tag=subject.replace(":", "-"))

    # --- HTTP ---------------------------------------------------------------------------------

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.log.append(f"{request.method} {request.url.host}{request.url.path}")
        for pattern, fault in self.faults.items():
            if pattern in str(request.url):
                return fault(request)
        if request.url.host == "auth.test":
            return self._token(request)
        if request.url.host == "cdn.test":
            return self._cdn(request)
        denied = self._check_auth(request)
        if denied is not None:
            return denied
        match = _PATH.match(request.url.path)
        if match is None:
            return httpx.Response(404, text="404 page not found")
        repo, kind, ref = match["repo"], match["kind"], match["ref"]
        if kind == "manifests":
            return self._manifest(request, repo, ref)
        if kind == "blobs":
            if ref not in self.blobs:
                return httpx.Response(404)
            if self.blob_redirects:
                return httpx.Response(307, headers={"Location": f"https://cdn.test/hop/1/{ref}"})
            return httpx.Response(200, content=self.blobs[ref])
        if not self.referrers_api:
            return httpx.Response(404, text="404 page not found")
        return self._referrers(request, repo, ref)

    def _manifest(self, request: httpx.Request, repo: str, ref: str) -> httpx.Response:
        if (repo, ref) not in self.manifests:
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        body, media_type = self.manifests[(repo, ref)]
        headers = {"Content-Type": media_type}
        if self.send_digest_header:
            headers["Docker-Content-Digest"] = digest_of(body)
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return httpx.Response(200, headers=headers)
        return httpx.Response(200, headers=headers, content=body)

    def _referrers(self, request: httpx.Request, repo: str, subject: str) -> httpx.Response:
        found = self.referrers_of(repo, subject)
        start = int(request.url.params.get("page", "0"))
        size = self.referrers_page_size or len(found) or 1
        page = found[start : start + size]
        headers = {"Content-Type": OCI_INDEX}
        if start + size < len(found):
            headers["Link"] = f'</v2/{repo}/referrers/{subject}?page={start + size}>; rel="next"'
        return httpx.Response(
            200, headers=headers, content=dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": page})
        )

    def _cdn(self, request: httpx.Request) -> httpx.Response:
        parts = request.url.path.split("/")  # /hop/<n>/<digest>
        hop, digest = int(parts[2]), parts[3]
        assert "authorization" not in request.headers, "credentials leaked to the CDN"
        if hop < self.blob_redirects:
            return httpx.Response(307, headers={"Location": f"https://cdn.test/hop/{hop + 1}/{digest}"})
        return httpx.Response(200, content=self.blobs[digest])

    def _basic(self) -> str:
        assert self.credentials is not None
        return "Basic " + base64.b64encode(":".join(self.credentials).encode()).decode()

    def _check_auth(self, request: httpx.Request) -> httpx.Response | None:
        given = request.headers.get("authorization")
        if self.auth == "basic":
            if given == self._basic():
                return None
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="fake"'})
        if self.auth == "bearer":
            if given is not None and given.startswith("Bearer tok-"):
                return None
            match = _PATH.match(request.url.path)
            scope = f"repository:{match['repo']}:pull" if match else ""
            return httpx.Response(
                401,
                headers={
                    "WWW-Authenticate": f'Bearer realm="https://auth.test/token",service="fake.test",scope="{scope}"'
                },
            )
        return None

    def _token(self, request: httpx.Request) -> httpx.Response:
        if self.credentials is not None and request.headers.get("authorization") != self._basic():
            return httpx.Response(401, json={"details": "login required"})
        self.tokens_issued += 1
        return httpx.Response(200, json={"token": f"tok-{self.tokens_issued}", "expires_in": self.token_lifetime})
