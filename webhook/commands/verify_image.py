"""``signet verify IMAGE``: verify an image's signatures in the registry, like ``cosign verify``.

Exit 0 when at least one signature satisfies the identity (or key), 1 when none does or the
registry/Rekor failed (said so distinctly), 2 for usage and input errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from webhook.commands.common import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, load_key, trusted_root_from_args
from webhook.commands.console import Console, ErrorType, plural
from webhook.commands.hints import hint_for
from webhook.commands.progress import Progress
from webhook.commands.verify_blob import add_identity_arguments, identity_from_args
from webhook.config import parse_mirrors
from webhook.images import LAYOUT_BUNDLE, ImageVerification, RekorLookup, SignatureOutcome, verify_image
from webhook.oci.client import RegistryClient
from webhook.oci.reference import ImageReference, parse_reference
from webhook.rekor import RekorClient, rekor_v1_url
from webhook.verify.identity import Policy
from webhook.verify.keys import PublicKey
from webhook.verify.verifier import Verifier

EXIT_MEANINGS = {
    EXIT_OK: "verified: at least one signature satisfies the identity (or key)",
    EXIT_REJECTED: "not verified: no signature satisfies it, or the registry or Rekor failed (see error.type)",
    EXIT_USAGE: "usage or input error: nothing was verified",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image reference: registry/repo[:tag][@digest]")
    add_identity_arguments(parser)
    parser.add_argument("--allow-http-registry", action="store_true",
                        help="reach registries on loopback over plain HTTP")
    parser.add_argument("--registry-mirror", action="append", default=[], metavar="HOST=URL",
                        help="fetch HOST's images from URL (repeatable; default: none), e.g. "
                             "index.docker.io=http://127.0.0.1:5000")
    parser.add_argument("--rekor-url", metavar="URL",
                        help="Rekor v1 for signatures without a bundle annotation (default: from the trust root)")
    parser.add_argument("--include-index-signatures", action="store_true",
                        help="accept a platform manifest covered by a verified signature on its multi-arch index")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    console = Console.from_args(args)
    policy = identity_from_args(parser, args)
    key = load_key(args.key) if args.key else None
    ref = parse_reference(args.image)
    trusted_root = trusted_root_from_args(args)
    rekor_url = args.rekor_url or rekor_v1_url(trusted_root)
    with Progress(console.err, f"verifying {ref}"):
        result = asyncio.run(_verify(ref, args=args, policy=policy, key=key, verifier=Verifier(trusted_root),
                                     rekor_url=rekor_url))
    code = EXIT_OK if result.ok else EXIT_REJECTED
    failure = None if result.ok else failure_message(result, keyed=key is not None)
    kind: ErrorType = "infrastructure" if result.infrastructure_failure else "verification"
    hint = _hint(result)
    if console.json:
        document = as_json(result)
        if failure is not None:
            document["error"] = {"type": kind, "message": failure, **({"hint": hint} if hint else {})}
        console.document(document, code)
    if failure is None:
        _print_verified(result, key is not None, console)
    else:
        console.error(failure, exit_code=code, kind=kind, hint=hint, document=False)
    return code


async def _verify(ref: ImageReference, *, args: argparse.Namespace, policy: Policy | None, key: PublicKey | None,
                  verifier: Verifier, rekor_url: str | None) -> ImageVerification:
    mirrors = parse_mirrors(args.registry_mirror)
    async with RegistryClient(allow_http=args.allow_http_registry, mirrors=mirrors) as client, RekorClient() as rk:
        rekor = RekorLookup(rk, rekor_url) if rekor_url else None
        return await verify_image(ref, registry_client=client, verifier=verifier, policy=policy, key=key,
                                  rekor=rekor, include_index_signatures=args.include_index_signatures)


# --- output ----------------------------------------------------------------------------------------

def _payload_json(result: ImageVerification, outcome: SignatureOutcome) -> dict[str, Any]:
    """cosign's printed form: the simple-signing payload, ``optional`` with Bundle/Issuer/Subject."""
    verified = outcome.verified
    assert verified is not None
    document: dict[str, Any]
    if outcome.layout != LAYOUT_BUNDLE and verified.payload is not None:
        parsed = json.loads(verified.payload)
        document = parsed if isinstance(parsed, dict) else {"payload": parsed}
    else:
        signed = outcome.checked.signed_digest
        document = {
            "critical": {
                "identity": {"docker-reference": result.reference.name},
                "image": {"docker-manifest-digest": signed},
                "type": verified.statement.predicate_type if verified.statement else "cosign container image signature",
            },
            "optional": None,
        }
    optional = dict(document.get("optional") or {})
    signer = outcome.signer
    if signer is not None:
        optional["Issuer"] = signer.issuer
        optional["Subject"] = signer.subject
    if verified.log_proofs:
        proof = verified.log_proofs[0]
        bundle: dict[str, Any] = {"logIndex": proof.log_index, "logUrl": proof.log_url}
        if proof.integrated_time is not None:
            bundle["integratedTime"] = int(proof.integrated_time.timestamp())
        optional["Bundle"] = bundle
    document["optional"] = optional or None
    return document


