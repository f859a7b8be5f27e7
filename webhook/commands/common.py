"""What the commands share: exit codes, trust-root selection and reading user files."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from webhook.errors import InputError, TrustError
from webhook.trust.embedded import production_trusted_root_json, staging_trusted_root_json
from webhook.verify.keys import PublicKey, load_pem_public_key
from webhook.verify.trustroot import TrustedRoot

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def load_trusted_root(path: str | None, *, staging: bool = False) -> TrustedRoot:
    """The trust root named on the command line, else the embedded one; a bad file is an input error."""
    if path is None:
        return TrustedRoot.from_json(staging_trusted_root_json() if staging else production_trusted_root_json())
    try:
        return TrustedRoot.from_file(path)
    except TrustError as exc:
        raise InputError(f"--trusted-root {path}: {exc.reason}") from exc


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the trust root comes from: a file, a TUF mirror, or (default) embedded / cosign's env."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--trusted-root", metavar="FILE", help="trusted_root.json, no TUF (default: embedded)")
    source.add_argument("--tuf-mirror", metavar="URL", help="refresh the trust root from this TUF repository")
    parser.add_argument("--tuf-root", metavar="FILE", help="TUF root.json to start --tuf-mirror from")


def trusted_root_from_args(args: argparse.Namespace, *, staging: bool = False) -> TrustedRoot:
    """The trust root the flags name; cosign's SIGSTORE_* variables override parts of the default one.

    A TUF refresh that fails is a TrustError (infrastructure, exit 1); a bad file is an input error.
    """
    if args.tuf_root and not args.tuf_mirror:
        raise InputError("--tuf-root needs --tuf-mirror")
    if args.trusted_root:
        return load_trusted_root(args.trusted_root)
    if args.tuf_mirror:
        from webhook.trust.tuf_client import TufClient

        bootstrap = read_file(args.tuf_root, "TUF root") if args.tuf_root else None
        return TufClient(args.tuf_mirror, bootstrap_root=bootstrap).refresh_trusted_root()
    from webhook.trust.env_roots import trusted_root_from_env

    base = staging_trusted_root_json() if staging else production_trusted_root_json()
    from_env = trusted_root_from_env(os.environ, base=base)
    return TrustedRoot.from_json(from_env if from_env is not None else base)


def read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def load_key(path: str) -> PublicKey:
    from webhook.errors import VerificationError

    try:
        return load_pem_public_key(read_file(path, "key"), f"key {path}")
    except VerificationError as exc:
        raise InputError(exc.reason) from exc


def fail(message: str) -> None:
    print(f"Error: {message}", file=sys.stderr)
