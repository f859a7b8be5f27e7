"""``signet evaluate --explain``: for every image, which policies apply and what each would try — no registry.

The selection comes from the decision engine's own ``Planner`` (canonical reference, policies,
images decided without signatures), so what is shown is what ``serve`` would select; only step 3
onwards (digest, signatures) is left out. An image is "decided" here when no signature can change
its verdict: an invalid reference, no policy (noMatchPolicy), or a policy that can only fail.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from webhook.admission.outcome import ImageOutcome
from webhook.commands.console import Console, plural
from webhook.decision.plans import ImagePlan, Planner, secret_of
from webhook.decision.workload import Workload
from webhook.policy.authorities import Authority
from webhook.policy.models import ImagePolicy, Policy

DEFAULT_ROOT = "the default trust root (embedded, TUF or --trusted-root)"


@dataclass(frozen=True)
class Explained:
    """One image of one workload: its plan."""

    image: str
    plan: ImagePlan

    @property
    def decided(self) -> ImageOutcome | None:
        return self.plan.final.outcome if self.plan.final is not None else None


def explain_images(images: Sequence[str], namespace: str, planner: Planner,
                   document: Mapping[str, Any] | None = None) -> list[Explained]:
    """The plan of each image; with the workload's ``document``, ``match`` selects as the server would."""
    target = Workload.of(document).target if document is not None else None
    return [Explained(image, planner.plan(image, namespace, target)) for image in dict.fromkeys(images)]


# --- what an authority would try ---------------------------------------------------------------------


def _key_fingerprint(pem: str) -> str:
    try:
        der = load_pem_public_key(pem.encode()).public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        return "unreadable PEM"
    return "sha256:" + hashlib.sha256(der).hexdigest()


def authority_json(authority: Authority, policy: Policy) -> dict[str, Any]:
    """What one authority would try, for ``-o json``: type, identities or key, trust root, attestations."""
    data: dict[str, Any] = {"name": authority.name}
    if authority.static is not None:
        data.update(type="static", action=authority.static.action, message=authority.static.message)
    elif authority.keyless is not None:
        keyless = authority.keyless
        data.update(type="keyless", trustRoot=keyless.trust_root_ref, identities=[
            {"issuer": i.issuer, "issuerRegExp": i.issuer_reg_exp, "subject": i.subject,
             "subjectRegExp": i.subject_reg_exp, "regexpMatch": "search" if policy.regexp_mode == "search" else "full",
             "description": i.to_policy(policy.regexp_mode).describe()}
            for i in keyless.identities])
        if keyless.extensions:
            data["extensions"] = dict(keyless.extensions)
        if keyless.ca_cert is not None:
            ref = keyless.ca_cert.secret_ref
            data["caCert"] = secret_of(policy, ref.namespace, ref.name).describe() if ref is not None else "inline"
        data["requiresLogEntry"] = keyless.requires_log_entry
        data["requiresSct"] = not keyless.insecure_ignore_sct
    elif authority.key is not None:
        key = authority.key
        secret = (secret_of(policy, key.secret_ref.namespace, key.secret_ref.name).describe()
                  if key.secret_ref is not None else None)
        data.update(type="key", key={"secret": secret, "fingerprint": _key_fingerprint(key.data) if key.data else None,
                                     "hashAlgorithm": str(key.hash_algorithm)},
                    requiresLogEntry=key.rekor is not None)
    if authority.signature_source is not None and authority.signature_source.oci:
        data["signaturesFrom"] = authority.signature_source.oci
    if authority.signature_format is not None:
        data["signatureFormat"] = str(authority.signature_format)
    if authority.rfc3161timestamp is not None:
        data["timestampFrom"] = authority.rfc3161timestamp.trust_root_ref
    if authority.attestations:
        data["attestations"] = [{"name": a.name, "predicateType": a.predicate_type,
                                 "policy": a.policy.type if a.policy is not None else None}
                                for a in authority.attestations]
        data["requireSignature"] = authority.require_signature
    return data


