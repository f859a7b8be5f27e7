"""Policy compilation and evaluation in worker processes that are killed at their limits.

Neither engine can be trusted with a tenant's policy and a registry's document in the webhook's
own process: a thread cannot stop CPU work, cel-cpp bounds loop iterations but not memory or
quadratic work, rego-cpp bounds nothing and has crashed on large input. So each evaluation is
sent to a worker (sandbox_worker.py) over a pipe, and the parent

  1. waits for a free worker (``wait``, default ``Limits.timeout``; then SandboxBusyError,
     an InfrastructureError: it says nothing about the image),
  2. sends the request as JSON (the document was already bounded by ``encode_document``),
  3. waits for the answer up to ``Limits.timeout``, checking the worker's resident memory
     every 20 ms against ``Limits.memory_bytes``,
  4. kills the worker at either limit or when it dies, and denies with the limit in the reason.

Workers start from a minimal environment (no secrets to read), are reused, and are replaced after
being killed or after ``_MAX_REQUESTS``. Linux only for the memory check (/proc).
"""

from __future__ import annotations

import logging
import os
import selectors
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson

from webhook.errors import InfrastructureError
from webhook.policy.expressions import (
    DEFAULT_LIMITS,
    CompiledPolicy,
    ExpressionSyntaxError,
    Language,
    Limits,
    PolicyDeniedError,
    Scope,
    encode_document,
    evaluation_time,
)

__all__ = ["Sandbox", "SandboxBusyError"]

_logger = logging.getLogger(__name__)

_HEADER = struct.Struct(">I")
_MAX_ANSWER = 1 << 20
_MAX_REQUESTS = 5000
_POLL = 0.02
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
# The worker imports only the three modules it needs: webhook/policy/__init__.py loads the whole
# policy loader (a second of imports) for nothing.
_BOOTSTRAP = (
    "import sys, types; sys.path.insert(0, sys.argv[1]); import webhook; "
    "package = types.ModuleType('webhook.policy'); package.__path__ = [sys.argv[1] + '/webhook/policy']; "
    "sys.modules['webhook.policy'] = webhook.policy = package; "
    "from webhook.policy.sandbox_worker import main; main()"
)
_ROOT = str(Path(__file__).resolve().parents[2])


class SandboxBusyError(InfrastructureError):
    """No policy worker became free in time; says nothing about the image."""


class _WorkerDied(Exception):
    pass


