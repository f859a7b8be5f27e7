"""Rego policies with policy-controller's meaning, evaluated by ``regopy`` (the rego-cpp engine).

As policy-controller (and cosign before it): the module is ``package sigstore``; the input is
the in-toto statement (or, at policy level, the PolicyResult document); the query is
``isCompliant = data.sigstore.isCompliant``. The policy passes when ``isCompliant`` is true, or
is a set/array holding an object ``{"result": true}`` (its ``warning`` is returned). Otherwise
it denies, and the message is, first found: ``data.sigstore.errors`` (a set, array or string:
Signet's addition), the ``error`` of the last result object, or what ``isCompliant`` was.

rego-cpp accepts Rego v0 and v1 syntax, but reads the v0 partial-set rule ``p[x] { ... }`` as
the object ``{x: true}``; such an object counts as the set of its keys, so policy-controller's
v0 policies keep their meaning.

At load, ``check_source`` reads the text itself (comments and strings blanked): the module must
be ``package sigstore`` with an ``isCompliant`` rule, and must not call a built-in that reaches
outside the evaluation (``opa.runtime`` would hand a tenant's policy the webhook's environment).
rego-cpp then compiles it, in the sandbox: rego-cpp is young, and its own bundle writer frees
memory with the wrong allocator when another C++ library loaded first, so nothing it does with
a tenant's text may share the webhook's process.
Measured (bench/expressions.py): compile 3-4 ms; evaluation 2 ms on a SLSA provenance; reading
input costs about 5 µs per JSON value (1 s for a 3 MB SBOM). rego-cpp stops an evaluation only
after 10 million plan statements (4.8 s of a nested comprehension here) and bounds call depth at
512, but not memory; the sandbox enforces the document-size, time and memory limits of ``Limits``.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import regopy
from regopy import rego_shared

from webhook.policy.expressions import (
    ExpressionSyntaxError,
    Language,
    PolicyDeniedError,
    Scope,
    json_safe,
    one_line,
)

__all__ = ["FORBIDDEN_BUILTINS", "QUERY", "CompiledRego", "check_source", "compile_module"]

QUERY = "isCompliant = data.sigstore.isCompliant"
_MODULE = "sigstore.rego"

FORBIDDEN_BUILTINS: dict[str, str] = {
    "opa.runtime": "it reveals the webhook's environment variables",
    "http.send": "it makes network requests",
    "net.lookup_ip_addr": "it makes DNS requests",
}

# Reads the user's rules into one JSON verdict, so a single query answers everything.
_VERDICT_MODULE = """package signet_verdict
import rego.v1

members(v) := [m | some m in v] if type_name(v) in {"set", "array"}

members(v) := [k | some k; v[k] == true] if {
	is_object(v)
	count([k | some k; v[k] != true]) == 0
}

default kind := "undefined"
kind := type_name(data.sigstore.isCompliant)

default value := false
value := data.sigstore.isCompliant if kind == "boolean"

default results := []
results := members(data.sigstore.isCompliant)

default errors := []
errors := members(data.sigstore.errors)
errors := [data.sigstore.errors] if is_string(data.sigstore.errors)

