"""Audit lines as ``signet serve`` writes them (``webhook.audit.audit_line``), for the denials examples."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from itertools import count

from webhook.admission.outcome import ImageOutcome
from webhook.admission.review import parse_review
from webhook.audit import audit_line

SIGNER = "https://github.com/mallory/web/.github/workflows/release.yml@refs/tags/v1.4.2"
ISSUER = "https://token.actions.githubusercontent.com"
EXPECTED = (r"subject matching regexp ^https://github\.com/acme/[^/]+/\.github/workflows/release\.yml"
            r"@refs/tags/v.+$ (full match), issuer https://token.actions.githubusercontent.com")
_UIDS = count(1)


def line(when: datetime, user: str, namespace: str, kind: str, name: str, outcomes: list[ImageOutcome], *,
         decision: str = "deny", generate_name: str | None = None) -> str:
    """One audit line for a decision on ``kind`` ``namespace``/``name`` (``name`` "" for a generateName CREATE)."""
    metadata = {"name": name} if name else {"generateName": generate_name}
    group, version = ("apps", "v1") if kind == "Deployment" else ("batch", "v1") if kind == "Job" else ("", "v1")
    review = parse_review(json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": f"00000000-0000-4000-8000-{next(_UIDS):012d}",
        "kind": {"group": group, "version": version, "kind": kind},
        "resource": {"group": group, "version": version, "resource": kind.lower() + "s"},
        "namespace": namespace, "name": name, "operation": "CREATE", "userInfo": {"username": user},
        "object": {"apiVersion": f"{group}/{version}".lstrip("/"), "kind": kind, "metadata": metadata},
        "oldObject": None, "dryRun": False}}))
    return audit_line(review, decision=decision, reason=None, outcomes=outcomes, duration=0.012, route="validate",
                      now=when).decode()


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


def wrong_signer(image: str) -> ImageOutcome:
    return ImageOutcome(image, "sha256:" + "4e" * 32, "deny", "acme-releases", "release-workflow",
                        f"certificate identity {SIGNER} / issuer {ISSUER} does not match expected {EXPECTED}",
                        SIGNER, ISSUER, 48213907)


def unsigned(image: str) -> ImageOutcome:
    return ImageOutcome(image, "sha256:" + "9a" * 32, "deny", "acme-releases", None, "no signatures found")


def unmatched(image: str) -> ImageOutcome:
    return ImageOutcome(image, None, "deny", None, None,
                        f"no policy matches image {image} (noMatchPolicy deny)")


def readme_log() -> str:
    """What ``kubectl logs deploy/signet`` shows in the README: six denials, an admission, other log lines."""
    allowed = ImageOutcome("ghcr.io/acme/web:v1.4.1", "sha256:" + "11" * 32, "allow", "acme-releases",
                           "release-workflow", "verified", "https://github.com/acme/web/.github/workflows/release.yml"
                           "@refs/tags/v1.4.1", ISSUER, 48100001)
    web = "ghcr.io/acme/web:v1.4.2"
    return "\n".join([
        "INFO webhook.app: signet ready: trust root sha256:5c2e…, 1 policies from /etc/signet/policies (0 problems)",
        line(at(9, 5), "alice@example.com", "shop", "Deployment", "web", [allowed], decision="allow"),
        line(at(9, 10), "alice@example.com", "shop", "Deployment", "web", [wrong_signer(web)]),
        line(at(9, 25), "alice@example.com", "shop", "Deployment", "web", [wrong_signer(web)]),
        line(at(9, 40), "alice@example.com", "shop", "Deployment", "web", [wrong_signer(web)]),
        line(at(9, 52), "bob@example.com", "shop", "Deployment", "checkout", [unmatched("docker.io/library/redis:7")]),
        line(at(9, 58), "carol@example.com", "payments", "Job", "migrate", [unsigned("ghcr.io/acme/migrate:v3")]),
        line(at(10, 5), "carol@example.com", "payments", "Job", "migrate", [unsigned("ghcr.io/acme/migrate:v3")]),
    ]) + "\n"
