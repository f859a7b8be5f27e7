"""How a policy may be satisfied: ``spec.authorities[]`` of ``policy.signet.dev/v1alpha1``, and their parts.

ARCHITECTURE.md §4 is the contract; these models add (all optional, documented in the CRDs):

- ``keyless.rekor.url`` / ``keyless.ctlog.url`` — accept only the transparency log / CT log of the
  trust root with that base URL (default: any log of the trust root).
- ``key.secretRef`` (PEM from a Secret, resolved outside this pure package; unresolvable fails
  closed), ``key.hashAlgorithm`` (default sha256), ``key.rekor`` (present: a transparency-log
  entry is required for key signatures, optionally from that log).
- ``static.message`` on ``pass`` as well (recorded in the audit log).
- ``attestations`` (contract) and ``requireSignature`` (false: the attestations alone stand for
  the authority): see :mod:`webhook.policy.attestations`.

policy-controller's features (meanings in the CRDs): ``signatureFormat``, ``source``
(:mod:`~webhook.policy.sources`), ``rfc3161timestamp``, ``keyless.caCert`` and
``keyless.insecureIgnoreSCT`` (:mod:`~webhook.policy.custom_roots`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from webhook.policy._base import NAME_PATTERN, URL_PATTERN, Model, compile_regexp, one_of
from webhook.policy.attestations import MAX_ATTESTATIONS, Attestation, check_attestation_requirements
from webhook.policy.custom_roots import parse_ca_certificates
from webhook.policy.sources import SignatureSource
from webhook.verify.identity import Identity as IdentityPolicy
from webhook.verify.regexp import RegexpMode

# Fulcio certificate-extension claims a policy may require (name → OID). Names follow Fulcio's
# documentation, as cosign's `--certificate-github-workflow-*` and policy-controller users know
# them. Restricting names here turns a typo into a load error and lets the verifier map every
# accepted name to an OID (the same names as webhook/verify/identity.py's EXTENSION_NAMES).
# 1.3.6.1.4.1.57264.1.2-.6 are the deprecated raw-string GitHub claims.
FULCIO_EXTENSION_OIDS: dict[str, str] = {
    "githubWorkflowTrigger": "1.3.6.1.4.1.57264.1.2",
    "githubWorkflowSHA": "1.3.6.1.4.1.57264.1.3",
    "githubWorkflowName": "1.3.6.1.4.1.57264.1.4",
    "githubWorkflowRepository": "1.3.6.1.4.1.57264.1.5",
    "githubWorkflowRef": "1.3.6.1.4.1.57264.1.6",
    "buildSignerURI": "1.3.6.1.4.1.57264.1.9",
    "buildSignerDigest": "1.3.6.1.4.1.57264.1.10",
    "runnerEnvironment": "1.3.6.1.4.1.57264.1.11",
    "sourceRepositoryURI": "1.3.6.1.4.1.57264.1.12",
    "sourceRepositoryDigest": "1.3.6.1.4.1.57264.1.13",
    "sourceRepositoryRef": "1.3.6.1.4.1.57264.1.14",
    "sourceRepositoryIdentifier": "1.3.6.1.4.1.57264.1.15",
    "sourceRepositoryOwnerURI": "1.3.6.1.4.1.57264.1.16",
    "sourceRepositoryOwnerIdentifier": "1.3.6.1.4.1.57264.1.17",
    "buildConfigURI": "1.3.6.1.4.1.57264.1.18",
    "buildConfigDigest": "1.3.6.1.4.1.57264.1.19",
    "buildTrigger": "1.3.6.1.4.1.57264.1.20",
    "runInvocationURI": "1.3.6.1.4.1.57264.1.21",
    "sourceRepositoryVisibilityAtSigning": "1.3.6.1.4.1.57264.1.22",
    "deploymentEnvironment": "1.3.6.1.4.1.57264.1.23",
    "tokenSubject": "1.3.6.1.4.1.57264.1.24",
}

# Bound shared with the CRDs, as ``webhook.policy.models``'s are (the API server needs it to cost CEL rules).
MAX_IDENTITIES = 64


class SignatureFormat(StrEnum):
    """Which signatures an authority counts: cosign's ``.sig`` manifests, or Sigstore bundles."""

    LEGACY = "legacy"
    BUNDLE = "bundle"


class HashAlgorithm(StrEnum):
    """Digest algorithm of key-based signatures (cosign ``--signing-algorithm``/policy-controller)."""

    SHA224 = "sha224"
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"


class Identity(Model):
    """An allowed signer: OIDC issuer and certificate subject (SAN), each exact or an RE2 regexp (Go syntax).

    Regexps match the whole value in policy.signet.dev and anywhere in it (an unanchored search, as Go's
    ``MatchString``) in policy.sigstore.dev documents: the object's ``regexp_mode`` says which.
    """

    issuer: str | None = Field(default=None, min_length=1)
    issuer_reg_exp: str | None = Field(default=None, min_length=1)
    subject: str | None = Field(default=None, min_length=1)
    subject_reg_exp: str | None = Field(default=None, min_length=1)

    @field_validator("issuer_reg_exp", "subject_reg_exp")
    @classmethod
    def _valid_regexp(cls, value: str | None) -> str | None:
        return compile_regexp(value)

    @model_validator(mode="after")
    def _exactly_one_each(self) -> Identity:
        one_of(self, ("issuer", "issuer_reg_exp"))
        one_of(self, ("subject", "subject_reg_exp"))
        return self

    def to_policy(self, regexp_mode: RegexpMode) -> IdentityPolicy:
        """The verifier's policy for this signer; ``regexp_mode`` is the owning object's ``regexp_mode``."""
        return IdentityPolicy(issuer=self.issuer, issuer_regexp=self.issuer_reg_exp, subject=self.subject,
                              subject_regexp=self.subject_reg_exp, regexp_mode=regexp_mode)