verdict := {"kind": kind, "value": value, "results": results, "errors": errors}
"""
_VERDICT_QUERY = "verdict = data.signet_verdict.verdict"


def _interpreter() -> regopy.Interpreter:
    interpreter = regopy.Interpreter()
    # rego-cpp prints compile errors on stdout by default; they are returned to us instead.
    interpreter.log_level = regopy.LogLevel.NONE
    return interpreter


class CompiledRego:
    """A Rego module that passed the source checks; rego-cpp compiles it on first evaluation here."""

    def __init__(self, source: str, scope: Scope, bundle: Any = None) -> None:
        self.source = source
        self.scope = scope
        self._bundle = bundle
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CompiledRego(scope={self.scope.value!r}, source={one_line(self.source, 60)!r})"

    @property
    def language(self) -> Language:
        return Language.REGO

    def evaluate(self, document: Mapping[str, Any], *, now: datetime | None = None) -> tuple[str, ...]:
        """Evaluate in this process; the policy's warnings on success, PolicyDeniedError otherwise."""
        del now  # Rego reads the worker's clock through time.now_ns()
        rego_input = document.get("statement") if self.scope is Scope.ATTESTATION else document
        if not isinstance(rego_input, Mapping):
            raise PolicyDeniedError("the Rego input is not a JSON object")
        safe_input = json_safe(rego_input)
        with self._lock:  # rego-cpp does not document sharing a bundle across threads
            if self._bundle is None:
                self._bundle = _build(self.source)
            interpreter = _interpreter()
            try:
                interpreter.set_input(safe_input)
            except (regopy.RegoError, TypeError, ValueError, RecursionError) as exc:
                raise PolicyDeniedError(f"Rego could not read the policy input: {exc}") from None
            ok, text, errors = _query(interpreter, self._bundle)
        if not ok or text.startswith("(error"):
            raise PolicyDeniedError(f"Rego evaluation failed: {'; '.join(errors) or one_line(text)}")
        return _decide(text)


def compile_module(text: str, scope: Scope = Scope.ATTESTATION) -> CompiledRego:
    """Check and compile ``text`` in this process; ExpressionSyntaxError (line, column) when it cannot load."""
    check_source(text)
    return CompiledRego(text, scope, _build(text))


def check_source(text: str) -> None:
    """The checks made on the text itself: package, isCompliant rule, no forbidden built-in."""
    code = _code_only(text)
    package = _PACKAGE.search(code)
    if package is None:
        raise ExpressionSyntaxError("Rego module has no package declaration; it must be `package sigstore`")
    if package.group(1) != "sigstore":
        raise ExpressionSyntaxError(f"Rego module is package {package.group(1)}; policy-controller's query "
                                    f"{QUERY!r} needs `package sigstore`")
    if _IS_COMPLIANT.search(code) is None:
        raise ExpressionSyntaxError(f"Rego module defines no isCompliant rule (policy-controller's query {QUERY!r})")
    for call in _FORBIDDEN_CALL.finditer(code):
        name = "".join(call.group(1).split())
        line = code.count("\n", 0, call.start()) + 1
        column = call.start() - (code.rfind("\n", 0, call.start()) + 1) + 1
        raise ExpressionSyntaxError(f"Rego module (line {line}, column {column}) calls {name}, which Signet "
                                    f"refuses: {FORBIDDEN_BUILTINS[name]}")


