"""``signet initialize``: refresh the trust root through TUF and cache it, like ``cosign initialize``."""

from __future__ import annotations

import argparse
import sys

from webhook.trust.initialize import initialize


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mirror", metavar="URL", help="TUF repository (default: Sigstore production)")
    parser.add_argument("--root", metavar="F", help="trusted TUF root.json to start from (default: embedded)")


def run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    return initialize(args.mirror, args.root, sys.stdout, err=sys.stderr)
