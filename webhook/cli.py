"""The ``signet`` command line: parses flags and dispatches; each command lives in ``webhook.commands``.

Exit codes (ARCHITECTURE.md §7): 0 verified/allowed, 1 rejected/denied, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from webhook import __version__
from webhook.commands import denials, evaluate, initialize, serve, verify_blob, verify_image
from webhook.commands.common import EXIT_REJECTED, EXIT_USAGE, fail
from webhook.errors import InfrastructureError, InputError, VerificationError

Runner = Callable[[argparse.ArgumentParser, argparse.Namespace], int]


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, tuple[argparse.ArgumentParser, Runner]]]:
    parser = argparse.ArgumentParser(prog="signet", description="Verify Sigstore signatures of images and blobs.")
    parser.add_argument("--version", action="version", version=f"signet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands: dict[str, tuple[argparse.ArgumentParser, Runner]] = {}

    p = sub.add_parser("verify-blob", help="verify a Sigstore bundle over a file or digest")
    verify_blob.configure(p)
    commands["verify-blob"] = (p, verify_blob.run)

    p = sub.add_parser("verify", help="verify the signatures of an image in its registry, like cosign verify")
    verify_image.configure(p)
    commands["verify"] = (p, verify_image.run)

    p = sub.add_parser("initialize", help="fetch and cache the trust root through TUF")
    initialize.configure(p)
    commands["initialize"] = (p, initialize.run)

    p = sub.add_parser("serve", help="run the admission webhook server")
    serve.configure(p)
    commands["serve"] = (p, serve.run)

    p = sub.add_parser("evaluate", help="decide workload manifests against policies, offline from the cluster")
    evaluate.configure(p)
    commands["evaluate"] = (p, evaluate.run)

    p = sub.add_parser("denials", help="list recent denials from the cluster's Events or the JSON audit log")
    denials.configure(p)
    commands["denials"] = (p, denials.run)
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")
    sub_parser, runner = commands[args.command]
    try:
        return runner(sub_parser, args)
    except InputError as exc:
        fail(exc.diagnostics())
        return EXIT_USAGE
    except VerificationError as exc:
        fail(exc.diagnostics())
        return EXIT_REJECTED
    except InfrastructureError as exc:
        fail(exc.diagnostics())
        return EXIT_REJECTED
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