_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([^\s#]+)", re.MULTILINE)
_IS_COMPLIANT = re.compile(r"^[ \t]*(?:default[ \t]+)?isCompliant\b", re.MULTILINE)
_FORBIDDEN_CALL = re.compile(r"\b(" + "|".join(r"\s*\.\s*".join(map(re.escape, name.split(".")))
                                               for name in FORBIDDEN_BUILTINS) + r")\b")


def _code_only(text: str) -> str:
    """``text`` with comments and string contents blanked, positions kept."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#":
            end = text.find("\n", i)
            end = n if end < 0 else end
        elif c in "\"`":
            end = i + 1
            while end < n and text[end] != c:
                end += 2 if c == '"' and text[end] == "\\" else 1
            end = min(end + 1, n)
            i += 1  # keep the opening quote, blank the contents
        else:
            i += 1
            continue
        for j in range(i, end):
            if out[j] != "\n":
                out[j] = " "
        i = end
    return "".join(out)


def _build(text: str) -> Any:
    interpreter = _interpreter()
    try:
        interpreter.add_module(_MODULE, text)
        interpreter.add_module("signet_verdict.rego", _VERDICT_MODULE)
        bundle = interpreter.build(_VERDICT_QUERY, [])
    except regopy.RegoError as exc:
        raise ExpressionSyntaxError(f"Rego module does not compile: {_compile_errors(str(exc), text)}") from None
    if not bundle.ok():
        raise ExpressionSyntaxError("Rego module does not compile")
    return bundle


def _query(interpreter: regopy.Interpreter, bundle: Any) -> tuple[bool, str, list[str]]:
    # regopy's Output assumes a JSON answer; a runtime error is a node tree, read here instead.
    output = rego_shared.rego_bundle_query(interpreter._impl, bundle._impl)
    if not output:
        return False, "no output", []
    try:
        ok = bool(rego_shared.rego_output_ok(output))
        text = rego_shared.rego_output_string(output) if ok else ""
        errors = [] if ok and not text.startswith("(error") else _error_messages(output, text)
    finally:
        rego_shared.rego_free_output(output)
    return ok, text, errors


def _error_messages(output: Any, text: str) -> list[str]:
    if text:
        return _sexpr_messages(text.encode("utf-8"))
    messages: list[str] = []
    stack = [regopy.Node(rego_shared.rego_output_node(output))]
    while stack and len(messages) < 8:
        node = stack.pop()
        if node.kind == regopy.NodeKind.ErrorMessage:
            # Node.value refuses error nodes; the C accessor reads them.
            message = rego_shared.rego_node_value(node._impl)
            if message not in messages:
                messages.append(message)
            continue
        if node.kind not in (regopy.NodeKind.ErrorSeq, regopy.NodeKind.Error):
            continue
        stack.extend(node.at(i) for i in reversed(range(len(node))))
    return messages


def _decide(text: str) -> tuple[str, ...]:
    try:
        verdict = json.loads(text)["bindings"]["verdict"]
        kind, results, errors = verdict["kind"], verdict["results"], verdict["errors"]
    except (ValueError, KeyError, TypeError):
        raise PolicyDeniedError(f"Rego evaluation returned no verdict: {one_line(text)}") from None
    if kind == "boolean" and verdict.get("value") is True:
        return ()
    result_error = ""
    for result in results:
        if isinstance(result, dict) and result.get("result") is True:
            warning = result.get("warning")
            return (str(warning),) if warning else ()
        if isinstance(result, dict) and result.get("error"):
            result_error = str(result["error"])
    if errors:
        reason = "; ".join(e if isinstance(e, str) else json.dumps(e) for e in errors)
    elif result_error:
        reason = result_error
    elif kind == "undefined":
        reason = "data.sigstore.isCompliant is undefined for this input"
    elif kind == "boolean":
        reason = "data.sigstore.isCompliant is false"
    else:
        reason = f"data.sigstore.isCompliant is a {kind} without a passing result"
    raise PolicyDeniedError(f"Rego policy is not compliant: {one_line(reason, 1000)}")


def _compile_errors(raw: str, source: str) -> str:
    messages = _sexpr_messages(raw.encode("utf-8"), source.encode("utf-8"))
    return "; ".join(messages) if messages else one_line(raw, 300)


def _sexpr_messages(raw: bytes, source: bytes | None = None) -> list[str]:
    """Messages of rego-cpp's error s-expression: ``(error 13:sigstore.rego|32|1 (errormsg 16:...)``."""
    messages: list[str] = []
    at = 0
    while (start := _ERROR.search(raw, at)) is not None and len(messages) < 8:
        at = start.end()
        where = ""
        header = _length_prefixed(raw, at)
        if header is not None:
            name, at = header
            location = raw[at:].split(b" ", 1)[0].split(b"\n", 1)[0].split(b"|")
            if source is not None and name == _MODULE.encode() and len(location) >= 2 and location[1].isdigit():
                offset = int(location[1])
                line = source.count(b"\n", 0, offset) + 1
                column = offset - (source.rfind(b"\n", 0, offset) + 1) + 1
                where = f"line {line}, column {column}: "
        message_at = raw.find(b"(errormsg ", at)
        if message_at < 0:
            break
        message = _length_prefixed(raw, message_at + 10)
        if message is None:
            break
        text, at = message
        entry = where + text.decode("utf-8", "replace")
        if entry not in messages:
            messages.append(entry)
    return messages


_ERROR = re.compile(rb"\(error\s+")


def _length_prefixed(raw: bytes, at: int) -> tuple[bytes, int] | None:
    colon = raw.find(b":", at)
    if colon < 0 or not raw[at:colon].isdigit():
        return None
    end = colon + 1 + int(raw[at:colon])
    return raw[colon + 1:end], end
