"""Online Rekor v1 lookups for signatures that carry no log evidence of their own (SIGSTORE.md §1.1, §5.1).

cosign ≤ v2 signatures pushed without the ``dev.sigstore.cosign/bundle`` annotation are looked up
as cosign does (``pkg/cosign/tlog.go`` ``FindTlogEntry``): ``POST /api/v1/log/entries/retrieve``
with the proposed hashedrekord v0.0.1 entry. The answer is only *parsed* here (the entry UUID must
end with the leaf hash of the body); the caller verifies it fully (SET, inclusion proof and
checkpoint, body consistency) before it counts.

Results, found and not found, are cached in memory (bounded, TTL) and concurrent lookups of the same
signature share one request, so a busy cluster asks Rekor once per signature. Connections are
pooled (HTTP/2 where Rekor offers it) and opened at warm-up. ``prefetch_legacy`` starts the lookups
a ``.sig`` manifest will need as soon as the manifest arrives, while its payload blobs are still
being fetched: the search key is in the layer's annotations and digest, so the lookup overlaps the
registry work instead of following it. Requests count against the process-wide
``RequestLimiter`` shared with the registry clients, and answers are read only up to
``MAX_RESPONSE_BYTES``. Rekor unreachable, timing out or failing (5xx, nonsense) is a
:class:`~webhook.errors.TransparencyLogError`: an infrastructure failure, never a silent pass.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from webhook.errors import TransparencyLogError, VerificationError
from webhook.oci.discovery import SIMPLE_SIGNING
from webhook.oci.limits import RequestLimiter
from webhook.oci.manifest import Descriptor, Manifest
from webhook.oci.pools import plain_pool
from webhook.upstreams import NULL_OBSERVER, REKOR, ObservedTransport, UpstreamObserver
from webhook.verify.cosign import (
    BUNDLE_ANNOTATION,
    CERTIFICATE_ANNOTATION,
    SIGNATURE_ANNOTATION,
    parse_certificate_annotation,
)
from webhook.verify.keys import PublicKey, spki_der
from webhook.verify.tlog import TlogEntry
from webhook.verify.trustroot import TransparencyLog, TrustedRoot

_logger = logging.getLogger(__name__)

LOG_PATH = "/api/v1/log"
RETRIEVE_PATH = "/api/v1/log/entries/retrieve"
ENTRIES_PATH = "/api/v1/log/entries"
MAX_RESPONSE_BYTES = 4 * 1024 * 1024
MAX_PREFETCH_LAYERS = 8  # a manifest listing a thousand layers does not get a thousand lookups ahead of time
MAX_PREFETCHING = 256


def _pem(verifier: x509.Certificate | PublicKey) -> bytes:
    if isinstance(verifier, x509.Certificate):
        return verifier.public_bytes(serialization.Encoding.PEM)
    return verifier.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def proposed_hashedrekord(signature: bytes, verifier: x509.Certificate | PublicKey, payload_digest: bytes,
                          algorithm: str = "sha256") -> dict[str, Any]:
    """The hashedrekord v0.0.1 entry Rekor would have logged for this signature (the search key)."""
    return {
        "apiVersion": "0.0.1",
        "kind": "hashedrekord",
        "spec": {
            "data": {"hash": {"algorithm": algorithm, "value": payload_digest.hex()}},
            "signature": {
                "content": base64.b64encode(signature).decode(),
                "publicKey": {"content": base64.b64encode(_pem(verifier)).decode()},
            },
        },
    }


def rekor_v1_url(trusted_root: TrustedRoot) -> str | None:
    """The ``baseUrl`` of the trust root's current Rekor v1 log (ECDSA key, log ID = SHA-256(SPKI)), if any.

    Rekor v2 logs have no search API; among v1 logs the one still open (no end of validity) wins,
    else the one whose validity started last.
    """
    candidates: list[TransparencyLog] = []
    for log in trusted_root.tlogs:
        if not log.base_url or not isinstance(log.key, ec.EllipticCurvePublicKey):
            continue
        if log.log_id != hashlib.sha256(spki_der(log.key)).digest():
            continue
        candidates.append(log)
    if not candidates:
        return None
    open_ended = [log for log in candidates if log.valid_for.end is None]
    best = max(open_ended or candidates, key=lambda log: log.valid_for.start)
    return best.base_url.rstrip("/")


def _search_key(layer: Descriptor) -> tuple[bytes, x509.Certificate, bytes] | None:
    """(signature, certificate, payload SHA-256) of a keyless simple-signing layer that carries no
    Rekor bundle, from its descriptor alone (the layer's digest is its payload's); None otherwise."""
    annotations = layer.annotations
    if (layer.media_type != SIMPLE_SIGNING or BUNDLE_ANNOTATION in annotations
            or not layer.digest.startswith("sha256:")):
        return None
    try:
        certificate = parse_certificate_annotation(annotations.get(CERTIFICATE_ANNOTATION))
        signature = base64.b64decode(annotations.get(SIGNATURE_ANNOTATION, ""), validate=True)
        digest = bytes.fromhex(layer.digest.removeprefix("sha256:"))
    except (VerificationError, ValueError):
        return None  # the verification reports it; nothing to look up
    if certificate is None or not signature or len(digest) != 32:
        return None
    return signature, certificate, digest


def issuer_key_ids(trusted_root: TrustedRoot) -> frozenset[bytes]:
    """The key identifiers of the Fulcio CAs that issue leaves in ``trusted_root``."""
    found: set[bytes] = set()
    for ca in trusted_root.certificate_authorities:
        if ca.chain:
            found.add(x509.SubjectKeyIdentifier.from_public_key(ca.chain[0].public_key()).digest)
            with contextlib.suppress(x509.ExtensionNotFound):
                found.add(ca.chain[0].extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest)
    return frozenset(found)


def _authority_key_id(certificate: x509.Certificate) -> bytes | None:
    try:
        identifier = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except (x509.ExtensionNotFound, ValueError):
        return None
    return identifier


def _forget(tasks: set[asyncio.Task[TlogEntry | None]]) -> Callable[[asyncio.Task[TlogEntry | None]], None]:
    def done(task: asyncio.Task[TlogEntry | None]) -> None:
        tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a failed prefetch is retried by the lookup that needs it
    return done


@dataclass(frozen=True, slots=True)
class _Cached:
    entry: TlogEntry | None
    expires: float


class RekorClient:
    """Async Rekor v1 client with a bounded TTL cache and single-flight; share one per process.

    ``limiter`` is the process-wide bound on in-flight requests (the registry clients' one).
    """

    def __init__(
        self,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 5.0,
        found_ttl: float = 3600.0,
        not_found_ttl: float = 60.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        limiter: RequestLimiter | None = None,
        observer: UpstreamObserver = NULL_OBSERVER,
    ) -> None:
        self.limiter = limiter or RequestLimiter()
        inner = transport or plain_pool(REKOR, observer)
        self._http = httpx.AsyncClient(
            transport=ObservedTransport(inner, REKOR, observer),
            timeout=httpx.Timeout(timeout),
            headers={"User-Agent": "signet", "Accept": "application/json"},
            follow_redirects=False,
        )
        self._timeout = timeout
        self.found_ttl = found_ttl
        self.not_found_ttl = not_found_ttl
        self.max_entries = max_entries
        self._clock = clock
        self._cache: OrderedDict[tuple[str, ...], _Cached] = OrderedDict()
        self._inflight: dict[tuple[str, ...], asyncio.Task[TlogEntry | None]] = {}
        self._prefetching: set[asyncio.Task[TlogEntry | None]] = set()
        self.request_count = 0
        self.hits = self.misses = 0

    async def __aenter__(self) -> RekorClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for task in list(self._prefetching):
            task.cancel()
        await asyncio.gather(*self._prefetching, return_exceptions=True)
        await self._http.aclose()

    def cache_stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "size": len(self._cache)}

    async def warm(self, base_url: str) -> None:
        """Open the connection to Rekor (``GET /api/v1/log``, the log's size and root) before it is needed."""
        await self._call(base_url.rstrip("/"), "GET", LOG_PATH, None)

    # --- cache and single-flight -----------------------------------------------------------------

    def _cached(self, key: tuple[str, ...]) -> _Cached | None:
        hit = self._cache.get(key)
        if hit is None:
            return None
        if self._clock() >= hit.expires:
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return hit

    def _store(self, key: tuple[str, ...], entry: TlogEntry | None) -> None:
        ttl = self.found_ttl if entry is not None else self.not_found_ttl
        self._cache[key] = _Cached(entry, self._clock() + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    async def _single_flight(self, key: tuple[str, ...], make: Callable[[], Awaitable[TlogEntry | None]]
                             ) -> TlogEntry | None:
        hit = self._cached(key)
        if hit is not None:
            self.hits += 1
            return hit.entry
        task = self._inflight.get(key)
        if task is None:
            self.misses += 1

            async def run() -> TlogEntry | None:
                entry = await make()
                self._store(key, entry)  # errors are not cached: the next admission asks again
                return entry

            task = asyncio.ensure_future(run())
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    # --- lookups ---------------------------------------------------------------------------------

    async def find_entry(
        self,
        base_url: str,
        signature: bytes,
        certificate_or_key: x509.Certificate | PublicKey,
        payload_digest: bytes,
    ) -> TlogEntry | None:
        """The log entry for this signature over a payload with SHA-256 ``payload_digest``, or None.

        The entry is parsed and its UUID checked against its body; it is *not* verified.
        """
        base = base_url.rstrip("/")
        key = ("retrieve", base, hashlib.sha256(signature).hexdigest(),
               hashlib.sha256(_pem(certificate_or_key)).hexdigest(), payload_digest.hex())
        proposed = proposed_hashedrekord(signature, certificate_or_key, payload_digest)
        return await self._single_flight(key, lambda: self._retrieve(base, proposed, signature))

    def prefetch_legacy(self, base_url: str | None, manifest: Manifest, issuers: Collection[bytes]) -> int:
        """Start the lookups that the keyless layers of a ``.sig`` manifest without log evidence will
        need (``find_entry`` then joins them or finds them cached); returns how many were started.

        Only for certificates whose authority key is one of ``issuers`` (``issuer_key_ids`` of the
        trust root whose Rekor is ``base_url``): a signature of a private Sigstore deployment is
        never shown to another log ahead of time.
        """
        if not base_url or not issuers or len(self._prefetching) >= MAX_PREFETCHING:
            return 0
        started = 0
        for layer in manifest.layers[:MAX_PREFETCH_LAYERS]:
            search = _search_key(layer)
            if search is None or _authority_key_id(search[1]) not in issuers:
                continue
            task = asyncio.ensure_future(self.find_entry(base_url, *search))
            self._prefetching.add(task)
            task.add_done_callback(_forget(self._prefetching))
            started += 1
        return started

    async def get_entry_by_index(self, base_url: str, log_index: int) -> TlogEntry | None:
        """``GET /api/v1/log/entries?logIndex=N``: the entry at this global index, or None (404)."""
        base = base_url.rstrip("/")
        key = ("index", base, str(log_index))

        async def fetch() -> TlogEntry | None:
            data = await self._call(base, "GET", f"{ENTRIES_PATH}?logIndex={log_index}", None)
            if data is None:
                return None
            entries = self._parse_entries(base, data if isinstance(data, list) else [data])
            return entries[0] if entries else None

        return await self._single_flight(key, fetch)

    async def _retrieve(self, base: str, proposed: dict[str, Any], signature: bytes) -> TlogEntry | None:
        data = await self._call(base, "POST", RETRIEVE_PATH, {"entries": [proposed]})
        if data is None:
            return None
        if not isinstance(data, list):
            raise TransparencyLogError(f"Rekor at {base} answered the search with a {type(data).__name__}, "
                                       "not a list of entries")
        entries = self._parse_entries(base, data)
        wanted = base64.b64encode(signature).decode()
        for entry in entries:
            # Prefer the entry logging this very signature; full consistency is checked by the verifier.
            spec = entry.body_json.get("spec")
            if isinstance(spec, dict) and (spec.get("signature") or {}).get("content") == wanted:
                return entry
        return entries[0] if entries else None

    @staticmethod
    def _parse_entries(base: str, items: list[Any]) -> list[TlogEntry]:
        entries: list[TlogEntry] = []
        for item in items:
            if not isinstance(item, dict) or not item:
                continue
            for uuid, inner in item.items():
                try:
                    entries.append(TlogEntry.from_rekor_response(inner, uuid=uuid))
                except VerificationError as exc:
                    # A log answering with entries that do not match their UUIDs is not trustworthy.
                    raise VerificationError(f"Rekor at {base} returned a bad entry: {exc.reason}",
                                            step="log entry") from exc
        return entries

    async def _call(self, base: str, method: str, path: str, body: dict[str, Any] | None) -> Any:
        """One request; None on 404. Transport failures, 5xx and malformed JSON are TransparencyLogError."""
        url = f"{base}{path}"
        async with self.limiter.slot():
            self.request_count += 1
            try:
                async with asyncio.timeout(self._timeout * 2):
                    content = await self._fetch(base, method, url, body)
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise TransparencyLogError(f"Rekor at {base} unreachable: no answer within {self._timeout} s "
                                           f"({type(exc).__name__})") from exc
            except httpx.HTTPError as exc:
                raise TransparencyLogError(f"Rekor at {base} unreachable: {type(exc).__name__}: {exc}") from exc
        if isinstance(content, int):
            if content == 404:
                return None
            raise TransparencyLogError(f"Rekor at {base} answered {content} to {method} {path}")
        try:
            return json.loads(content)
        except (ValueError, UnicodeDecodeError) as exc:
            raise TransparencyLogError(f"Rekor at {base} answered {method} {path} with invalid JSON") from exc

    async def _fetch(self, base: str, method: str, url: str, body: dict[str, Any] | None) -> bytes | int:
        """The body of a 200 answer, read up to the bound; the status code of any other answer."""
        async with self._http.stream(method, url, json=body) as response:
            if response.status_code != 200:
                return response.status_code
            content = bytearray()
            async for chunk in response.aiter_bytes():
                content += chunk
                if len(content) > MAX_RESPONSE_BYTES:
                    raise TransparencyLogError(
                        f"Rekor at {base} answered with more than {MAX_RESPONSE_BYTES} bytes"
                    )
            return bytes(content)