class LogSelector(Model):
    """Restricts which log of the trust root is accepted (by base URL)."""

    url: str | None = Field(default=None, pattern=URL_PATTERN)
    trust_root_ref: str | None = Field(default=None, pattern=NAME_PATTERN)


class SecretKeyRef(Model):
    """A Secret holding one PEM public key; namespace defaults to Signet's own namespace."""

    name: str = Field(pattern=NAME_PATTERN)
    namespace: str | None = Field(default=None, pattern=NAME_PATTERN)


class CACert(Model):
    """Bring-your-own PKI: the CA certificates (PEM) signing certificates must be issued by, inline or in a Secret."""

    data: str | None = Field(default=None, max_length=65536)
    secret_ref: SecretKeyRef | None = None

    @field_validator("data")
    @classmethod
    def _pem_certificates(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_ca_certificates(value)
            except ValueError as exc:
                raise PydanticCustomError("pem", "{error}", {"error": str(exc)}) from exc
        return value

    @model_validator(mode="after")
    def _one_source(self) -> CACert:
        one_of(self, ("data", "secret_ref"))
        return self


class KeylessAuthority(Model):
    """Fulcio certificate + transparency log, signer among ``identities``, with every extension claim.

    With ``caCert`` the certificate must chain to those CA certificates instead, and a log entry is
    required only when ``rekor`` is set (:attr:`requires_log_entry`).
    """

    identities: list[Identity] = Field(min_length=1, max_length=MAX_IDENTITIES)
    extensions: dict[str, str] = Field(default_factory=dict)
    trust_root_ref: str | None = Field(default=None, pattern=NAME_PATTERN)
    rekor: LogSelector | None = None
    ctlog: LogSelector | None = None
    ca_cert: CACert | None = None
    insecure_ignore_sct: bool = Field(default=False, alias="insecureIgnoreSCT")

    @property
    def requires_log_entry(self) -> bool:
        """Fulcio certificates always need a log entry; a caCert authority only when ``rekor`` says so."""
        return self.ca_cert is None or self.rekor is not None

    @field_validator("extensions")
    @classmethod
    def _known_claims(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(FULCIO_EXTENSION_OIDS))
        if unknown:
            raise PydanticCustomError("claim", "unknown Fulcio claim(s) {unknown}; known: {known}",
                                      {"unknown": ", ".join(unknown),
                                       "known": ", ".join(sorted(FULCIO_EXTENSION_OIDS))})
        if any(not v for v in value.values()):
            raise PydanticCustomError("claim", "extension values must not be empty")
        return value


class KeyAuthority(Model):
    """A public key (PEM, inline or from a Secret) that must have signed the image."""

    data: str | None = None
    secret_ref: SecretKeyRef | None = None
    hash_algorithm: HashAlgorithm = HashAlgorithm.SHA256
    rekor: LogSelector | None = None

    @field_validator("data")
    @classmethod
    def _pem_public_key(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                load_pem_public_key(value.encode())
            except (ValueError, TypeError) as exc:  # cryptography reports bad PEM as ValueError
                raise PydanticCustomError(
                    "pem", "not a PEM-encoded public key (-----BEGIN PUBLIC KEY-----)"
                ) from exc
        return value

    @model_validator(mode="after")
    def _one_source(self) -> KeyAuthority:
        one_of(self, ("data", "secret_ref"))
        return self


class StaticAuthority(Model):
    """Pass or fail without looking at signatures (break-glass, or explicit denial)."""

    action: Literal["pass", "fail"]
    message: str | None = Field(default=None, max_length=1024)


class TimestampRequirement(Model):
    """``rfc3161timestamp``: an RFC 3161 timestamp from the timestamp authorities of this TrustRoot."""

    trust_root_ref: str = Field(pattern=NAME_PATTERN)


class Authority(Model):
    """One way to satisfy a policy; a policy passes when any one of its authorities does."""

    # Free text (policy-controller allows "keyless signatures"); it only labels audit records.
    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    keyless: KeylessAuthority | None = None
    key: KeyAuthority | None = None
    static: StaticAuthority | None = None
    signature_format: SignatureFormat | None = None
    source: list[SignatureSource] = Field(default_factory=list, max_length=1)
    rfc3161timestamp: TimestampRequirement | None = None
    attestations: list[Attestation] = Field(default_factory=list, max_length=MAX_ATTESTATIONS)
    require_signature: bool = True

    @model_validator(mode="after")
    def _one_kind(self) -> Authority:
        one_of(self, ("keyless", "key", "static"))
        check_attestation_requirements(self.attestations, self.require_signature, static=self.static is not None)
        if self.static is not None:
            # Nothing is verified for a static authority: a requirement on signatures would be ignored.
            for field, present in (("source", bool(self.source)), ("rfc3161timestamp", self.rfc3161timestamp)):
                if present:
                    raise PydanticCustomError("static", "static cannot be combined with {field}", {"field": field})
        return self

    @property
    def signature_source(self) -> SignatureSource | None:
        """The one ``source`` entry, if any."""
        return self.source[0] if self.source else None

    def trust_root_refs(self) -> tuple[str, ...]:
        """Every TrustRoot this authority names (each must exist, or the authority fails closed)."""
        logs = [self.key.rekor] if self.key is not None else []
        refs = []
        if self.keyless is not None:
            refs.append(self.keyless.trust_root_ref)
            logs += [self.keyless.rekor, self.keyless.ctlog]
        refs += [log.trust_root_ref for log in logs if log is not None]
        if self.rfc3161timestamp is not None:
            refs.append(self.rfc3161timestamp.trust_root_ref)
        return tuple(dict.fromkeys(r for r in refs if r is not None))