def _authority_lines(authority: Authority, policy: Policy) -> Iterator[str]:
    info = authority_json(authority, policy)
    if info.get("type") == "static":
        message = f": {authority.static.message}" if authority.static and authority.static.message else ""
        yield f'authority "{authority.name}": static {info["action"]}{message} (no signature is looked at)'
        return
    if info.get("type") == "keyless":
        root = f'TrustRoot "{info["trustRoot"]}"' if info["trustRoot"] else DEFAULT_ROOT
        yield f'authority "{authority.name}": keyless, certificates from {root}'
        for identity in info["identities"]:
            yield f"  identity: {identity['description']}"
        if info.get("extensions"):
            yield "  certificate claims: " + ", ".join(f"{k}={v}" for k, v in info["extensions"].items())
        checks = ["Rekor log entry" if info["requiresLogEntry"] else "no log entry",
                  "SCT" if info["requiresSct"] else "no SCT (insecureIgnoreSCT)"]
        if info.get("caCert"):
            checks.append(f"issued by the caCert ({info['caCert']})")
        yield f"  requires: {', '.join(checks)}"
    elif info.get("type") == "key":
        key = info["key"]
        where = key["secret"] or f"inline key {key['fingerprint'][:23]}…"
        log = ", Rekor log entry required" if info["requiresLogEntry"] else ""
        yield f'authority "{authority.name}": public key from {where} ({key["hashAlgorithm"]}{log})'
    if info.get("signaturesFrom"):
        yield f"  signatures read from {info['signaturesFrom']}"
    if info.get("timestampFrom"):
        yield f'  RFC 3161 timestamp from TrustRoot "{info["timestampFrom"]}"'
    for attestation in info.get("attestations", []):
        judged = f", judged by its {attestation['policy']} policy" if attestation["policy"] else ""
        yield f'  attestation "{attestation["name"]}": {attestation["predicateType"]}{judged}'
    if info.get("attestations") and not info["requireSignature"]:
        yield "  the attestations stand in for a signature (requireSignature: false)"


def policy_json(policy: Policy) -> dict[str, Any]:
    spec = policy.spec
    return {"kind": policy.kind, "name": policy.name,
            "namespace": policy.metadata.namespace if isinstance(policy, ImagePolicy) else None,
            "source": policy.origin, "mode": str(spec.mode), "globs": [e.glob for e in spec.images],
            "match": [m.model_dump(mode="json", by_alias=True, exclude_defaults=True) for m in spec.match],
            "contentPolicy": spec.policy.type if spec.policy is not None else None,
            "authorities": [authority_json(a, policy) for a in spec.authorities]}


def _policy_lines(policy: Policy) -> Iterator[str]:
    spec = policy.spec
    where = f" from {policy.origin}" if policy.origin else ""
    globs = ", ".join(e.glob for e in spec.images)
    yield f'{policy.kind} "{policy.name}"{where}: mode {spec.mode}, images {globs}'
    if spec.match:
        yield "  only for: " + ", ".join(m.resource or f"{m.group}/{m.version}".strip("/") or "any resource"
                                         for m in spec.match)
    many = len(spec.authorities) > 1
    yield f"  any one of its {len(spec.authorities)} authorities suffices:" if many else "  its authority:"
    for authority in spec.authorities:
        yield from (f"    {line}" for line in _authority_lines(authority, policy))
    if spec.policy is not None:
        yield f"  then its {spec.policy.type} policy must accept the verified signatures"


# --- output ------------------------------------------------------------------------------------------


def image_json(item: Explained) -> dict[str, Any]:
    plan = item.plan
    decided = item.decided
    return {
        "image": item.image, "reference": str(plan.ref) if plan.ref is not None else None,
        "decidedWithoutSignatures": None if decided is None else {"verdict": decided.verdict,
                                                                  "policy": decided.policy, "reason": decided.reason},
        "dependsOnDigest": plan.needs_digest, "warnOnly": plan.warn_only,
        "policies": [policy_json(p) for p in plan.policies],
    }


def image_lines(item: Explained, console: Console) -> Iterator[str]:
    plan = item.plan
    reference = str(plan.ref) if plan.ref is not None else None
    canonical = f" (as {reference})" if reference and reference != item.image else ""
    yield f"image {item.image}{canonical}"
    decided = item.decided
    if decided is not None and not plan.policies:
        yield f"  {console.verdict(decided.verdict)}, whatever its signatures: {decided.reason}"
        return
    if plan.needs_digest:
        yield "  a policy globs on digests: which policies apply is known once the tag is resolved; shown for the tag"
    many = len(plan.policies) > 1
    head = f"{len(plan.policies)} policies apply, each must pass" if many else "1 policy applies"
    yield f"  {head}" + (" (warn mode only: never denied)" if plan.warn_only else "") + ":"
    for policy in plan.policies:
        yield from (f"    {line}" for line in _policy_lines(policy))
    if decided is not None:
        yield f"  {console.verdict(decided.verdict)}, whatever its signatures: {decided.reason}"


def summary(items: Sequence[Explained]) -> str:
    """``1 image denied whatever its signatures; 1 to verify``: what --explain settled, and what it could not."""
    denied = sum(1 for i in items if i.decided is not None and i.decided.verdict == "deny")
    settled = sum(1 for i in items if i.decided is not None) - denied
    pending = len(items) - denied - settled
    parts = [f"{plural(denied, 'image')} denied whatever its signatures" if denied else "",
             f"{plural(settled, 'image')} decided by noMatchPolicy or static authorities" if settled else "",
             f"{plural(pending, 'image')} to verify (run without --explain to check the signatures)"
             if pending else ""]
    return "; ".join(p for p in parts if p) or "no images"
