"""What the commands share: exit codes, trust-root selection and reading user files."""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from webhook.commands.console import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from webhook.commands.hints import diagnose_pem, diagnose_pem_file
from webhook.errors import InputError, TrustError, VerificationError
from webhook.trust.embedded import production_trusted_root_json, staging_trusted_root_json
from webhook.verify.keys import PublicKey, load_pem_public_key
from webhook.verify.trustroot import TrustedRoot

__all__ = ["EXIT_OK", "EXIT_REJECTED", "EXIT_USAGE", "add_trust_arguments", "expand_paths", "load_key",
           "load_trusted_root", "read_file", "trusted_root_from_args"]

ROOT_FILE_ENV = "SIGSTORE_ROOT_FILE"
_MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def load_trusted_root(path: str | None, *, staging: bool = False) -> TrustedRoot:
    """The trust root named on the command line, else the embedded one; a bad file is an input error."""
    if path is None:
        return TrustedRoot.from_json(staging_trusted_root_json() if staging else production_trusted_root_json())
    try:
        return TrustedRoot.from_file(path)
    except TrustError as exc:
        raise InputError(f"--trusted-root {path}: {exc.reason}") from exc


def add_trust_arguments(parser: argparse.ArgumentParser) -> None:
    """The trio every command needing a trust root takes: a file, or a TUF mirror and its root."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--trusted-root", metavar="FILE",
                        help="trusted_root.json to use as is, no TUF (default: the embedded production root, "
                             "or cosign's SIGSTORE_ROOT_FILE and key variables when set)")
    source.add_argument("--tuf-mirror", metavar="URL",
                        help="refresh the trust root from this TUF repository (default: none, no refresh)")
    parser.add_argument("--tuf-root", metavar="FILE",
                        help="TUF root.json to start --tuf-mirror from (default: the embedded one)")


def trusted_root_from_args(args: argparse.Namespace, *, staging: bool = False) -> TrustedRoot:
    """The trust root the flags name; cosign's SIGSTORE_* variables override parts of the default one.

    A TUF refresh that fails is a TrustError (infrastructure, exit 1); a bad file or variable is an
    input error (exit 2).
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
    try:
        from_env = trusted_root_from_env(os.environ, base=base)
        return TrustedRoot.from_json(from_env if from_env is not None else base)
    except TrustError as exc:
        # The variables are the user's input: a bad file there is exit 2, said precisely.
        root_file = os.environ.get(ROOT_FILE_ENV)
        detail = diagnose_pem_file(root_file) if root_file and ROOT_FILE_ENV in exc.reason else None
        reason = f"{ROOT_FILE_ENV}={root_file}: {detail}" if detail else exc.reason
        raise InputError(reason) from exc


def read_file(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def load_key(path: str) -> PublicKey:
    """A PEM public key file; anything else is an input error saying what the file holds instead."""
    data = read_file(path, "key")
    try:
        return load_pem_public_key(data, f"key {path}")
    except VerificationError as exc:
        detail = diagnose_pem(data, expect="PUBLIC KEY")
        if b"PRIVATE KEY-----" in data:
            detail = "it holds a private key: give the public key (openssl pkey -in KEY -pubout)"
        raise InputError(f"key {path}: {detail}" if detail else exc.reason) from exc


def expand_paths(paths: Sequence[str], *, recursive: bool = False, suffixes: tuple[str, ...] = _MANIFEST_SUFFIXES,
                 what: str = "manifest") -> Iterator[str]:
    """Files as given, ``-`` as is, and the ``suffixes`` files of directories (sorted; ``recursive`` descends).

    A missing path is an input error; hidden entries (a mounted ConfigMap's ``..data``) are skipped.
    """
    for path in paths:
        if path == "-":
            yield path
            continue
        entry = Path(path)
        if entry.is_dir():
            pattern = entry.rglob("*") if recursive else entry.iterdir()
            found = sorted(p for p in pattern if p.is_file() and p.suffix in suffixes
                           and not any(part.startswith(".") for part in p.relative_to(entry).parts))
            if not found:
                raise InputError(f"{path}: no {'/'.join(suffixes)} files in this directory")
            yield from (str(p) for p in found)
        elif entry.exists():
            yield path
        else:
            raise InputError(f"cannot read {what} {path}: No such file or directory")
