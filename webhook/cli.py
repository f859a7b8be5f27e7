"""The ``signet`` command line: parses flags and dispatches; each command lives in ``webhook.commands``.

Exit codes (ARCHITECTURE.md §7): 0 verified/allowed, 1 rejected/denied, 2 usage or input error.
Global flags (``-v``, ``--log-level``, ``-o/--output``) work before or after the command; an
unknown flag prints the usage of the command it was given to.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NoReturn

from webhook import __version__
from webhook.commands import (
    denials,
    evaluate,
    initialize,
    policy,
    serve,
    verify_attestation,
    verify_blob,
    verify_image,
)
from webhook.commands.console import EXIT_REJECTED, EXIT_USAGE, REQUESTED_OUTPUT, Console, ErrorType
from webhook.commands.hints import hint_for, readable_openssl
from webhook.errors import InfrastructureError, InputError, SignetError, VerificationError

Runner = Callable[[argparse.ArgumentParser, argparse.Namespace], int]

# Each command module offers configure(parser) and run(parser, args) -> exit code, and optionally
# OUTPUTS (the -o choices, text and json by default) and EXIT_MEANINGS (what its exit codes say).
COMMANDS: tuple[tuple[str, ModuleType, str], ...] = (
    ("verify-blob", verify_blob, "verify a Sigstore bundle over a file or digest"),
    ("verify", verify_image, "verify the signatures of an image in its registry, like cosign verify"),
    ("verify-attestation", verify_attestation,
     "verify an image's attestations (and their policy), like cosign verify-attestation"),
    ("initialize", initialize, "fetch and cache the trust root through TUF"),
    ("serve", serve, "run the admission webhook server"),
    ("evaluate", evaluate, "decide workload manifests against policies, offline from the cluster"),
    ("denials", denials, "list recent denials from the cluster's Events or the JSON audit log"),
)
# Commands with commands of their own: (group, help, ((name, aliases, module, summary), ...)).
GROUPS: tuple[tuple[str, str, tuple[tuple[str, tuple[str, ...], ModuleType, str], ...]], ...] = (
    ("policy", "check policy files before applying them", (
        ("validate", ("lint",), policy, "load policy files as serve would and list every problem"),
    )),
)
LOG_LEVELS = ("debug", "info", "warning", "error")
_VALUE_GLOBALS = ("-o", "--output", "--log-level")
_FLAG_GLOBALS = ("-v", "--verbose")


class HelpFormatter(argparse.HelpFormatter):
    """Says every default: ``(default: X)`` is added where the help text does not name one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if not action.option_strings or "default" in text or action.default is argparse.SUPPRESS:
            return text
        if action.required:
            return f"{text} (required)"
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        if action.default not in (None, [], ""):
            return f"{text} (default: %(default)s)"
        return f"{text} (default: none)"


class SignetParser(argparse.ArgumentParser):
    """Usage errors exit 2 with this command's usage; with ``-o json`` stdout gets the error document too."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        console = Console(output=REQUESTED_OUTPUT.get())
        console.error(f"{self.prog}: {message}", exit_code=EXIT_USAGE, kind="usage",
                      hint=f"run '{self.prog} --help' for every flag")
        raise SystemExit(EXIT_USAGE)


def _add_globals(parser: argparse.ArgumentParser, outputs: Sequence[str], *, top: bool = False) -> None:
    """-v, --log-level and -o; a command that defines one of them itself (serve's --log-level) keeps its own."""
    known = parser._option_string_actions
    default: Any = argparse.SUPPRESS if top else None
    group = parser.add_argument_group("global flags (before or after the command)")
    if "-v" not in known:
        group.add_argument("-v", "--verbose", action="store_true", default=default,
                           help="log debug details to stderr (same as --log-level debug; default: off)")
    if "--log-level" not in known:
        group.add_argument("--log-level", choices=LOG_LEVELS, default=default,
                           help="what is logged to stderr (default: warning)")
    if "--output" not in known:
        group.add_argument("-o", "--output", choices=outputs, default=argparse.SUPPRESS if top else "text",
                           help=f"output format: {', '.join(outputs)}; json prints one JSON document on stdout, "
                                "also on errors (default: text)")


def _command(sub: Any, name: str, module: ModuleType, summary: str, *, key: str,
             aliases: tuple[str, ...] = ()) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, aliases=list(aliases), help=summary, description=summary)
    module.configure(p)
    _add_globals(p, getattr(module, "OUTPUTS", ("text", "json")))
    p.set_defaults(command_key=key, exit_meanings=getattr(module, "EXIT_MEANINGS", None))
    return p


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, tuple[argparse.ArgumentParser, Runner]]]:
    """The parser, and every command by key ("verify", "policy validate") with its runner."""
    parser = SignetParser(
        prog="signet", description="Admit only Sigstore-signed images: admission webhook and verification tools.",
        epilog="Exit codes: 0 verified, admitted or valid; 1 rejected, denied or invalid (or a registry, Rekor or "
               "TUF failure); 2 usage or input error.")
    parser.add_argument("--version", action="version", version=f"signet {__version__}")
    _add_globals(parser, ("text", "json", "csv"), top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=SignetParser)
    commands: dict[str, tuple[argparse.ArgumentParser, Runner]] = {}
    for name, module, summary in COMMANDS:
        commands[name] = (_command(sub, name, module, summary, key=name), module.run)
    for group, summary, members in GROUPS:
        group_parser = sub.add_parser(group, help=summary, description=summary)
        inner = group_parser.add_subparsers(dest=f"{group}_command", metavar="COMMAND", required=True,
                                            parser_class=SignetParser)
        for name, aliases, module, help_text in members:
            key = f"{group} {name}"
            commands[key] = (_command(inner, name, module, help_text, key=key, aliases=aliases), module.run)
    return parser, commands


