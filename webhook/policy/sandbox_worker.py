"""The sandbox worker: compiles and evaluates policies for its parent, one request at a time.

Started by sandbox.py as ``python -I -c <bootstrap> <root>``. Frames on stdin/stdout are a 4-byte
big-endian length and a JSON object. Requests::

    {"op": "compile"|"evaluate", "language", "scope", "source", "document"?, "now"?}

Answers: ``{"ok": true, "warnings": [...]}``, ``{"ok": false, "invalid": reason}`` (does not compile)
or ``{"ok": false, "denied": reason}``. The process keeps no state between requests but a cache
of compiled policies; the parent kills it at its time or memory limit.
"""

from __future__ import annotations

import os
import resource
import struct
from collections import OrderedDict
from datetime import datetime
from typing import Any

import orjson

# Load the engines before anything reads a request, so the parent's startup wait covers them.
from webhook.policy import cel, rego
from webhook.policy.expressions import (
    CompiledPolicy,
    ExpressionSyntaxError,
    Language,
    PolicyDeniedError,
    Scope,
)

_HEADER = struct.Struct(">I")
_CACHE_SIZE = 128


def main() -> None:
    """Serve requests from stdin until it closes."""
    # rego-cpp's print() and cel-cpp's RE2 write to fd 1 and 2; the protocol gets its own fd.
    channel = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    cache: OrderedDict[tuple[str, str, str], CompiledPolicy] = OrderedDict()
    _write(channel, {"ready": True, "pid": os.getpid()})
    while (request := _read(0)) is not None:
        _write(channel, _answer(request, cache))


def _answer(request: dict[str, Any], cache: OrderedDict[tuple[str, str, str], CompiledPolicy]) -> dict[str, Any]:
    try:
        language, scope, source = Language(request["language"]), Scope(request["scope"]), request["source"]
    except (KeyError, ValueError):
        return {"ok": False, "denied": "malformed sandbox request"}
    key = (language.value, scope.value, source)
    try:
        policy = cache.get(key)
        if policy is None:
            policy = (cel.compile_expression(source, scope) if language is Language.CEL
                      else rego.compile_module(source, scope))
            cache[key] = policy
            if len(cache) > _CACHE_SIZE:
                cache.popitem(last=False)
        cache.move_to_end(key)
    except ExpressionSyntaxError as exc:
        return {"ok": False, "invalid": exc.reason}
    if request.get("op") == "compile":
        return {"ok": True, "warnings": []}
    try:
        now = datetime.fromisoformat(request["now"])
        return {"ok": True, "warnings": list(policy.evaluate(request["document"], now=now))}
    except PolicyDeniedError as exc:
        return {"ok": False, "denied": exc.reason}
    except MemoryError:
        return {"ok": False, "denied": "policy evaluation ran out of memory"}
    except Exception as exc:  # noqa: BLE001 - anything an engine raises on hostile input is a denial
        return {"ok": False, "denied": f"policy evaluation failed: {type(exc).__name__}: {exc}"}


def _read(fd: int) -> dict[str, Any] | None:
    header = _read_exactly(fd, _HEADER.size)
    if header is None:
        return None
    body = _read_exactly(fd, _HEADER.unpack(header)[0])
    if body is None:
        return None
    request = orjson.loads(body)
    return request if isinstance(request, dict) else {}


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks: list[bytes] = []
    while size > 0:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _write(fd: int, message: dict[str, Any]) -> None:
    body = orjson.dumps(message)
    data = memoryview(_HEADER.pack(len(body)) + body)
    while data:
        data = data[os.write(fd, data):]
