"""Identity policy: who may have signed (ARCHITECTURE.md §2 step i; SIGSTORE.md §3.3).

Modelled on sigstore-python's policy module: one small ``Policy`` protocol whose ``verify(cert)``
returns nothing and raises on failure, leaf policies (``Identity``, ``ExtensionClaims``) and the
combinators ``AllOf``/``AnyOf``, which fail closed on an empty list. The certificate handed to a
policy must already be path-validated: policies only read what Fulcio attested.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from cryptography import x509

from webhook.errors import IdentityMismatchError, PolicyError, VerificationError
from webhook.verify._der import DERError, decode_string
from webhook.verify.regexp import Regexp, RegexpMode, compile_regexp, shown

_logger = logging.getLogger(__name__)

STEP = "identity"
FULCIO_OID_ARC = "1.3.6.1.4.1.57264.1"
_SAN_OTHERNAME_OID = x509.ObjectIdentifier(f"{FULCIO_OID_ARC}.7")
_ISSUER_V1 = 1
_ISSUER_V2 = 8
_LAST_RAW_EXTENSION = 6
"""Extensions .1–.6 hold raw UTF-8; .8 and later a DER string (Fulcio docs/oid-info.md)."""

# Names as sigstore-go (and so cosign and policy-controller) spell them; matched case-insensitively.
EXTENSION_NAMES: Mapping[int, str] = {
    1: "issuer",
    2: "githubWorkflowTrigger",
    3: "githubWorkflowSHA",
    4: "githubWorkflowName",
    5: "githubWorkflowRepository",
    6: "githubWorkflowRef",
    8: "issuer",
    9: "buildSignerURI",
    10: "buildSignerDigest",
    11: "runnerEnvironment",
    12: "sourceRepositoryURI",
    13: "sourceRepositoryDigest",
    14: "sourceRepositoryRef",
    15: "sourceRepositoryIdentifier",
    16: "sourceRepositoryOwnerURI",
    17: "sourceRepositoryOwnerIdentifier",
    18: "buildConfigURI",
    19: "buildConfigDigest",
    20: "buildTrigger",
    21: "runInvocationURI",
    22: "sourceRepositoryVisibilityAtSigning",
    23: "deploymentEnvironment",
    24: "tokenSubject",
}
# A name may stand for several OIDs, tried in order: "issuer" prefers the V2 (.8) extension.
_NUMBERS_BY_NAME: Mapping[str, tuple[int, ...]] = {
    "issuer": (_ISSUER_V2, _ISSUER_V1),
    **{name.lower(): (number,) for number, name in EXTENSION_NAMES.items() if name != "issuer"},
}


class Policy(Protocol):
    """Anything that decides whether a verified certificate's signer is acceptable."""

    def verify(self, cert: x509.Certificate) -> None:
        """Return if the certificate satisfies the policy; raise VerificationError otherwise."""


@dataclass(frozen=True)
class Signer:
    """Who a certificate says signed: for denial messages and the audit log."""

    subject: str
    """The SAN value (email, URI or OtherName username); empty if the certificate has none."""
    issuer: str
    """The OIDC issuer (extension .8, else .1); empty if absent."""
    extensions: Mapping[str, str] = field(default_factory=dict)
    """Every Fulcio claim present, by name (see EXTENSION_NAMES)."""

    def describe(self) -> str:
        return f"{shown(self.subject) or '(no subject)'} / issuer {shown(self.issuer) or '(none)'}"


def _extension_bytes(cert: x509.Certificate, number: int) -> bytes | None:
    oid = x509.ObjectIdentifier(f"{FULCIO_OID_ARC}.{number}")
    try:
        extension = cert.extensions.get_extension_for_oid(oid)
    except x509.ExtensionNotFound:
        return None
    except ValueError as exc:  # duplicate or malformed extensions
        raise VerificationError(f"certificate extensions are malformed: {exc}", step=STEP) from exc
    if not isinstance(extension.value, x509.UnrecognizedExtension):
        raise VerificationError(
            f"certificate extension {oid.dotted_string} has an unexpected type", step=STEP
        )
    return extension.value.value


