"""The admission server: a FastAPI app built by ``create_app(config)``; nothing happens at import.

Routes (ARCHITECTURE.md §3): ``POST /validate``, ``POST /mutate``, ``GET /healthz``,
``GET /readyz``, ``GET /metrics`` (the last three on their own plain-HTTP app with
``--metrics-port``, see ``ops_app``). The two admission routes are plain Starlette endpoints: the
body is streamed within bounds (``admission.read_body``: size, JSON values, time), parsed by
``webhook.admission`` with orjson, and answered with bytes; no pydantic model or dependency
injection on the hot path.

Nothing one request sends holds the event loop for long: a review naming more than
``--max-images`` distinct images is denied before any verification, and the Python walks over a
large review (finding its images, building its patch) run in a worker thread, where the
interpreter's switch interval lets the loop answer others (``/healthz`` included) meanwhile.

Two error channels (STYLE.md, kopf): a malformed review is HTTP 400; every decision, including
"we failed", is HTTP 200. An unexpected exception while deciding becomes a denial ("internal
error", traceback logged): never a 500, never an accidental allow.

The lifespan starts the trust-root provider (its TUF refresh runs in the provider's thread, never
in a request), builds the engine with its registry and Rekor clients (``webhook.server.setup``),
starts the TLS certificate watcher, and closes all of them on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final, ParamSpec, Protocol, TypeVar

import orjson
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp

from webhook.admission import (
    AdmissionReview,
    ImageOutcome,
    MalformedReviewError,
    UnreadableBodyError,
    UnreadableWorkloadError,
    VerificationPlan,
    audit_annotations,
    denial_message,
    denied,
    malformed_body,
    parse_review,
    pinning_patch,
    plan_verification,
    read_body,
    respond,
    skipped,
    unreadable,
)
from webhook.audit import AuditLog
from webhook.cluster import ClusterIntegration
from webhook.config import ServerConfig
from webhook.metrics import CONTENT_TYPE, Metrics
from webhook.oci import CredentialStore
from webhook.policy.matching import PolicySet, PolicyStore
from webhook.server.setup import LoadedPolicies, build_engine, build_trust, connect_cluster, load_policies
from webhook.tls import CertificateReloader
from webhook.trust.provider import TrustRootProvider
from webhook.upstreams import review_waits

if TYPE_CHECKING:
    from webhook.decision import ImageDecision
    from webhook.decision.clients import UpstreamClients
    from webhook.decision.workload import Workload
    from webhook.warmup import WarmReport

_logger = logging.getLogger(__name__)

JSON: Final = "application/json"
# Above this, a review's Python work runs in a thread (below it the hand-off would cost more than it saves).
LARGE_REVIEW: Final = 256 * 1024
INTERNAL_ERROR: Final = "signet internal error: the object was not checked and is denied (see the signet log)"


class DecisionEngine(Protocol):
    """What the app needs from ``webhook.decision.Engine`` (the seam unit tests fake)."""

    async def decide(self, images: Sequence[str], namespace: str | None,
                     credentials: CredentialStore | None = None,
                     workload: Workload | None = None) -> list[ImageDecision]: ...

    def cache_stats(self) -> dict[str, dict[str, int]]: ...

    def invalidate(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class _Decision:
    body: bytes
    result: str  # allow | deny | warn
    reason: str  # metrics category
    detail: str | None  # audit reason when no image was verified
    outcomes: Sequence[ImageOutcome]


class _State:
    """Everything the routes share; one per app."""

    def __init__(self, config: ServerConfig, engine: DecisionEngine | None, trust: TrustRootProvider | None,
                 policies: LoadedPolicies | None, tls: CertificateReloader | None, *, audit: AuditLog | None) -> None:
        self.config = config
        self.engine = engine
        self.trust = trust
        self.policies = policies
        self.tls = tls
        self.audit = audit or AuditLog()
        self.store: PolicyStore | None = None
        """Directory and cluster policies together, when the cluster integration runs."""
        self.cluster: ClusterIntegration | None = None
        self.upstream_clients: UpstreamClients | None = None
        """The registry and Rekor clients, when the lifespan built the engine."""
        self.warm: WarmReport | None = None
        self.warmed = True
        """False while warm-up runs (readiness waits for it)."""
        self.metrics = Metrics(self._cache_stats, self._gauges)

    def _cache_stats(self) -> dict[str, dict[str, int]]:
        stats = self.engine.cache_stats() if self.engine is not None else {}
        if self.upstream_clients is not None:
            stats = {**stats, **self.upstream_clients.cache_stats()}
        return stats

    def _gauges(self) -> dict[str, float]:
        return {
            "trust_root_ready": float(self.trust is not None and self.trust.ready),
            # Staleness for alerting: a TUF mirror that keeps failing leaves the last good root in force.
            "trust_root_refresh_failures": float(self.trust.status().consecutive_failures) if self.trust else 0.0,
            "trust_root_last_refresh_success_seconds": _epoch(self.trust.status().last_refresh_success)
            if self.trust else 0.0,
            "policies_loaded": float(len(self.policies.result.policies)) if self.policies else 0.0,
            "policy_problems": float(len(self.policies.result.problems)) if self.policies else 0.0,
            "warm_up_done": float(self.warmed),
        }

    def current_policies(self) -> PolicySet:
        if self.store is not None:
            return self.store.current
        if self.policies is None:
            raise RuntimeError("policies are not loaded")
        return self.policies.policy_set

    def ready(self) -> bool:
        """Trust root, engine and cluster policies are in, and every ``--policies`` document is usable.

        Problems of objects in the cluster do not count: a tenant's broken ImagePolicy must not take
        every replica out of service (its status says what is wrong).
        """
        return (self.trust is not None and self.trust.ready and self.policies is not None and self.engine is not None
                and not self.policies.result.problems and (self.cluster is None or self.cluster.ready)
                and self.warmed)

    # -- deciding ---------------------------------------------------------------------------------

    async def decide(self, review: AdmissionReview, mutate: bool, *, large: bool = False) -> _Decision:
        try:
            plan = await _run(large, plan_verification, review)
        except UnreadableWorkloadError as exc:  # before InputError handling: it is one
            return _Decision(unreadable(review, exc), "deny", "unreadable", exc.diagnostics(), ())
        if not plan.images:
            return _Decision(skipped(review, plan.reason), "allow", "skipped", plan.reason, ())
        distinct = await _run(large, lambda: plan.distinct)
        if len(distinct) > self.config.max_images:
            return self._too_many_images(review, len(distinct))
        if self.engine is None:
            raise RuntimeError("the decision engine is not running")
        started = time.perf_counter()
        credentials = await self._credentials(review)
        from webhook.decision.workload import review_workload  # the decision package loads with the engine

        # The object under review: spec.match selects by its resource and labels, spec.policy may see it.
        decisions = await self.engine.decide(distinct, review.namespace or None, credentials,
                                             workload=review_workload(review))
        self.metrics.verification.observe(time.perf_counter() - started)
        return await _run(large, self._answer, review, plan, distinct, decisions, mutate)

    async def _credentials(self, review: AdmissionReview) -> CredentialStore | None:
        """The workload's pull secrets, read within a share of the deadline; anonymous when too slow."""
        if self.cluster is None:
            return None
        try:
            async with asyncio.timeout(self.config.deadline / 4):
                return await self.cluster.credentials(review)
        except TimeoutError:
            _logger.warning("pull secrets for %s/%s not read within %.1f s; verifying anonymously",
                            review.namespace, review.object_name, self.config.deadline / 4)
            return None

    def _too_many_images(self, review: AdmissionReview, count: int) -> _Decision:
        """Denied unverified: verifying every image of a huge review would hold the server for everyone."""
        message = (f"signet denies this {review.kind.kind or 'object'}: it names {count} distinct images, more than "
                   f"the {self.config.max_images} one admission review may verify (signet serve --max-images); "
                   "no image was verified")
        body = denied(review, message, audit_annotations=audit_annotations("deny", reason=message))
        return _Decision(body, "deny", "too_many_images", message, ())

    def _answer(self, review: AdmissionReview, plan: VerificationPlan, distinct: Sequence[str],
                decisions: Sequence[ImageDecision], mutate: bool) -> _Decision:
        by_image = {d.image: d for d in decisions}
        missing = [image for image in distinct if image not in by_image]
        if missing:  # never allow an image the engine did not answer for
            raise RuntimeError(f"the engine returned no decision for {missing[:8]}")
        outcomes = [by_image[image].outcome for image in distinct]
        patch = None
        if mutate:
            verified = {d.image: d.outcome.digest for d in decisions
                        if d.pin_digest and d.outcome.verdict == "allow" and d.outcome.digest}
            patch = pinning_patch(plan.images, verified) or None
        categories = [self.metrics.image(o) for o in outcomes]
        result = "deny" if any(o.verdict == "deny" for o in outcomes) else (
            "warn" if any(o.verdict == "warn" for o in outcomes) else "allow")
        reason = next(c for o, c in zip(outcomes, categories, strict=True) if o.verdict == result)
        return _Decision(respond(review, outcomes, patch=patch), result, reason, None, outcomes)

    async def admission(self, request: Request, route: str) -> Response:
        started = time.perf_counter()
        try:
            body = await read_body(request.stream(), declared_length=request.headers.get("content-length"),
                                   timeout=self.config.read_timeout)
            review = parse_review(body)
        except UnreadableBodyError as exc:
            self.metrics.decision(route, "malformed", "body_refused", time.perf_counter() - started)
            # The server's protocol ends the connection: the client may still be sending what we refused.
            return Response(malformed_body(exc, code=exc.code, reason=exc.status), status_code=exc.code,
                            media_type=JSON)
        except MalformedReviewError as exc:
            self.metrics.decision(route, "malformed", "malformed", time.perf_counter() - started)
            return Response(malformed_body(exc), status_code=400, media_type=JSON)
        except ClientDisconnect:  # gone before the body arrived: there is nobody to answer
            return Response(status_code=400)
        try:
            with review_waits() as waits:  # the tasks deciding this review count their upstream waits here
                decision = await self.decide(review, mutate=route == "mutate", large=len(body) > LARGE_REVIEW)
        except Exception:
            _logger.exception("internal error deciding %s %s/%s (uid %s); denying", review.kind.kind,
                              review.namespace, review.name, review.uid)
            annotations = audit_annotations("deny", reason="internal error")
            decision = _Decision(denied(review, INTERNAL_ERROR, audit_annotations=annotations), "deny",
                                 "internal_error", "internal error", ())
        elapsed = time.perf_counter() - started
        self.metrics.decision(route, decision.result, decision.reason, elapsed)
        if self.cluster is not None and decision.result == "deny" and decision.outcomes and not review.dry_run:
            self.cluster.record_denial(review, denial_message(decision.outcomes), decision.outcomes)
        try:
            self.audit.record(review, decision=decision.result, reason=decision.detail, outcomes=decision.outcomes,
                              duration=elapsed, route=route, upstreams=waits.summary())
        except Exception:  # the decision stands even if the audit line cannot be written
            _logger.exception("cannot write the audit line for uid %s", review.uid)
        return Response(decision.body, media_type=JSON)

    # -- lifecycle --------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI) -> AsyncIterator[None]:
        if self.trust is None:
            self.trust = build_trust(self.config, self.metrics.upstreams)
        self.trust.start()
        if self.policies is None:
            self.policies = load_policies(self.config)
        closers: list[Callable[[], Awaitable[None]]] = []
        if self.engine is None:
            self.engine, self.upstream_clients = build_engine(
                self.config, self.trust, self.policies, current=self.current_policies, cluster=lambda: self.cluster,
                observer=self.metrics.upstreams)
            closers.append(self.upstream_clients.aclose)
        if self.config.cluster:
            self.store, self.cluster = connect_cluster(self.config, self.policies.result)
            self.cluster.start(self.engine.decide)
            closers.append(self.cluster.stop)
        tasks: list[asyncio.Task[None]] = []
        if self.upstream_clients is not None:
            self.warmed = False
            tasks.append(asyncio.create_task(self._warm_up(self.upstream_clients, self.trust)))
        if self.tls is not None:
            tasks.append(asyncio.create_task(self.tls.watch(self.config.tls_reload_interval)))
        _logger.info("signet ready: trust root %s, %d policies from %s (%d problems)",
                     self.trust.status().source, len(self.policies.result.policies), self.policies.source,
                     len(self.policies.result.problems))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.engine.aclose()
            for close in closers:
                await close()
            self.trust.stop()

    async def _warm_up(self, clients: UpstreamClients, trust: TrustRootProvider) -> None:
        """Connections, tokens and lazy initialisation before the first review (``webhook.warmup``)."""
        from webhook.warmup import warm_server

        try:
            self.warm = await warm_server(
                clients=clients, policies=self.current_policies, root=trust.get, engine=self.engine,
                settled=lambda: self.policies is not None and (self.cluster is None or self.cluster.ready),
                connections=self.config.registry_connections_per_host, timeout=self.config.warm_up_timeout)
            _logger.info("warm-up done in %.2f s%s: registries %s, Rekor %s", self.warm.seconds,
                         " (timed out)" if self.warm.timed_out else "", self.warm.registries or "none",
                         self.warm.rekor or "not contacted")
        finally:
            self.warmed = True


