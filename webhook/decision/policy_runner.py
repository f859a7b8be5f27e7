"""Evaluating CEL and Rego policies for decisions: in the sandbox, off the event loop, results cached.

Every evaluation goes to a sandbox worker (``webhook.policy.sandbox``: killed at its time and
memory limits) through a thread, so a slow policy holds neither the event loop nor another
admission. What a policy answered is cached under the policy's identity and the document's
(``policy_digest`` + SHA-256 of the JSON it saw): the same attestation judged by the same policy
is not evaluated again until the entry expires (passes as long as an allowed verdict, refusals
as long as a denial). A sandbox that cannot take the work (busy, closed) is an infrastructure
failure and is never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from webhook.decision.cache import AsyncCache
from webhook.decision.policy_sources import RemotePolicies
from webhook.errors import InfrastructureError
from webhook.policy.attestations import uses_expressions
from webhook.policy.expressions import CompiledPolicy, PolicyDeniedError, json_safe, policy_digest
from webhook.policy.models import Policy
from webhook.policy.sandbox import Sandbox

_logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class PolicyVerdict:
    """What one policy said about one document: yes (with its warnings) or no (with its message)."""

    ok: bool
    message: str
    warnings: tuple[str, ...] = ()


def document_digest(document: Mapping[str, Any]) -> str:
    """SHA-256 of the document as canonical JSON (sorted keys): the policy saw exactly this."""
    try:
        encoded = orjson.dumps(json_safe(document), option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, PolicyDeniedError):
        # Not JSON data: the sandbox refuses it, and that refusal is not worth caching.
        return ""
    return hashlib.sha256(encoded).hexdigest()


class PolicyRunner:
    """Runs policies for the engine; ``sandbox`` gives the (lazily started) sandbox to use."""

    def __init__(self, sandbox: Callable[[], Sandbox], results: AsyncCache[tuple[str, str], PolicyVerdict]) -> None:
        self._sandbox = sandbox
        self.results = results

    async def evaluate(self, policy: CompiledPolicy, document: Mapping[str, Any]) -> PolicyVerdict:
        """The policy's verdict on ``document``; InfrastructureError when the sandbox cannot run it."""
        # Canonicalising and hashing a document that carries a workload of megabytes takes a while:
        # never on the event loop (a review with hundreds of images would hold it for seconds).
        key = await asyncio.to_thread(document_digest, document)
        if not key:
            return await self._run(policy, document)
        return await self.results.get((policy_digest(policy), key), lambda: self._run(policy, document))

    async def _run(self, policy: CompiledPolicy, document: Mapping[str, Any]) -> PolicyVerdict:
        sandbox = self._sandbox()
        try:
            warnings = await asyncio.to_thread(sandbox.evaluate, policy, document)
        except PolicyDeniedError as exc:
            return PolicyVerdict(False, exc.reason)
        for warning in warnings:
            _logger.info("policy warning: %s", warning)
        return PolicyVerdict(True, "passed", warnings)


class PolicyServices:
    """The engine's sandbox (two workers, ~45 MiB each, started on first use or ahead of it), runner and fetcher.

    A sandbox or fetcher given by the caller is the caller's to close.
    """

    def __init__(self, results: AsyncCache[tuple[str, str], PolicyVerdict], *, sandbox: Sandbox | None = None,
                 remote: RemotePolicies | None = None) -> None:
        self._sandbox, self._own_sandbox = sandbox, sandbox is None
        self._remote, self._own_remote = remote, remote is None
        self.runner = PolicyRunner(self.sandbox, results)
        self._starting: asyncio.Future[None] | None = None

    def sandbox(self) -> Sandbox:
        if self._sandbox is None:
            self._sandbox = Sandbox(workers=2)
        return self._sandbox

    def remote(self) -> RemotePolicies:
        if self._remote is None:
            self._remote = RemotePolicies()
        return self._remote

    def start_in_background(self, policies: Iterable[Policy]) -> None:
        """Start the workers now (in a thread) when ``policies`` have CEL/Rego; a failure is retried on use."""
        if self._starting is not None or not any(uses_expressions(p) for p in policies):
            return

        async def start() -> None:
            try:
                await asyncio.to_thread(self.sandbox().start)
            except InfrastructureError as exc:
                _logger.warning("the policy sandbox did not start (it is retried when a policy needs it): %s", exc)

        self._starting = asyncio.ensure_future(start())

    async def aclose(self) -> None:
        if self._starting is not None:
            await asyncio.gather(self._starting, return_exceptions=True)
        if self._own_remote and self._remote is not None:
            await self._remote.aclose()
        if self._own_sandbox and self._sandbox is not None:
            await asyncio.to_thread(self._sandbox.close)
