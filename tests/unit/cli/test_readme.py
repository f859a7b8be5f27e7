"""The README's examples, run: what a new user types must print what the README shows.

``console`` blocks are executed (``$ `` lines, through bash, in a scratch directory) and their
stdout and exit code compared; files the README asks the user to write come from the blocks marked
``<!-- readme-test: file NAME -->``. ``kubectl`` is a stand-in printing audit lines made by the
real audit writer. Every other ``signet`` command line in the README, the chart's README and its
NOTES must at least parse: a renamed flag or command fails here.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.unit.cli.audit_fixture import readme_log
from webhook.cli import _command_path, build_parser, hoist_globals

ROOT = Path(__file__).resolve().parents[3]
SIGNET_BIN = Path(sys.executable).parent
_FENCE = re.compile(r"^(?P<indent> *)```(\w*)\n(.*?)^(?P=indent)```\n", re.S | re.M)
_MARK = re.compile(r"<!-- readme-test: (\w+) ?(.*?) -->")


@dataclass
class Block:
    language: str
    text: str
    marks: dict[str, str] = field(default_factory=dict)


def blocks(text: str) -> list[Block]:
    """Fenced blocks, each with the readme-test marks on the lines right above it."""
    found = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").splitlines()
        marks: dict[str, str] = {}
        while before and _MARK.fullmatch(before[-1].strip()):
            mark = _MARK.fullmatch(before.pop().strip())
            assert mark is not None
            marks[mark.group(1)] = mark.group(2)
        found.append(Block(match.group(2), textwrap.dedent(match.group(3)), marks))
    return found


README = blocks((ROOT / "README.md").read_text(encoding="utf-8"))


def _session(tmp_path: Path) -> dict[str, str]:
    """A scratch directory with the README's files, and a PATH where kubectl prints the fixture log."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "signet.log"
    log.write_text(readme_log())
    kubectl = bin_dir / "kubectl"
    kubectl.write_text(f"#!/bin/sh\n[ \"$1\" = logs ] && exec cat {shlex.quote(str(log))}\nexit 1\n")
    kubectl.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "SIGSTORE_ROOT_FILE")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{SIGNET_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def _commands(block: Block) -> list[tuple[str, list[str]]]:
    """(command, expected output lines) for each ``$ `` line of a console block."""
    steps: list[tuple[str, list[str]]] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:], []))
        else:
            assert steps, f"output before any command in:\n{block.text}"
            steps[-1][1].append(line)
    return steps


def test_the_readme_has_runnable_examples() -> None:
    assert sum(b.language == "console" for b in README) >= 4
    assert {"file", "exit", "columns", "run"} <= {m for b in README for m in b.marks}


def test_console_examples_print_what_the_readme_shows(tmp_path: Path) -> None:
    env = _session(tmp_path)
    ran = 0
    for block in README:
        if "file" in block.marks:
            (tmp_path / block.marks["file"]).write_text(block.text)
        if block.language != "console":
            continue
        if "run" in block.marks:
            subprocess.run(["bash", "-c", block.marks["run"]], cwd=tmp_path, env=env, check=True, timeout=30)
        run_env = {**env, **({"COLUMNS": block.marks["columns"]} if "columns" in block.marks else {})}
        for command, expected in _commands(block):
            done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=tmp_path, env=run_env,
                                  capture_output=True, text=True, timeout=120, check=False)
            assert done.stdout.rstrip("\n").splitlines() == expected, (command, done.stderr)
            assert done.returncode == int(block.marks.get("exit", "0")), (command, done.stderr)
            ran += 1
    assert ran >= 4


def _signet_lines(text: str, *, console: bool = False) -> list[list[str]]:
    """Every ``signet ...`` command (first word of a pipeline stage) in shell text; console: ``$`` lines only."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for raw in joined.splitlines():
        if console and not raw.startswith("$ "):
            continue
        command = raw.removeprefix("$ ").split(" #")[0]
        for part in re.split(r"\|\||&&|\||;", command):
            words = shlex.split(part.strip()) if part.strip() else []
            if words and Path(words[0]).name == "signet":
                found.append(words[1:])
    return found


def _documents() -> list[tuple[str, list[list[str]]]]:
    found = []
    for name in ("README.md", "charts/signet/README.md"):
        for block in blocks((ROOT / name).read_text(encoding="utf-8")):
            if block.language in ("sh", "console"):
                found.append((name, _signet_lines(block.text, console=block.language == "console")))
    notes = re.sub(r"\{\{[^}]*\}\}", "x", (ROOT / "charts/signet/templates/NOTES.txt").read_text(encoding="utf-8"))
    # NOTES.txt is plain text: its commands are the indented lines.
    commands = "\n".join(line.strip() for line in notes.splitlines() if line.startswith("     "))
    found.append(("NOTES.txt", _signet_lines(commands)))
    return found


def test_the_docs_show_every_command() -> None:
    shown = {argv[0] for _, lines in _documents() for argv in lines if argv}
    assert {"policy", "evaluate", "denials", "verify", "verify-blob", "initialize", "serve"} <= shown


@pytest.mark.parametrize(("source", "argv"), [
    pytest.param(source, argv, id=f"{source}: signet {' '.join(argv)[:60]}")
    for source, lines in _documents() for argv in lines])
def test_every_documented_command_parses(source: str, argv: list[str]) -> None:
    parser, _commands_by_key = build_parser()
    try:
        _args, extras = parser.parse_known_args(hoist_globals(argv, _command_path(parser)))
    except SystemExit as exc:
        assert exc.code == 0, f"{source}: signet {' '.join(argv)} does not parse"
        return
    assert extras == [], f"{source}: signet {' '.join(argv)}: unknown {extras}"


def test_the_example_policies_are_valid(capsys: pytest.CaptureFixture[str]) -> None:
    from webhook.cli import main

    assert main(["policy", "validate", str(ROOT / "policies" / "examples")]) == 0, capsys.readouterr().out
