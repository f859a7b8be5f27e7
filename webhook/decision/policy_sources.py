"""Policy texts that are not inline: a pinned ``remote`` document, or a ``configMapRef`` entry.

Loading stays pure (the models only name these); the engine resolves them when a decision needs
them, as policy-controller's reconciler inlines them:

- ``remote``: fetched over HTTPS from a public address (plain HTTP and loopback only when allowed,
  for tests and air-gapped mirrors), at most ``MAX_POLICY_BYTES``, no redirects, and used only when
  its SHA-256 is the pinned one. The pin is in the spec, so the verdict key already covers it;
  the text is cached by (URL, pin) for a day. A fetch that fails is an infrastructure failure (not
  cached); a body with another digest is a verdict: the policy cannot be enforced, the image is denied.
- ``configMapRef``: read through the cluster integration (``ConfigMapReader``) like ``key.secretRef``
  keys, before the verdict key is computed: the text's SHA-256 is part of the key, so editing the
  ConfigMap changes the verdict within the cache TTL of the read (``EngineSettings.key_ttl``).

Either text is compiled like an inline one (``compiled_policy``, cached), in a thread: Rego's compile
check is a sandbox round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from webhook.decision.cache import AsyncCache
from webhook.errors import InfrastructureError, PolicyError, VerificationError
from webhook.oci.egress import EGRESS, PUBLIC_ONLY, AddressClass, EgressTransport
from webhook.policy.attestations import ConfigMapPolicyRef, ContentPolicy, RemotePolicy, compiled_policy
from webhook.policy.expressions import DEFAULT_LIMITS, CompiledPolicy, verify_pinned
from webhook.policy.models import ImagePolicy, Policy

_logger = logging.getLogger(__name__)

ConfigMapReader = Callable[[str | None, str, str], Awaitable[str]]
"""(namespace or None for Signet's own, name, key) → the entry's text; raises when it cannot be read."""

MAX_POLICY_BYTES = DEFAULT_LIMITS.max_source_bytes
_REMOTE_TTL = 86_400.0


@dataclass(frozen=True, slots=True)
class ConfigMapKey:
    """A ConfigMap entry holding a policy; ``namespace`` None is Signet's own namespace."""

    namespace: str | None
    name: str
    key: str

    def describe(self) -> str:
        return f"ConfigMap {self.namespace or '(signet namespace)'}/{self.name}[{self.key}]"


def config_map_of(policy: Policy, ref: ConfigMapPolicyRef) -> ConfigMapKey:
    """Where a ``configMapRef`` points: an ImagePolicy only ever reads its own namespace."""
    namespace = policy.metadata.namespace if isinstance(policy, ImagePolicy) else ref.namespace
    return ConfigMapKey(namespace, ref.name, ref.key)


@dataclass(frozen=True)
class PolicyText:
    """A ConfigMap entry as read for one decision: its text, or None and why (safe to show)."""

    fingerprint: str
    text: str | None
    shown: str = ""


async def read_config_map(reader: ConfigMapReader | None, key: ConfigMapKey) -> PolicyText:
    """The entry's text; why it cannot be used goes to the log and, in general terms, into the denial."""
    if reader is None:
        return PolicyText("unavailable:no cluster", None, f"the policy in {key.describe()} needs the cluster "
                          "integration, which is not running (run in a pod, or give --kubeconfig)")
    try:
        text = await reader(key.namespace, key.name, key.key)
    except Exception as exc:  # noqa: BLE001 - readers raise with names only; any failure fails closed
        _logger.warning("the policy in %s cannot be read: %s", key.describe(), exc)
        return PolicyText(f"unavailable:{type(exc).__name__}", None,
                          f"the policy in {key.describe()} cannot be read (signet's log has the reason)")
    return PolicyText(hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), text)


class RemotePolicies:
    """Fetches pinned policy documents; share one per engine (``aclose`` ends its connections)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None, allow_loopback_http: bool = False,
                 timeout: float = 5.0) -> None:
        self._allow_loopback = allow_loopback_http
        self._http = httpx.AsyncClient(transport=transport or EgressTransport(max_connections=8),
                                       timeout=httpx.Timeout(timeout), follow_redirects=False,
                                       headers={"User-Agent": "signet", "Accept": "text/plain, */*"})
        self._timeout = timeout
        self.texts: AsyncCache[tuple[str, str], str] = AsyncCache("remote_policies", max_entries=256,
                                                                  ttl=_REMOTE_TTL)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def text(self, remote: RemotePolicy) -> str:
        """The document at ``remote.url`` whose SHA-256 is the pin; VerificationError for another body."""
        return await self.texts.get((remote.url, remote.pinned), lambda: self._fetch(remote))

    async def _fetch(self, remote: RemotePolicy) -> str:
        url = httpx.URL(remote.url)
        allowance = PUBLIC_ONLY
        if url.scheme == "http":
            if not (self._allow_loopback and url.host in ("127.0.0.1", "::1", "localhost")):
                raise VerificationError(f"policy URL {remote.url} is not HTTPS; only HTTPS is fetched",
                                        step="policy")
            allowance = frozenset({AddressClass.LOOPBACK})
        elif self._allow_loopback and url.host in ("127.0.0.1", "::1", "localhost"):
            allowance = frozenset({AddressClass.LOOPBACK})
        try:
            async with asyncio.timeout(self._timeout * 2):
                body = await self._get(url, allowance)
        except (TimeoutError, httpx.HTTPError) as exc:
            raise InfrastructureError(f"policy {remote.url} could not be fetched: {type(exc).__name__}") from None
        try:
            return verify_pinned(body, remote.pinned)
        except PolicyError as exc:
            raise VerificationError(f"policy {remote.url}: {exc.reason}", step="policy") from None

    async def _get(self, url: httpx.URL, allowance: Any) -> bytes:
        request = self._http.build_request("GET", url, extensions={EGRESS: allowance})
        response = await self._http.send(request, stream=True)
        try:
            if response.status_code != 200:
                raise InfrastructureError(f"policy {url} could not be fetched: HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_POLICY_BYTES:
                    raise VerificationError(f"policy {url} is larger than {MAX_POLICY_BYTES} bytes", step="policy")
            return bytes(body)
        finally:
            await response.aclose()


async def resolve(policy: ContentPolicy, owner: Policy, *, remote: RemotePolicies,
                  config_maps: Mapping[ConfigMapKey, PolicyText]) -> CompiledPolicy:
    """The compiled policy ``policy`` names: inline, fetched, or read from a ConfigMap.

    VerificationError when its text cannot be used (denies); InfrastructureError when it could not be fetched.
    """
    if policy.compiled is not None:
        return policy.compiled
    if policy.remote is not None:
        text = await remote.text(policy.remote)
    else:
        assert policy.config_map_ref is not None
        entry = config_maps.get(config_map_of(owner, policy.config_map_ref))
        if entry is None or entry.text is None:
            raise VerificationError(entry.shown if entry is not None else
                                    f"the policy in {policy.source} was not read", step="policy")
        text = entry.text
    try:
        return await asyncio.to_thread(compiled_policy, policy.type, text, policy.scope)
    except PolicyError as exc:
        raise VerificationError(f"the policy from {policy.source} cannot be used: {exc.reason}",
                                step="policy") from None