def create_app(
    config: ServerConfig,
    *,
    engine: DecisionEngine | None = None,
    trust: TrustRootProvider | None = None,
    policies: LoadedPolicies | None = None,
    tls: CertificateReloader | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    """The admission app; the lifespan builds whatever is not given (trust, policies, engine).

    ``audit`` says where decisions are recorded (default: the ``signet.audit`` logger).
    """
    state = _State(config, engine, trust, policies, tls, audit=audit)
    app = FastAPI(title="signet", lifespan=state.lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.signet = state

    async def validate(request: Request) -> Response:
        return await state.admission(request, "validate")

    async def mutate(request: Request) -> Response:
        return await state.admission(request, "mutate")

    async def healthz(_request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type=JSON)

    async def readyz(_request: Request) -> Response:
        ready = state.ready()
        loaded = state.policies
        details = {
            "ready": ready,
            "trustRoot": state.trust.status().as_dict() if state.trust else {"ready": False},
            "policies": {
                "loaded": loaded is not None,
                "source": loaded.source if loaded else state.config.policies_location(),
                "count": len(loaded.result.policies) if loaded else 0,
                "problems": [str(p) for p in loaded.result.problems[:50]] if loaded else [],
                "failClosed": list(loaded.result.fail_closed) if loaded else [],
            },
        }
        return Response(orjson.dumps(details), status_code=200 if ready else 503, media_type=JSON)

    async def metrics(_request: Request) -> Response:
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    # Plain Starlette routes: no request validation or OpenAPI machinery per call.
    app.add_route("/validate", validate, methods=["POST"])
    app.add_route("/mutate", mutate, methods=["POST"])
    ops = [Route("/healthz", healthz, methods=["GET"]), Route("/readyz", readyz, methods=["GET"]),
           Route("/metrics", metrics, methods=["GET"])]
    if config.metrics_port is None:
        app.router.routes.extend(ops)
    else:
        app.state.ops = Starlette(routes=ops)
    return app


def ops_app(app: FastAPI) -> ASGIApp | None:
    """The health, readiness and metrics app of ``--metrics-port`` (None: those routes are on ``app``).

    It has no lifespan of its own: ``app``'s lifespan starts and stops what both serve.
    """
    ops: ASGIApp | None = getattr(app.state, "ops", None)
    return ops


_P = ParamSpec("_P")
_T = TypeVar("_T")


async def _run(large: bool, function: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``function`` on the loop, or in a worker thread for a large review (its Python work would hold the loop)."""
    if large:
        return await asyncio.to_thread(function, *args, **kwargs)
    return function(*args, **kwargs)


def _epoch(when: datetime | None) -> float:
    return when.timestamp() if when is not None else 0.0
