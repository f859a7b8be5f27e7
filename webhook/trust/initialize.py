"""``signet initialize``: refresh the trust root through TUF, cache it and show what it trusts.

Like ``cosign initialize``: run once (e.g. in an init container or on a workstation) so that
later commands start from a fresh cache, and so an admin can see which logs and CAs the
trust root names before relying on it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO, TypeVar

from cryptography import x509
from tuf.ngclient.fetcher import FetcherInterface

from webhook.errors import TrustError
from webhook.trust.embedded import PRODUCTION_MIRROR
from webhook.trust.tuf_client import TufClient
from webhook.verify.trustroot import CertificateAuthority, TransparencyLog, TrustedRoot, ValidityWindow

_T = TypeVar("_T")


def initialize(
    mirror: str | None,
    root_path: str | Path | None,
    out: TextIO,
    *,
    err: TextIO | None = None,
    cache_dir: Path | None = None,
    fetcher: FetcherInterface | None = None,
) -> int:
    """Refresh from ``mirror`` (default production) starting at ``root_path`` (default embedded).

    Returns the exit code: 0 refreshed, 1 the trust root could not be obtained (reason on
    ``err``), 2 the root file could not be read.
    """
    err = err if err is not None else sys.stderr
    mirror_url = mirror or PRODUCTION_MIRROR
    bootstrap: bytes | None = None
    if root_path is not None:
        try:
            bootstrap = Path(root_path).read_bytes()
        except OSError as exc:
            print(f"error: cannot read TUF root {root_path}: {exc.strerror or exc}", file=err)
            return 2
    client = TufClient(mirror_url, bootstrap_root=bootstrap, cache_dir=cache_dir, fetcher=fetcher)
    try:
        document = client.refresh()
        root = TrustedRoot.from_json(document)
    except TrustError as exc:
        print(f"error: {exc.reason}", file=err)
        return 1
    version = client.cached_root_version()
    print(f"TUF mirror:   {client.mirror_url}", file=out)
    print(f"TUF root:     version {version if version is not None else 'unknown'}", file=out)
    print(f"Trust root:   sha256:{root.fingerprint}", file=out)
    print(f"Cached at:    {client.cached_target_path}", file=out)
    print(describe_trusted_root(root), file=out)
    return 0


def describe_trusted_root(root: TrustedRoot) -> str:
    """A human listing of the logs and authorities a trust root names."""
    lines: list[str] = []
    _section(lines, "Transparency logs", root.tlogs, _describe_log)
    _section(lines, "CT logs", root.ctlogs, _describe_log)
    _section(lines, "Fulcio certificate authorities", root.certificate_authorities, _describe_ca)
    _section(lines, "Timestamp authorities", root.timestamp_authorities, _describe_ca)
    return "\n".join(lines)


def _section(lines: list[str], title: str, items: Iterable[_T], describe: Callable[[_T], list[str]]) -> None:
    entries = list(items)
    lines.append(f"{title} ({len(entries)}):")
    if not entries:
        lines.append("  (none)")
    for entry in entries:
        lines.extend(f"  {line}" if i == 0 else f"    {line}" for i, line in enumerate(describe(entry)))


def _describe_log(log: TransparencyLog) -> list[str]:
    return [
        log.base_url or "(no base URL)",
        f"key: {log.key_details or type(log.key).__name__}  log ID: {log.log_id.hex()}",
        f"valid: {_window(log.valid_for)}",
    ]


def _describe_ca(ca: CertificateAuthority) -> list[str]:
    first = ca.chain[0]
    lines = [
        ca.subject or first.subject.rfc4514_string(),
        f"valid: {_window(ca.valid_for)}",
    ]
    if ca.uri:
        lines.append(f"uri: {ca.uri}")
    lines.extend(f"cert: {_cert_line(cert)}" for cert in ca.chain)
    return lines


def _cert_line(cert: x509.Certificate) -> str:
    return (f"{cert.subject.rfc4514_string()} "
            f"[{_time(cert.not_valid_before_utc)} .. {_time(cert.not_valid_after_utc)}]")


def _window(window: ValidityWindow) -> str:
    end = _time(window.end) if window.end else "open"
    return f"{_time(window.start)} .. {end}"


def _time(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