def _print_verified(result: ImageVerification, keyed: bool, console: Console) -> None:
    """cosign's report: the checks on stderr, the verified payloads on stdout (unless -o json printed them)."""
    mark = console.paint("✔ ", "ok", stream=console.err) if console.err_color else ""
    checks = [f"\n{mark}Verification for {result.image} --",
              "The following checks were performed on each of these signatures:",
              "  - The cosign claims were validated"]
    if any(s.log_proofs for s in result.satisfied):
        checks.append("  - Existence of the claims in the transparency log was verified offline")
    checks.append("  - The signatures were verified against the specified public key" if keyed else
                  "  - The code-signing certificate was verified using trusted certificate authority certificates")
    console.note("\n".join(checks))
    if not console.json:
        console.print(json.dumps([_payload_json(result, o) for o in result.signatures if o.satisfied]))


def failure_message(result: ImageVerification, *, keyed: bool) -> str:
    """Why ``result`` is not verified: a headline, then one line per signature and per failure (no repeats)."""
    lines: list[str] = []
    if result.infrastructure_failure:
        lines.append(f"could not verify {result.image}: infrastructure error (the registry or the transparency log "
                     "failed), not a verdict on the signatures")
    elif not result.signatures:
        lines.append(f"no signatures found for {result.image}")
    else:
        count = plural(len(result.signatures), "signature")
        lines.append(f"none of the {count} of {result.image} satisfies the given {'key' if keyed else 'identity'}"
                     if len(result.signatures) > 1 else
                     f"the only signature of {result.image} does not satisfy the given "
                     f"{'key' if keyed else 'identity'}")
    lines.extend(outcome.describe(result.digest) for outcome in result.signatures)
    lines.extend(dict.fromkeys(error.reason for error in result.errors))
    return "\n".join(lines)


def _hint(result: ImageVerification) -> str | None:
    return next((h for h in (hint_for(e.reason) for e in result.errors) if h), None)


def as_json(result: ImageVerification) -> dict[str, Any]:
    signatures = []
    for outcome in result.signatures:
        signer = outcome.signer
        signatures.append({
            "layout": outcome.layout,
            "source": outcome.checked.source,
            "signedDigest": outcome.checked.signed_digest,
            "verified": outcome.satisfied,
            "cryptographicallyVerified": outcome.verified is not None,
            "signer": signer.subject if signer else None,
            "issuer": signer.issuer if signer else None,
            "logIndex": outcome.log_index,
            "reason": outcome.reason,
        })
    payloads = [_payload_json(result, outcome) for outcome in result.signatures if outcome.satisfied]
    return {
        "image": str(result.reference),
        "digest": result.digest,
        "verified": result.ok,
        "infrastructureError": result.infrastructure_failure,
        "errors": [error.reason for error in result.errors],
        "signatures": signatures,
        "payloads": payloads,
    }