def extension_value(cert: x509.Certificate, number: int) -> str | None:
    """The text of Fulcio extension ``1.3.6.1.4.1.57264.1.<number>``, or None when absent."""
    raw = _extension_bytes(cert, number)
    if raw is None:
        return None
    try:
        return raw.decode("utf-8") if number <= _LAST_RAW_EXTENSION else decode_string(raw)
    except (UnicodeDecodeError, DERError) as exc:
        raise VerificationError(
            f"certificate extension {FULCIO_OID_ARC}.{number} is not a valid string: {exc}", step=STEP
        ) from exc


def issuer_of(cert: x509.Certificate) -> str | None:
    """The OIDC issuer Fulcio attested: extension .8 (DER), falling back to the deprecated .1 (raw)."""
    value = extension_value(cert, _ISSUER_V2)
    return value if value is not None else extension_value(cert, _ISSUER_V1)


def subjects_of(cert: x509.Certificate) -> list[str]:
    """The SAN values an identity may match: email, URI and Fulcio's OtherName username."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    except ValueError as exc:
        raise VerificationError(f"certificate SubjectAlternativeName is malformed: {exc}", step=STEP) from exc
    values: list[str] = [*san.get_values_for_type(x509.RFC822Name),
                         *san.get_values_for_type(x509.UniformResourceIdentifier)]
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id != _SAN_OTHERNAME_OID:
            continue
        try:
            # cryptography returns the OtherName value as DER: a UTF8String with tag and length.
            values.append(decode_string(other.value))
        except DERError as exc:
            raise VerificationError(
                f"certificate OtherName SAN is not a DER string: {exc}", step=STEP
            ) from exc
    return values


def signer_of(cert: x509.Certificate) -> Signer:
    """Describe the signer of ``cert``; never raises (malformed claims are simply left out)."""
    try:
        subjects = subjects_of(cert)
    except VerificationError:
        subjects = []
    extensions: dict[str, str] = {}
    for number, name in EXTENSION_NAMES.items():
        try:
            value = extension_value(cert, number)
        except VerificationError:
            continue
        # .8 comes after .1 in the table, so the V2 issuer wins when both are present.
        if value is not None:
            extensions[name] = value
    return Signer(subject=subjects[0] if subjects else "", issuer=extensions.get("issuer", ""),
                  extensions=extensions)


class _Matcher:
    """An exact value or an RE2 regexp (full match or search), with a description for messages."""

    def __init__(self, what: str, exact: str | None, regexp: str | None, mode: RegexpMode) -> None:
        if (exact is None) == (regexp is None):
            raise PolicyError(f"an identity needs exactly one of {what} and {what}RegExp")
        if exact == "" or regexp == "":
            # cosign reads an empty value as "no constraint"; refusing it keeps that from admitting anyone.
            raise PolicyError(f"the {what}{'' if exact is not None else 'RegExp'} of an identity must not be empty")
        self.exact = exact
        self.regexp: Regexp | None = None
        if regexp is not None:
            try:
                self.regexp = compile_regexp(regexp, mode)
            except PolicyError as exc:
                raise PolicyError(f"{what}RegExp: {exc.reason}") from exc
            self.description = f"{what} matching regexp {self.regexp.describe()}"
        else:
            self.description = f"{what} {exact}"

    def matches(self, value: str) -> bool:
        if self.regexp is not None:
            return self.regexp.matches(value)
        return value == self.exact


class Identity:
    """An allowed signer: OIDC issuer and certificate subject, each exact or an RE2 regexp (Go syntax).

    ``regexp_mode="search"`` is cosign's and policy-controller's reading (a match anywhere in the value);
    ``"full"`` (Signet's own policies) requires the whole value to match.
    """

    def __init__(self, *, issuer: str | None = None, issuer_regexp: str | None = None,
                 subject: str | None = None, subject_regexp: str | None = None,
                 regexp_mode: RegexpMode = "full") -> None:
        self._subject = _Matcher("subject", subject, subject_regexp, regexp_mode)
        self._issuer = _Matcher("issuer", issuer, issuer_regexp, regexp_mode)

    def describe(self) -> str:
        return f"{self._subject.description}, {self._issuer.description}"

    def verify(self, cert: x509.Certificate) -> None:
        subjects = subjects_of(cert)
        issuer = issuer_of(cert)
        subject_ok = any(self._subject.matches(value) for value in subjects)
        issuer_ok = issuer is not None and self._issuer.matches(issuer)
        if subject_ok and issuer_ok:
            return
        found = f"{' '.join(map(shown, subjects)) or '(no subject)'} / issuer {shown(issuer or '') or '(none)'}"
        raise IdentityMismatchError(
            f"certificate identity {found} does not match expected {self.describe()}",
            found=found, expected=self.describe(),
        )


def _resolve_claim(key: str) -> tuple[str, tuple[int, ...]]:
    """Map a claim name or dotted OID to (display name, extension numbers to try)."""
    if key.startswith(f"{FULCIO_OID_ARC}."):
        suffix = key[len(FULCIO_OID_ARC) + 1:]
        if suffix.isdigit() and int(suffix) in EXTENSION_NAMES:
            return key, (int(suffix),)
        raise PolicyError(f"{key} is not a Fulcio certificate extension that can be matched")
    numbers = _NUMBERS_BY_NAME.get(key.lower())
    if numbers is None:
        raise PolicyError(f"unknown certificate extension claim {key!r}; known: "
                          + ", ".join(sorted({*EXTENSION_NAMES.values()})))
    return EXTENSION_NAMES[numbers[0]], numbers


class ExtensionClaims:
    """Exact values required of Fulcio certificate extensions, e.g. ``{"sourceRepositoryRef": ...}``.

    Keys are claim names (case-insensitive, as cosign/policy-controller spell them) or dotted OIDs
    ``1.3.6.1.4.1.57264.1.<n>``. Every claim must be present and equal; all mismatches are reported.
    """

    def __init__(self, claims: Mapping[str, str]) -> None:
        if not claims:
            raise PolicyError("extension claims must name at least one claim")
        resolved: list[tuple[str, tuple[int, ...], str]] = []
        for key, expected in claims.items():
            if not isinstance(expected, str):
                raise PolicyError(f"extension claim {key!r} must be a string, not {type(expected).__name__}")
            name, numbers = _resolve_claim(key)
            resolved.append((name, numbers, expected))
        self._claims = tuple(resolved)

    def describe(self) -> str:
        return ", ".join(f"{name}={expected}" for name, _, expected in self._claims)

    def verify(self, cert: x509.Certificate) -> None:
        found: list[str] = []
        problems: list[str] = []
        for name, numbers, expected in self._claims:
            value = None
            for number in numbers:
                value = extension_value(cert, number)
                if value is not None:
                    break
            found.append(f"{name}={value if value is not None else '(absent)'}")
            if value is None:
                problems.append(f"{name} is absent, expected {expected!r}")
            elif value != expected:
                problems.append(f"{name} is {value!r}, expected {expected!r}")
        if problems:
            raise IdentityMismatchError("certificate extension claims do not match: " + "; ".join(problems),
                                        found=", ".join(found), expected=self.describe())


def _empty(kind: str, cert: x509.Certificate) -> IdentityMismatchError:
    # An empty combinator is almost certainly a configuration slip; admitting everyone would be
    # the worst possible reading of it.
    return IdentityMismatchError(f"{kind} has no policies, so nothing is allowed (fails closed)",
                                 found=signer_of(cert).describe(), expected="(nothing: empty policy list)")


class AllOf:
    """Every child policy must pass."""

    def __init__(self, children: Sequence[Policy]) -> None:
        self._children = tuple(children)

    def verify(self, cert: x509.Certificate) -> None:
        if not self._children:
            raise _empty("AllOf", cert)
        for child in self._children:
            child.verify(cert)


class AnyOf:
    """At least one child policy must pass; the error lists every alternative that was tried."""

    def __init__(self, children: Sequence[Policy]) -> None:
        self._children = tuple(children)

    def verify(self, cert: x509.Certificate) -> None:
        if not self._children:
            raise _empty("AnyOf", cert)
        expected: list[str] = []
        for child in self._children:
            try:
                child.verify(cert)
            except IdentityMismatchError as exc:
                expected.append(exc.expected)
            except VerificationError as exc:
                expected.append(f"(unusable: {exc.reason})")
            else:
                return
        found = signer_of(cert).describe()
        alternatives = " or ".join(f"[{item}]" for item in expected)
        raise IdentityMismatchError(
            f"certificate identity {found} does not match any allowed identity: expected {alternatives}",
            found=found, expected=alternatives,
        )


class UnsafeNoOp:
    """Accepts every signer. Only for tests and deliberate break-glass configurations."""

    def verify(self, cert: x509.Certificate) -> None:
        _logger.warning("UnsafeNoOp identity policy: accepting the signer without any identity check")
