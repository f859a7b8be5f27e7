"""``signet verify IMAGE``: verify an image's signatures in the registry, like ``cosign verify``.

Exit 0 when at least one signature satisfies the identity (or key), 1 when none does or the
registry/Rekor failed (said so distinctly), 2 for usage and input errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from webhook.commands.common import EXIT_OK, EXIT_REJECTED, load_key, trusted_root_from_args
from webhook.commands.verify_blob import add_identity_arguments, identity_from_args
from webhook.config import parse_mirrors
from webhook.imageverify import LAYOUT_BUNDLE, ImageVerification, RekorLookup, SignatureOutcome, verify_image
from webhook.oci.client import RegistryClient
from webhook.oci.reference import ImageReference, parse_reference
from webhook.rekor import RekorClient, rekor_v1_url
from webhook.verify.identity import Policy
from webhook.verify.keys import PublicKey
from webhook.verify.verifier import Verifier


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image reference: registry/repo[:tag][@digest]")
    add_identity_arguments(parser)
    parser.add_argument("--allow-http-registry", action="store_true",
                        help="reach registries on loopback over plain HTTP")
    parser.add_argument("--registry-mirror", action="append", default=[], metavar="HOST=URL",
                        help="fetch HOST's images from URL (repeatable), e.g. index.docker.io=http://127.0.0.1:5000")
    parser.add_argument("--rekor-url", metavar="URL",
                        help="Rekor v1 for signatures without a bundle annotation (default: from the trust root)")
    parser.add_argument("--include-index-signatures", action="store_true",
                        help="accept a platform manifest covered by a verified signature on its multi-arch index")
    parser.add_argument("--output", choices=("text", "json"), default="text", help="output format")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    policy = identity_from_args(parser, args)
    key = load_key(args.key) if args.key else None
    ref = parse_reference(args.image)
    trusted_root = trusted_root_from_args(args)
    rekor_url = args.rekor_url or rekor_v1_url(trusted_root)
    result = asyncio.run(_verify(ref, args=args, policy=policy, key=key, verifier=Verifier(trusted_root),
                                 rekor_url=rekor_url))
    if args.output == "json":
        print(json.dumps(as_json(result), indent=2))
    else:
        _print_text(result, key is not None)
    return EXIT_OK if result.ok else EXIT_REJECTED


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


def _print_text(result: ImageVerification, keyed: bool) -> None:
    if result.ok:
        print(f"\nVerification for {result.image} --", file=sys.stderr)
        print("The following checks were performed on each of these signatures:", file=sys.stderr)
        print("  - The cosign claims were validated", file=sys.stderr)
        if any(s.log_proofs for s in result.satisfied):
            print("  - Existence of the claims in the transparency log was verified offline", file=sys.stderr)
        if keyed:
            print("  - The signatures were verified against the specified public key", file=sys.stderr)
        else:
            print("  - The code-signing certificate was verified using trusted certificate authority certificates",
                  file=sys.stderr)
        payloads = [_payload_json(result, o) for o in result.signatures if o.satisfied]
        print(json.dumps(payloads))
        return
    if result.infrastructure_failure:
        print(f"Error: could not verify {result.image}: infrastructure error (registry or transparency log), "
              "not a verdict on the signatures", file=sys.stderr)
    elif not result.signatures:
        print(f"Error: no signatures found for {result.image}", file=sys.stderr)
    else:
        print(f"Error: none of the {len(result.signatures)} signature(s) of {result.image} satisfies the "
              "given identity" + (" (key)" if keyed else ""), file=sys.stderr)
    print(result.explain(), file=sys.stderr)


def as_json(result: ImageVerification) -> dict[str, Any]:
    signatures = []
    for outcome in result.signatures:
        signer = outcome.signer
        signatures.append({
            "layout": outcome.layout,
            "source": outcome.checked.source,
            "signed_digest": outcome.checked.signed_digest,
            "verified": outcome.satisfied,
            "cryptographically_verified": outcome.verified is not None,
            "signer": signer.subject if signer else None,
            "issuer": signer.issuer if signer else None,
            "log_index": outcome.log_index,
            "reason": outcome.reason,
        })
    payloads = [_payload_json(result, outcome) for outcome in result.signatures if outcome.satisfied]
    return {
        "image": str(result.reference),
        "digest": result.digest,
        "verified": result.ok,
        "infrastructure_error": result.infrastructure_failure,
        "errors": [error.reason for error in result.errors],
        "signatures": signatures,
        "payloads": payloads,
    }

