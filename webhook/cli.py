"""The ``signet`` command line: parses flags and dispatches; each command lives in ``webhook.commands``.

Exit codes (ARCHITECTURE.md §7): 0 verified/allowed, 1 rejected/denied, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType

from webhook import __version__
from webhook.commands import denials, evaluate, initialize, serve, verify_blob, verify_image
from webhook.commands.common import EXIT_REJECTED, EXIT_USAGE, fail
from webhook.errors import InfrastructureError, InputError, VerificationError

Runner = Callable[[argparse.ArgumentParser, argparse.Namespace], int]

# Each command module offers configure(parser) and run(parser, args) -> exit code.
COMMANDS: tuple[tuple[str, ModuleType, str], ...] = (
    ("verify-blob", verify_blob, "verify a Sigstore bundle over a file or digest"),
    ("verify", verify_image, "verify the signatures of an image in its registry, like cosign verify"),
    ("initialize", initialize, "fetch and cache the trust root through TUF"),
    ("serve", serve, "run the admission webhook server"),
    ("evaluate", evaluate, "decide workload manifests against policies, offline from the cluster"),
    ("denials", denials, "list recent denials from the cluster's Events or the JSON audit log"),
)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, tuple[argparse.ArgumentParser, Runner]]]:
    parser = argparse.ArgumentParser(
        prog="signet", description="Admit only Sigstore-signed images: admission webhook and verification tools.")
    parser.add_argument("--version", action="version", version=f"signet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details to stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands: dict[str, tuple[argparse.ArgumentParser, Runner]] = {}

    for name, module, summary in COMMANDS:
        p = sub.add_parser(name, help=summary)
        module.configure(p)
        commands[name] = (p, module.run)
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
