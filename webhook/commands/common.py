"""What the commands share: exit codes, trust-root selection and reading user files."""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from webhook.errors import InputError, TrustError
from webhook.verify.keys import PublicKey, load_pem_public_key
from webhook.verify.trustroot import TrustedRoot

EXIT_OK = 0
EXIT_REJECTED = 1
EXIT_USAGE = 2


def embedded_trusted_root(instance: str = "prod") -> TrustedRoot:
    """The trust root shipped in the package (``prod`` or ``staging``)."""
    raw = resources.files("webhook.trust").joinpath("embedded", instance, "trusted_root.json").read_bytes()
    return TrustedRoot.from_json(raw)


def load_trusted_root(path: str | None, *, staging: bool = False) -> TrustedRoot:
    """The trust root named on the command line, else the embedded one; a bad file is an input error."""
    if path is None:
        return embedded_trusted_root("staging" if staging else "prod")
    try:
        return TrustedRoot.from_file(path)
    except TrustError as exc:
        raise InputError(f"--trusted-root {path}: {exc.reason}") from exc


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
