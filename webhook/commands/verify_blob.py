"""``signet verify-blob``: verify a Sigstore bundle over a file or a digest, like cosign verify-blob."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

from webhook.commands.common import (
    EXIT_OK,
    EXIT_REJECTED,
    EXIT_USAGE,
    add_trust_arguments,
    load_key,
    read_file,
    trusted_root_from_args,
)
from webhook.commands.console import Console
from webhook.errors import InputError, PolicyError, VerificationError
from webhook.verify.bundle import Bundle
from webhook.verify.identity import Identity
from webhook.verify.material import Digest
from webhook.verify.verifier import Artifact, Verifier

_DIGEST = re.compile(r"^sha256:([0-9a-fA-F]{64})$")

EXIT_MEANINGS = {
    EXIT_OK: "verified: the bundle signs the artifact, by the given identity (or key)",
    EXIT_REJECTED: "not verified: the bundle does not verify or was signed by someone else",
    EXIT_USAGE: "usage or input error (unreadable or malformed file, bad flag): nothing was verified",
}


def add_identity_arguments(parser: argparse.ArgumentParser) -> None:
    """The cosign identity flags, shared by verify and verify-blob."""
    subject = parser.add_mutually_exclusive_group()
    subject.add_argument("--certificate-identity", metavar="ID",
                         help="exact signer identity (SAN) (no default: this, the regexp or --key is needed)")
    subject.add_argument("--certificate-identity-regexp", metavar="RE",
                         help="regexp searched for in the SAN, as cosign does (Go/RE2 syntax; anchor with ^...$) "
                              "(no default)")
    issuer = parser.add_mutually_exclusive_group()
    issuer.add_argument("--certificate-oidc-issuer", metavar="URL",
                        help="exact OIDC issuer (no default: this, the regexp or --key is needed)")
    issuer.add_argument("--certificate-oidc-issuer-regexp", metavar="RE",
                        help="regexp searched for in the issuer, as cosign does (Go/RE2 syntax; anchor with ^...$) "
                             "(no default)")
    parser.add_argument("--key", metavar="PEM",
                        help="verify with this public key instead of an identity (default: none, keyless)")
    add_trust_arguments(parser)


def identity_from_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Identity | None:
    """The identity policy the flags ask for; None with --key. Misuse is a usage error (exit 2)."""
    has_subject = args.certificate_identity is not None or args.certificate_identity_regexp is not None
    has_issuer = args.certificate_oidc_issuer is not None or args.certificate_oidc_issuer_regexp is not None
    if args.key:
        if has_subject or has_issuer:
            parser.error("--key cannot be combined with certificate identity flags")
        return None
    if not (has_subject and has_issuer):
        parser.error("give --certificate-identity[-regexp] and --certificate-oidc-issuer[-regexp], or --key")
    try:
        return Identity(
            subject=args.certificate_identity, subject_regexp=args.certificate_identity_regexp,
            issuer=args.certificate_oidc_issuer, issuer_regexp=args.certificate_oidc_issuer_regexp,
            regexp_mode="search",  # cosign's flags: Go's MatchString, a match anywhere in the value
        )
    except PolicyError as exc:
        parser.error(exc.reason)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", metavar="FILE_OR_DIGEST", help="the artifact, or sha256:<hex> of it")
    parser.add_argument("--bundle", required=True, metavar="F", help="the Sigstore bundle (.sigstore.json)")
    add_identity_arguments(parser)
    parser.add_argument("--staging", action="store_true", help="use the embedded staging trust root instead of "
                                                                "production")


def artifact_from_arg(value: str) -> Artifact:
    """A ``sha256:<hex>`` that is not a file on disk is a digest; anything else is a path."""
    match = _DIGEST.match(value)
    if match and not Path(value).exists():
        return Artifact(Digest("sha256", bytes.fromhex(match.group(1))))
    return Artifact.from_bytes(read_file(value, "artifact"))


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    console = Console.from_args(args)
    policy = identity_from_args(parser, args)
    key = load_key(args.key) if args.key else None
    artifact = artifact_from_arg(args.artifact)
    bundle_raw = read_file(args.bundle, "bundle")
    trusted_root = trusted_root_from_args(args, staging=args.staging)
    try:
        bundle = Bundle.from_json(bundle_raw)
    except VerificationError as exc:
        # A file that is not a bundle is the user's input, not a signature that failed (exit 2).
        detail = exc.reason if exc.step in (None, "bundle") else exc.diagnostics()
        raise InputError(f"bundle {args.bundle}: {detail}") from exc
    try:
        result = Verifier(trusted_root).verify_bundle(bundle, artifact, policy=policy, key=key)
    except VerificationError as exc:
        if console.json:
            console.document({"verified": False, "error": {"type": "verification", "message": exc.diagnostics()}},
                             EXIT_REJECTED)
        console.error(exc.diagnostics(), exit_code=EXIT_REJECTED, kind="verification", document=False)
        return EXIT_REJECTED
    signer = result.signer
    who = f"{signer.subject} ({signer.issuer})" if signer else "the given key"
    if console.json:
        document: dict[str, Any] = {"verified": True, "signer": signer.subject if signer else None,
                                    "issuer": signer.issuer if signer else None, "logIndex": result.log_index,
                                    "keyVerified": key is not None}
        console.document(document, EXIT_OK)
    mark = console.paint("✔ ", "ok", stream=console.err) if console.err_color else ""
    console.note(f"{mark}Verified OK: signed by {who}")
    return EXIT_OK