def _command_path(parser: argparse.ArgumentParser) -> dict[str, set[str]]:
    """Command words: top-level names, and for each group the names (and aliases) inside it."""
    words: dict[str, set[str]] = {name: set() for name, _, _ in COMMANDS}
    for group, _, members in GROUPS:
        words[group] = {alias for name, aliases, _, _ in members for alias in (name, *aliases)}
    return words


def hoist_globals(argv: Sequence[str], words: dict[str, set[str]]) -> list[str]:
    """Global flags written before the command (or between a group and its command) move after it."""
    front: list[str] = []
    moved: list[str] = []
    path: list[str] = []
    index = 0
    while index < len(argv):
        arg = argv[index]
        if arg == "--":
            break
        if arg in _FLAG_GLOBALS:
            moved.append(arg)
        elif arg in _VALUE_GLOBALS and index + 1 < len(argv):
            moved += [arg, argv[index + 1]]
            index += 1
        elif arg.startswith(("--output=", "--log-level=")) or (arg.startswith("-o") and len(arg) > 2
                                                               and not arg.startswith("--")):
            moved.append(arg)
        elif not path and arg in words:
            path.append(arg)
            if not words[arg]:
                return [*front, *path, *moved, *argv[index + 1:]]
        elif path and arg in words[path[0]]:
            return [*front, *path, arg, *moved, *argv[index + 1:]]
        else:
            front.append(arg)
        index += 1
    return list(argv)


def requested_output(argv: Sequence[str]) -> str:
    """The -o value on the command line, read before parsing (a usage error must honour it too)."""
    for index, arg in enumerate(argv):
        if arg == "--":
            break
        if arg in ("-o", "--output") and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith("--output="):
            return arg.removeprefix("--output=")
        if arg.startswith("-o") and not arg.startswith("--") and len(arg) > 2:
            return arg[2:]
    return "text"


def _unknown(parser: argparse.ArgumentParser, extras: Sequence[str]) -> NoReturn:
    flags = [o for o in parser._option_string_actions if o.startswith("--")]
    guesses = [m[0] for e in extras if e.startswith("-")
               for m in [difflib.get_close_matches(e.split("=")[0], flags, n=1, cutoff=0.75)] if m]
    message = f"unrecognized arguments: {' '.join(extras)}"
    parser.error(message + (f" (did you mean {' or '.join(guesses)}?)" if guesses else ""))


def _configure_logging(args: argparse.Namespace) -> None:
    if args.command == "serve":
        level = "debug" if args.verbose else "warning"  # serve sets its own level once its flags are checked
    else:
        level = "debug" if args.verbose else (args.log_level or "warning")
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    token = REQUESTED_OUTPUT.set(requested_output(raw))
    try:
        parser, commands = build_parser()
        args, extras = parser.parse_known_args(hoist_globals(raw, _command_path(parser)))
        sub_parser, runner = commands[args.command_key]
        if extras:
            _unknown(sub_parser, extras)
        _configure_logging(args)
        return run_command(sub_parser, runner, args)
    finally:
        REQUESTED_OUTPUT.reset(token)


def run_command(sub_parser: argparse.ArgumentParser, runner: Runner, args: argparse.Namespace) -> int:
    """Run one command; every failure becomes one message (and, with -o json, one document) and an exit code."""
    console = Console.from_args(args)
    try:
        return runner(sub_parser, args)
    except SignetError as exc:
        code, kind = _classify(exc)
        message = readable_openssl(exc.diagnostics())
        console.error(message, exit_code=code, kind=kind, hint=hint_for(exc.diagnostics()))
        return code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a bug: one line, the traceback only with -v
        logging.getLogger("signet").debug("internal error", exc_info=True)
        console.error(f"internal error (a bug in signet): {type(exc).__name__}: {exc}", exit_code=EXIT_REJECTED,
                      kind="internal", hint="run again with -v for the traceback, and report it")
        return EXIT_REJECTED


def _classify(exc: SignetError) -> tuple[int, ErrorType]:
    if isinstance(exc, InputError):
        return EXIT_USAGE, "input"
    if isinstance(exc, InfrastructureError):
        return EXIT_REJECTED, "infrastructure"
    if isinstance(exc, VerificationError):
        return EXIT_REJECTED, "verification"
    return EXIT_REJECTED, "internal"


if __name__ == "__main__":
    sys.exit(main())
