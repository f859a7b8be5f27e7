"""Policies over verified content, written in CEL or Rego: the one interface the loader and engine use.

A policy compiles when its document loads (an error names line and column) and is then evaluated
against a JSON document for each image. Two scopes decide what the policy sees:

    scope         language  what the policy sees
    ATTESTATION   cel       predicateType (string), predicate (dyn), statement (dyn, the whole in-toto
                            statement), signer (map of string: ``subject``, ``issuer`` and the Fulcio
                            claims by name, or ``keyFingerprint``), now (timestamp)
                  rego      input = the in-toto statement; query ``data.sigstore.isCompliant``
    POLICY        cel       authorityMatches, spec, metadata, typemeta, config (dyn; ``{}`` when not
                            included), now (timestamp)
                  rego      input = policy-controller's PolicyResult document (policy_result.py)

    compile_policy(type, text, scope) -> CompiledPolicy          PolicyError when it cannot load
    CompiledPolicy.evaluate(document) -> warnings                PolicyDeniedError when it says no
    Sandbox.evaluate(policy, document) -> warnings               the same, in a killable worker

Every evaluation failure (false, a runtime error, a non-bool, a limit) is a PolicyDeniedError
carrying the policy's own words: it depends on the policy and the document, not on the network.
Only a sandbox with no free worker raises an InfrastructureError (SandboxBusyError).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from webhook.errors import PolicyError, VerificationError

if TYPE_CHECKING:
    from webhook.policy.sandbox import Sandbox

__all__ = [
    "CompiledPolicy", "ExpressionSyntaxError", "Language", "Limits", "PolicyDeniedError", "Scope",
    "attestation_document", "compile_policy", "encode_document", "json_safe", "policy_digest",
    "verify_pinned",
]


class Language(StrEnum):
    """The policy languages Signet evaluates (``type:`` in a policy)."""

    CEL = "cel"
    REGO = "rego"


class Scope(StrEnum):
    """What a policy judges: one attestation, or the policy-level result over authority matches."""

    ATTESTATION = "attestation"
    POLICY = "policy"


@dataclass(frozen=True)
class Limits:
    """Bounds on one evaluation; exceeding any of them denies, with the limit in the message."""

    timeout: float = 2.0                  # seconds of wall clock, enforced by killing the worker
    memory_bytes: int = 512 * 1024 * 1024  # resident memory of a sandbox worker
    max_document_bytes: int = 8 * 1024 * 1024  # JSON size of what the policy sees
    max_source_bytes: int = 64 * 1024     # size of the policy text


DEFAULT_LIMITS = Limits()
# Deeper documents are refused rather than risk the engines' recursive converters (in-toto
# statements, SBOMs and scan reports nest a few dozen levels at most).
MAX_DEPTH = 128
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class ExpressionSyntaxError(PolicyError):
    """A policy's text does not compile; the reason names line and column where known."""


class PolicyDeniedError(VerificationError):
    """The policy evaluated to no, failed, returned a non-bool or exceeded a limit."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, step="policy")


class CompiledPolicy(Protocol):
    """A policy that compiled; ``evaluate`` runs it in this process (the sandbox runs it elsewhere)."""

    @property
    def language(self) -> Language: ...

    @property
    def scope(self) -> Scope: ...

    @property
    def source(self) -> str: ...

    def evaluate(self, document: Mapping[str, Any], *, now: datetime | None = None) -> tuple[str, ...]:
        """Return the policy's warnings when it passes; raise PolicyDeniedError otherwise."""
        ...


def compile_policy(language: str, text: str, scope: Scope, *, limits: Limits = DEFAULT_LIMITS,
                   sandbox: Sandbox | None = None) -> CompiledPolicy:
    """Compile ``text`` as a ``type: <language>`` policy for ``scope``; PolicyError when it cannot load.

    CEL compiles here (cel-cpp's parser has its own depth limits). Rego's text is checked here and
    compiled by rego-cpp in ``sandbox``, or in a worker started for the purpose (about 0.2 s).
    """
    if language == "cue":
        raise PolicyError("type: cue is not supported: CUE has no Python runtime; "
                          "write the policy in rego (same input and meaning) or cel")
    if not isinstance(text, str) or not text.strip():
        raise ExpressionSyntaxError(f"the {language} policy is empty")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ExpressionSyntaxError(f"the {language} policy is not valid Unicode text: {exc.reason}") from None
    if size > limits.max_source_bytes:
        raise ExpressionSyntaxError(f"the {language} policy is {size} bytes; the limit is {limits.max_source_bytes}")
    if language == Language.CEL:
        from webhook.policy import cel
        return cel.compile_expression(text, scope)
    if language == Language.REGO:
        from webhook.policy import rego
        from webhook.policy.sandbox import Sandbox
        rego.check_source(text)
        if sandbox is not None:
            sandbox.check_compiles(Language.REGO, text, scope)
        else:
            with Sandbox(limits, workers=1) as own:
                own.check_compiles(Language.REGO, text, scope)
        return rego.CompiledRego(text, scope)
    raise PolicyError(f"unknown policy type {language!r}; expected cel or rego")


