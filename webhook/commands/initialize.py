"""``signet initialize``: refresh the trust root through TUF and cache it, like ``cosign initialize``.

Prints the mirror, the TUF root version, the trust root's fingerprint and cache path, then the
logs and authorities it names with their validity (``webhook.trust.initialize``). Exit 0
refreshed, 1 the mirror could not be reached or its metadata did not verify (expired, bad
signatures: said so), 2 an unreadable root file.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

from webhook.commands.common import EXIT_OK, EXIT_REJECTED, EXIT_USAGE, read_file
from webhook.commands.console import Console
from webhook.commands.progress import Progress
from webhook.trust.embedded import PRODUCTION_MIRROR
from webhook.trust.initialize import describe_trusted_root
from webhook.trust.tuf_client import TufClient
from webhook.verify.trustroot import CertificateAuthority, TransparencyLog, TrustedRoot, ValidityWindow

EXIT_MEANINGS = {
    EXIT_OK: "refreshed: the trust root is verified and cached",
    EXIT_REJECTED: "not refreshed: the mirror failed or its metadata did not verify (see error)",
    EXIT_USAGE: "usage or input error: the TUF root file could not be read",
}


def configure(parser: argparse.ArgumentParser) -> None:
    # --mirror and --root are cosign's spellings (ARCHITECTURE.md §7 keeps them); --tuf-* is every other command's.
    parser.add_argument("--tuf-mirror", "--mirror", dest="mirror", metavar="URL",
                        help=f"TUF repository (default: Sigstore's production mirror, {PRODUCTION_MIRROR})")
    parser.add_argument("--tuf-root", "--root", dest="root", metavar="FILE",
                        help="trusted TUF root.json to start from (default: the embedded root of that mirror, "
                             "else the cached one)")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    console = Console.from_args(args)
    bootstrap = read_file(args.root, "TUF root") if args.root is not None else None
    client = TufClient(args.mirror or PRODUCTION_MIRROR, bootstrap_root=bootstrap)
    with Progress(console.err, f"refreshing the trust root from {client.mirror_url}"):
        document = client.refresh()  # TrustError: exit 1, with the reason (expired, signatures…)
    root = TrustedRoot.from_json(document)
    version = client.cached_root_version()
    if console.json:
        console.document(as_json(client, root, version), EXIT_OK)
        return EXIT_OK
    console.print(f"TUF mirror:   {client.mirror_url}")
    console.print(f"TUF root:     version {version if version is not None else 'unknown'}")
    console.print(f"Trust root:   sha256:{root.fingerprint}")
    console.print(f"Cached at:    {client.cached_target_path}")
    console.print(describe_trusted_root(root))
    return EXIT_OK


def _time(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _window(window: ValidityWindow) -> dict[str, str | None]:
    return {"start": _time(window.start), "end": _time(window.end)}


def _log(log: TransparencyLog) -> dict[str, Any]:
    return {"baseUrl": log.base_url, "keyDetails": log.key_details, "logId": log.log_id.hex(),
            "validFor": _window(log.valid_for)}


def _authority(ca: CertificateAuthority) -> dict[str, Any]:
    return {"subject": ca.subject or ca.chain[0].subject.rfc4514_string(), "uri": ca.uri or None,
            "validFor": _window(ca.valid_for),
            "certificates": [cert.subject.rfc4514_string() for cert in ca.chain]}


def as_json(client: TufClient, root: TrustedRoot, version: int | None) -> dict[str, Any]:
    return {"tufMirror": client.mirror_url, "tufRootVersion": version, "fingerprint": f"sha256:{root.fingerprint}",
            "cachedAt": str(client.cached_target_path),
            "transparencyLogs": [_log(log) for log in root.tlogs], "ctLogs": [_log(log) for log in root.ctlogs],
            "certificateAuthorities": [_authority(ca) for ca in root.certificate_authorities],
            "timestampAuthorities": [_authority(ca) for ca in root.timestamp_authorities]}
