"""At a terminal (a pseudo-terminal here) colour, symbols, fitted tables and progress; in pipes none of it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.unit.cli.audit_fixture import readme_log
from tests.unit.cli.helpers import DIGEST, STATIC_POLICIES, pod

SIGNET = Path(sys.executable).with_name("signet")
ESCAPE = "\x1b["


@dataclass(frozen=True)
class Seen:
    code: int
    out: str
    err: str


def _pty(columns: int) -> tuple[int, int]:
    master, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    return master, child


def run(argv: list[str], *, tty_out: bool, tty_err: bool, env: Mapping[str, str] = {}, cwd: Path | None = None,
        columns: int = 200) -> Seen:
    """``signet ARGV`` with stdout and stderr each a pseudo-terminal or a pipe."""
    base = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR", "LINES")}
    base.update(TERM="xterm-256color", **env)
    masters: dict[str, int] = {}
    children: dict[str, int | None] = {}
    for name, tty in (("out", tty_out), ("err", tty_err)):
        if tty:
            masters[name], children[name] = _pty(columns)
        else:
            children[name] = None
    proc = subprocess.Popen([str(SIGNET), *argv], env=base, cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=children["out"] if tty_out else subprocess.PIPE,
                            stderr=children["err"] if tty_err else subprocess.PIPE)
    for fd in children.values():
        if fd is not None:
            os.close(fd)
    data = {"out": b"", "err": b""}
    readers = {masters[n]: n for n in masters}
    if proc.stdout is not None:
        readers[proc.stdout.fileno()] = "out"
    if proc.stderr is not None:
        readers[proc.stderr.fileno()] = "err"
    deadline = time.monotonic() + 60
    while readers and time.monotonic() < deadline:
        ready, _, _ = select.select(list(readers), [], [], 0.5)
        for fd in ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # a pty's master reads EIO once the child side is closed
                chunk = b""
            if chunk:
                data[readers[fd]] += chunk
            else:
                del readers[fd]
    code = proc.wait(10)
    for fd in masters.values():
        os.close(fd)
    return Seen(code, data["out"].decode(), data["err"].decode())


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "policies.yaml").write_text(STATIC_POLICIES)
    (tmp_path / "m.yaml").write_text(pod("web", f"registry.example.com/good/app@{DIGEST}",
                                         f"registry.example.com/bad/app@{DIGEST}"))
    return tmp_path


def test_colour_and_symbols_only_on_a_terminal_without_no_color(workdir: Path) -> None:
    argv = ["evaluate", "-f", "m.yaml", "--policies", "policies.yaml"]
    terminal = run(argv, tty_out=True, tty_err=False, cwd=workdir)
    assert terminal.code == 1
    assert ESCAPE in terminal.out and "✔ allow" in terminal.out and "✘ deny" in terminal.out
    for seen in (run(argv, tty_out=False, tty_err=False, cwd=workdir),
                 run(argv, tty_out=True, tty_err=True, cwd=workdir, env={"NO_COLOR": "1"})):
        assert seen.code == 1
        assert ESCAPE not in seen.out and "✔" not in seen.out and "✘" not in seen.out
        assert re.search(r"\sallow\s", seen.out) and re.search(r"\sdeny\s", seen.out)


def test_errors_are_red_on_a_terminal_only(workdir: Path) -> None:
    argv = ["policy", "validate", "absent.yaml"]
    terminal = run(argv, tty_out=False, tty_err=True, cwd=workdir)
    piped = run(argv, tty_out=False, tty_err=False, cwd=workdir)
    assert terminal.code == piped.code == 2
    assert f"{ESCAPE}1;31mError:" in terminal.err
    assert piped.err.startswith("Error: cannot read policies absent.yaml")


def test_the_denials_table_fits_the_terminal(tmp_path: Path) -> None:
    log = tmp_path / "signet.log"
    log.write_text(readme_log())
    seen = run(["denials", "--from-log", str(log)], tty_out=True, tty_err=False, columns=100)
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", seen.out).replace("\r", "").splitlines() if line]
    assert seen.code == 0 and lines[0].startswith("LAST SEEN")
    assert max(len(line) for line in lines) <= 100 and any(line.endswith("…") for line in lines)
    piped = run(["denials", "--from-log", str(log)], tty_out=False, tty_err=False)
    assert "…" not in piped.out.split("\n\n")[0]  # no terminal, no width to fit: nothing is cut


@contextlib.contextmanager
def stalled_registry() -> Iterator[str]:
    """A loopback "registry" that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(2)
        for connection in held:
            connection.close()
        server.close()


def test_slow_work_shows_a_progress_line_on_a_terminal(workdir: Path) -> None:
    with stalled_registry() as host:
        (workdir / "slow.yaml").write_text(pod("slow", f"{host}/app:v1"))
        (workdir / "any.yaml").write_text("apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\n"
                                          "metadata: {name: any}\nspec:\n  images: [{glob: '**'}]\n"
                                          "  authorities: [{name: k, keyless: {identities: [{issuer: "
                                          "'https://oidc.example', subject: a@example.com}]}}]\n")
        argv = ["evaluate", "-f", "slow.yaml", "--policies", "any.yaml", "--allow-http-registry", "--deadline", "2"]
        terminal = run(argv, tty_out=False, tty_err=True, cwd=workdir)
        piped = run(argv, tty_out=False, tty_err=False, cwd=workdir)
    assert terminal.code == piped.code == 1  # not verified in time: onError deny
    assert "\r\x1b[Kevaluating: 1/1 Pod/team-a/slow" in terminal.err
    assert terminal.err.endswith("\r\x1b[K")  # the line is cleared when the work is done
    assert "evaluating" not in piped.err and "\r" not in piped.err
