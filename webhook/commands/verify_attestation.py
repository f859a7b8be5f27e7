"""``signet verify-attestation IMAGE --type URI``: verify an image's attestations, like ``cosign verify-attestation``.

Finds the image's attestations (``.att`` layers and attestation bundles, OCI referrers included),
verifies them with the identity (or key) flags, keeps those of ``--type`` (a URI or one of cosign's
names) and, as cosign does, requires every one of them to pass each ``--policy`` (``.cel`` or
``.rego``, evaluated in the policy sandbox). The verified envelopes go to stdout, one JSON per
line; the checks and any failure to stderr. Exit 0 verified, 1 not (or registry/Rekor failed,
said so), 2 for usage and input errors (an unreadable policy or one that does not compile).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from webhook.commands.common import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, load_key, read_file, trusted_root_from_args
from webhook.commands.console import Console, plural
from webhook.commands.hints import hint_for
from webhook.commands.progress import Progress
from webhook.commands.verify_blob import add_identity_arguments, identity_from_args
from webhook.config import parse_mirrors
from webhook.decision.attested import SignerRule, signed_by, signer_attributes
from webhook.errors import InputError, PolicyError
from webhook.images import ImageSignatures, RekorLookup, check_image
from webhook.images.attestations import CheckedAttestation
from webhook.oci.client import RegistryClient
from webhook.oci.reference import ImageReference, parse_reference
from webhook.policy.attestations import PREDICATE_TYPE_NAMES, compiled_policy, predicate_type_uri
from webhook.policy.expressions import CompiledPolicy, PolicyDeniedError, Scope, attestation_document
from webhook.policy.sandbox import Sandbox
from webhook.rekor import RekorClient, rekor_v1_url
from webhook.verify.identity import Policy
from webhook.verify.keys import PublicKey
from webhook.verify.verifier import Verifier

_LANGUAGES = {".cel": "cel", ".rego": "rego"}

EXIT_MEANINGS = {
    EXIT_OK: "verified: attestations of the type, signed as asked, and every policy accepts them",
    EXIT_REJECTED: "not verified: none found or accepted, a policy refused one, or the registry or Rekor failed",
    EXIT_USAGE: "usage or input error (bad flag, unreadable or invalid policy file): nothing was verified",
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("image", metavar="IMAGE", help="image reference: registry/repo[:tag][@digest]")
    parser.add_argument("--type", default="custom", metavar="URI",
                        help="predicate type: a URI, or one of cosign's names "
                             f"({', '.join(PREDICATE_TYPE_NAMES)}); default: custom")
    parser.add_argument("--policy", action="append", default=[], metavar="FILE",
                        help="a .cel or .rego policy every attestation of the type must pass (repeatable)")
    add_identity_arguments(parser)
    parser.add_argument("--allow-http-registry", action="store_true",
                        help="reach registries on loopback over plain HTTP")
    parser.add_argument("--registry-mirror", action="append", default=[], metavar="HOST=URL",
                        help="fetch HOST's images from URL (repeatable)")
    parser.add_argument("--rekor-url", metavar="URL",
                        help="Rekor v1 for .att layers without a bundle annotation (default: from the trust root)")
    parser.add_argument("--include-index-signatures", action="store_true",
                        help="accept attestations of the multi-arch index that lists a platform manifest")


@dataclass
class Judged:
    """What the command found: attestations of the type that verified, and why the others did not count."""

    found: ImageSignatures
    predicate_type: str
    accepted: list[CheckedAttestation] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    other_types: list[str] = field(default_factory=list)
    policy_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.accepted) and not self.policy_errors


def load_policies(paths: list[str]) -> list[tuple[str, CompiledPolicy]]:
    """Each ``--policy`` file compiled by its extension; any problem is an input error."""
    policies = []
    for path in paths:
        language = _LANGUAGES.get(Path(path).suffix.lower())
        if language is None:
            raise InputError(f"--policy {path}: the file must end in .cel or .rego")
        try:
            text = read_file(path, "policy").decode("utf-8")
            policies.append((path, compiled_policy(language, text, Scope.ATTESTATION)))
        except UnicodeDecodeError as exc:
            raise InputError(f"--policy {path}: not UTF-8 text ({exc.reason})") from None
        except PolicyError as exc:
            raise InputError(f"--policy {path}: {exc.reason}") from None
    return policies


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    identity = identity_from_args(parser, args)
    key = load_key(args.key) if args.key else None
    ref = parse_reference(args.image)
    policies = load_policies(args.policy)
    root = trusted_root_from_args(args)
    rekor_url = args.rekor_url or rekor_v1_url(root)
    console = Console.from_args(args)
    with Progress(console.err, f"verifying the attestations of {ref}"):
        found = asyncio.run(_find(args, ref, verifier=Verifier(root), key=key, rekor_url=rekor_url))
    judged = judge(found, identity, predicate_type_uri(args.type), policies)
    code = EXIT_OK if judged.ok else EXIT_REJECTED
    if console.json:
        document = as_json(judged)
        if not judged.ok:
            kind = "infrastructure" if found.errors and not judged.refused and not judged.policy_errors \
                else "verification"
            document["error"] = {"type": kind, "message": failure(judged)}
        console.document(document, code)
    else:
        print_text(judged, keyed=key is not None, console=console)
    return code


async def _find(args: argparse.Namespace, ref: ImageReference, *, verifier: Verifier, key: PublicKey | None,
                rekor_url: str | None) -> ImageSignatures:
    mirrors = parse_mirrors(args.registry_mirror)
    async with RegistryClient(allow_http=args.allow_http_registry, mirrors=mirrors) as client, RekorClient() as rk:
        rekor = RekorLookup(rk, rekor_url) if rekor_url else None
        return await check_image(ref, registry_client=client, verifier=verifier, key=key,
                                 rekor=rekor, include_index_signatures=args.include_index_signatures,
                                 include_attestations=True)


def judge(found: ImageSignatures, identity: Policy | None, predicate_type: str,
          policies: list[tuple[str, CompiledPolicy]]) -> Judged:
    """Keep the attestations signed as asked and of the type; every one must pass every policy (cosign's rule)."""
    judged = Judged(found, predicate_type)
    rule = SignerRule(identity, log_required=identity is not None, log_url=None)
    for checked in found.attestations:
        why = signed_by(checked, rule, found.key_verified)
        if why is not None:
            judged.refused.append(f"{checked.describe()}: {why}")
        elif checked.verified is not None and checked.verified.predicate_type != predicate_type:
            judged.other_types.append(checked.verified.predicate_type)
        else:
            judged.accepted.append(checked)
    if not policies or not judged.accepted:
        return judged
    with Sandbox(workers=1) as sandbox:
        for checked in judged.accepted:
            verified = checked.verified
            assert verified is not None
            for path, policy in policies:
                try:
                    sandbox.evaluate(policy, attestation_document(verified.statement_json, signer_attributes(verified)))
                except PolicyDeniedError as exc:
                    judged.policy_errors.append(f"{checked.describe()}: {path}: {exc.reason}")
    return judged


def envelope_json(checked: CheckedAttestation) -> dict[str, Any]:
    """The DSSE envelope, as cosign prints a verified attestation."""
    assert checked.verified is not None
    envelope = checked.verified.envelope
    return {"payloadType": envelope.payload_type, "payload": base64.b64encode(envelope.payload).decode(),
            "signatures": [{"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode()} for s in envelope.signatures]}


def print_text(judged: Judged, *, keyed: bool, console: Console | None = None) -> None:
    found = judged.found
    image = f"{found.reference.name}@{found.digest}"
    if judged.ok:
        err = sys.stderr
        print(f"\nVerification for {image} --", file=err)
        print("The following checks were performed on each of these signatures:", file=err)
        print("  - The cosign claims were validated", file=err)
        if any(a.verified is not None and a.verified.log_proofs for a in judged.accepted):
            print("  - Existence of the claims in the transparency log was verified offline", file=err)
        print("  - The signatures were verified against the specified public key" if keyed else
              "  - The code-signing certificate was verified using trusted certificate authority certificates",
              file=err)
        print(f"  - The statements name the image digest and the predicate type {judged.predicate_type}", file=err)
        first = judged.accepted[0].verified
        if first is not None and first.signer is not None:
            print(f"Certificate subject: {first.signer.subject}", file=err)
            print(f"Certificate issuer URL: {first.signer.issuer}", file=err)
        for checked in judged.accepted:
            print(json.dumps(envelope_json(checked), separators=(",", ":")))
        return
    details = [*judged.policy_errors, *judged.refused, *(f"infrastructure error: {e.reason}" for e in found.errors)]
    hint = next((h for h in (hint_for(e.reason) for e in found.errors) if h), None)
    (console or Console()).error("\n".join([failure(judged), *details]), exit_code=EXIT_REJECTED,
                                 kind="verification", hint=hint, document=False)


def failure(judged: Judged) -> str:
    """One line: why nothing verified."""
    found = judged.found
    image = f"{found.reference.name}@{found.digest}"
    if judged.policy_errors:
        return f"{plural(len(judged.policy_errors), 'validation error')} occurred"
    if judged.other_types:
        return (f"none of the attestations matched the predicate type {judged.predicate_type}, found: "
                + ", ".join(sorted(set(judged.other_types))))
    if judged.refused:
        return f"none of the {plural(len(judged.refused), 'attestation')} of {image} verified as required"
    if found.errors:
        return f"could not look for attestations of {image}: infrastructure error (registry or transparency log)"
    return f"no attestations found for {image}"


def as_json(judged: Judged) -> dict[str, Any]:
    found = judged.found
    accepted = {id(a) for a in judged.accepted}
    entries = []
    for checked in found.attestations:
        verified = checked.verified
        entries.append({
            "layout": checked.layout, "source": checked.source, "subjectDigest": checked.subject_digest,
            "predicateType": verified.predicate_type if verified else checked.predicate_type_hint,
            "verified": id(checked) in accepted,
            "signer": signer_attributes(verified) if verified else None,
            "logIndex": verified.log_index if verified else None,
            "reason": checked.error.diagnostics() if checked.error else None,
        })
    return {"image": str(found.reference), "digest": found.digest, "predicateType": judged.predicate_type,
            "verified": judged.ok,
            "policyErrors": judged.policy_errors, "attestations": entries,
            "statements": [a.verified.statement_json for a in judged.accepted if a.verified is not None],
            "infrastructureErrors": [e.reason for e in found.errors]}