def policy_digest(policy: CompiledPolicy) -> str:
    """A stable identity of a compiled policy (language, scope, text), for result-cache keys."""
    material = f"{policy.language}\0{policy.scope}\0{policy.source}".encode("utf-8", "surrogatepass")
    return hashlib.sha256(material).hexdigest()


def attestation_document(statement: Mapping[str, Any], signer: Mapping[str, str]) -> dict[str, Any]:
    """The document an ATTESTATION-scope policy is evaluated against: the statement and its signer.

    ``signer``: ``{"subject", "issuer", <claim>: value...}`` for a certificate, claims named as in
    policy/authorities.py FULCIO_EXTENSION_OIDS and present only when the certificate has them; or
    ``{"keyFingerprint": <hex SHA-256 of the public key's DER SPKI>}`` for a key.
    """
    if not isinstance(statement, Mapping):
        raise PolicyDeniedError("the attestation's statement is not a JSON object")
    bad = sorted(str(k) for k, v in signer.items() if not isinstance(k, str) or not isinstance(v, str))
    if bad:
        raise PolicyDeniedError(f"signer attributes must be strings: {', '.join(bad)}")
    return {"statement": dict(statement), "signer": dict(signer)}


def encode_document(document: Mapping[str, Any], limits: Limits = DEFAULT_LIMITS) -> bytes:
    """The document as JSON for the sandbox; refused when it is not JSON data, too deep or too large."""
    try:
        encoded = orjson.dumps(document)
    except orjson.JSONEncodeError:
        # orjson refuses integers past 64 bits; JSON numbers are numbers, so send them as doubles.
        try:
            encoded = orjson.dumps(json_safe(document))
        except orjson.JSONEncodeError as exc:
            raise PolicyDeniedError(f"the policy input is not JSON data: {exc}") from None
    if len(encoded) > limits.max_document_bytes:
        raise PolicyDeniedError(f"the policy input is {len(encoded)} bytes; "
                                f"the limit is {limits.max_document_bytes}")
    return encoded


def json_safe(value: Any, depth: int = 0) -> Any:
    """``value`` as JSON data both engines accept: integers outside int64 become doubles, as in JSON.

    Returns ``value`` itself when nothing needs converting (the common case, and 8x faster).
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return value
    if kind is int:
        return value if _INT64_MIN <= value <= _INT64_MAX else _as_double(value)
    if kind is float:
        if not math.isfinite(value):
            raise PolicyDeniedError("the policy input holds a number that is not finite")
        return value
    if depth >= MAX_DEPTH:
        raise PolicyDeniedError(f"the policy input nests deeper than {MAX_DEPTH} levels")
    if kind is dict:
        copied: dict[str, Any] | None = None
        for key, item in value.items():
            if type(key) is not str:
                raise PolicyDeniedError("the policy input has an object key that is not a string")
            safe = json_safe(item, depth + 1)
            if safe is not item:
                copied = dict(value) if copied is None else copied
                copied[key] = safe
        return value if copied is None else copied
    if kind is list:
        listed: list[Any] | None = None
        for index, item in enumerate(value):
            safe = json_safe(item, depth + 1)
            if safe is not item:
                listed = list(value) if listed is None else listed
                listed[index] = safe
        return value if listed is None else listed
    if isinstance(value, Mapping):
        return json_safe(dict(value), depth)
    if isinstance(value, list | tuple):
        return json_safe(list(value), depth)
    if isinstance(value, str):  # subclasses (StrEnum...) as their plain values
        return str(value)
    if isinstance(value, int):
        return json_safe(int(value), depth)
    if isinstance(value, float):
        return json_safe(float(value), depth)
    raise PolicyDeniedError(f"the policy input holds a {kind.__name__}, which is not JSON data")


def _as_double(value: int) -> float:
    try:
        return float(value)
    except OverflowError:
        raise PolicyDeniedError("the policy input holds a number too large for a double") from None


def evaluation_time(now: datetime | None) -> datetime:
    """The instant a policy sees as ``now``: aware, in UTC."""
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("evaluation time must be timezone-aware")
    return now.astimezone(UTC)


def verify_pinned(body: bytes, sha256sum: str) -> str:
    """Check a fetched policy body against its pinned ``sha256sum``; return the text or raise PolicyError."""
    expected = sha256sum.strip().lower().removeprefix("sha256:")
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise PolicyError(f"sha256sum {sha256sum!r} is not 64 hexadecimal digits")
    found = hashlib.sha256(body).hexdigest()
    if found != expected:
        raise PolicyError(f"policy body has sha256 {found}, but the policy pins {expected}")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy body is not UTF-8 text: {exc}") from None


def one_line(text: str, width: int = 160) -> str:
    """``text`` on one line, shortened for a denial message."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"