class _Worker:
    """One worker process and its pipes."""

    def __init__(self, startup_timeout: float) -> None:
        self.requests = 0
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _BOOTSTRAP, _ROOT],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env={"PATH": os.defpath, "LANG": "C.UTF-8"}, close_fds=True)
        assert self.process.stdin is not None and self.process.stdout is not None
        self._in, self._out = self.process.stdin.fileno(), self.process.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        try:
            ready = self._receive(time.monotonic() + startup_timeout, memory_limit=None)
        except (TimeoutError, _WorkerDied) as exc:
            self.kill()
            raise InfrastructureError(f"the policy sandbox did not start: {exc}") from None
        if ready.get("ready") is not True:
            self.kill()
            raise InfrastructureError("the policy sandbox did not start: unexpected greeting")

    def ask(self, request: bytes, deadline: float, memory_limit: int) -> dict[str, Any]:
        """Send one request and wait for its answer; TimeoutError, MemoryError or _WorkerDied."""
        self.requests += 1
        self._send(_HEADER.pack(len(request)) + request, deadline)
        return self._receive(deadline, memory_limit)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _logger.warning("policy worker %d did not exit after SIGKILL", self.process.pid)
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()

    def _send(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        with selectors.DefaultSelector() as selector:
            selector.register(self._in, selectors.EVENT_WRITE)
            while view:
                if not selector.select(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError
                try:
                    view = view[os.write(self._in, view):]
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    raise _WorkerDied(self._exit_reason()) from None

    def _receive(self, deadline: float, memory_limit: int | None) -> dict[str, Any]:
        buffer = bytearray()
        expected: int | None = None
        with selectors.DefaultSelector() as selector:
            selector.register(self._out, selectors.EVENT_READ)
            while expected is None or len(buffer) < expected:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                if memory_limit is not None and (_resident_bytes(self.process.pid) or 0) > memory_limit:
                    raise MemoryError
                if not selector.select(min(remaining, _POLL)):
                    continue
                try:
                    chunk = os.read(self._out, 1 << 20)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise _WorkerDied(self._exit_reason())
                buffer += chunk
                if expected is None and len(buffer) >= _HEADER.size:
                    expected = _HEADER.size + _HEADER.unpack_from(buffer)[0]
                    if expected > _MAX_ANSWER:
                        raise _WorkerDied(f"answer of {expected} bytes")
        answer = orjson.loads(bytes(buffer[_HEADER.size:expected]))
        if not isinstance(answer, dict):
            raise _WorkerDied("answer is not an object")
        return answer

    def _exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "it closed its pipe"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"


class Sandbox:
    """A small pool of policy workers; thread-safe; ``close()`` (or ``with``) ends them."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS, *, workers: int = 2, wait: float | None = None,
                 startup_timeout: float = 30.0) -> None:
        """``wait``: how long a request may queue for a free worker (default: ``limits.timeout``)."""
        if workers < 1:
            raise ValueError("a sandbox needs at least one worker")
        self.limits = limits
        self._workers = workers
        self._wait = limits.timeout if wait is None else wait
        self._startup_timeout = startup_timeout
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        self._idle: list[_Worker] = []
        self._closed = False

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        """Start the workers now instead of on first use (a cold start costs 0.1-0.2 s)."""
        with self._lock:
            missing = self._workers - len(self._idle)
        started = [_Worker(self._startup_timeout) for _ in range(max(0, missing))]
        for worker in started:
            self._give_back(worker)

    def close(self) -> None:
        """End every idle worker; workers in use end when their request returns."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()

    def evaluate(self, policy: CompiledPolicy, document: Mapping[str, Any], *,
                 now: datetime | None = None) -> tuple[str, ...]:
        """Evaluate ``policy`` on ``document`` in a worker: its warnings, or PolicyDeniedError."""
        encoded = encode_document(document, self.limits)
        request = orjson.dumps({
            "op": "evaluate", "language": policy.language.value, "scope": policy.scope.value,
            "source": policy.source, "now": evaluation_time(now).isoformat(),
            "document": orjson.Fragment(encoded)})
        answer = self._ask(request)
        if answer.get("ok") is True:
            return tuple(str(w) for w in answer.get("warnings", ()))
        if "invalid" in answer:
            raise PolicyDeniedError(f"the policy does not compile: {answer['invalid']}")
        raise PolicyDeniedError(str(answer.get("denied") or "the policy sandbox gave no reason"))

    def check_compiles(self, language: Language, text: str, scope: Scope) -> None:
        """Compile ``text`` in a worker; ExpressionSyntaxError with the engine's message when it cannot."""
        request = orjson.dumps({"op": "compile", "language": language.value, "scope": scope.value,
                                "source": text})
        try:
            answer = self._ask(request)
        except PolicyDeniedError as exc:
            raise ExpressionSyntaxError(f"the {language.value} engine could not compile the policy: "
                                        f"{exc.reason}") from None
        if answer.get("ok") is not True:
            raise ExpressionSyntaxError(str(answer.get("invalid") or answer.get("denied")))

    def _ask(self, request: bytes) -> dict[str, Any]:
        limits = self.limits
        if not self._slots.acquire(timeout=self._wait):
            raise SandboxBusyError(f"no policy worker became free within {self._wait:g} s")
        try:
            worker = self._take()
            try:
                answer = worker.ask(request, time.monotonic() + limits.timeout, limits.memory_bytes)
            except TimeoutError:
                worker.kill()
                raise PolicyDeniedError(f"policy evaluation exceeded its time limit of {limits.timeout:g} s") from None
            except MemoryError:
                worker.kill()
                raise PolicyDeniedError(f"policy evaluation exceeded its memory limit of "
                                        f"{limits.memory_bytes // (1024 * 1024)} MiB") from None
            except (_WorkerDied, orjson.JSONDecodeError) as exc:
                worker.kill()
                raise PolicyDeniedError(f"policy evaluation crashed ({exc}); "
                                        "the input or policy is not one the engine can handle") from None
            self._give_back(worker)
            return answer
        finally:
            self._slots.release()

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise InfrastructureError("the policy sandbox is closed")
            if self._idle:
                return self._idle.pop()
        return _Worker(self._startup_timeout)

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed and worker.requests < _MAX_REQUESTS:
                self._idle.append(worker)
                return
        worker.kill()


def _resident_bytes(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:  # noqa: PTH123 - hot path, one read
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None
