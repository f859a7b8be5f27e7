"""Typed models of ``policy.signet.dev/v1alpha1``: ClusterImagePolicy, ImagePolicy, TrustRoot.

ARCHITECTURE.md §4 is the contract; these models add (all optional, documented in the CRDs):

- ``spec.mutate.pinDigest`` — the mutating webhook rewrites tag references to the verified digest.
- ``spec.multiArch`` — ``referencedDigest`` (default: the signature must be on the digest the
  workload names, index or platform manifest) or ``everyPlatform`` (additionally every platform
  manifest of an index must carry a valid signature, as ``cosign sign --recursive`` makes).
- ``keyless.rekor.url`` / ``keyless.ctlog.url`` — accept only the transparency log / CT log of the
  trust root with that base URL (default: any log of the trust root).
- ``key.secretRef`` (PEM from a Secret, resolved outside this pure package; unresolvable fails
  closed), ``key.hashAlgorithm`` (default sha256), ``key.rekor`` (present: a transparency-log
  entry is required for key signatures, optionally from that log).
- ``static.message`` on ``pass`` as well (recorded in the audit log).
- ``authorities[].attestations`` (contract), ``authorities[].requireSignature`` (false: the attestations
  alone stand for the authority) and ``spec.policy``: see :mod:`webhook.policy.attestations`.

policy-controller's features, in both groups (meanings in the CRDs; ``webhook.policy.compat``
translates its documents): ``spec.match`` (:mod:`~webhook.policy.resources`),
``authorities[].signatureFormat``, ``source`` (:mod:`~webhook.policy.sources`),
``rfc3161timestamp``, ``keyless.caCert`` and ``keyless.insecureIgnoreSCT``
(:mod:`~webhook.policy.custom_roots`).

Models are frozen and reject unknown fields, so a misspelt requirement (``subjectRegexp``) is an
error at load instead of a requirement silently dropped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from cryptography.hazmat.primitives.serialization import load_pem_public_key
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from webhook.policy._base import (
    API_VERSION,
    GROUP,
    NAME_PATTERN,
    URL_PATTERN,
    VERSION,
    KubeObject,
    Model,
    ObjectMeta,
    compile_regexp,
    one_of,
    set_origin,
)
from webhook.policy.attestations import (
    MAX_ATTESTATIONS,
    Attestation,
    SpecPolicy,
    check_attestation_requirements,
    config_map_namespaces,
)
from webhook.policy.custom_roots import parse_ca_certificates
from webhook.policy.globs import GlobError, ImageGlob, compile_glob
from webhook.policy.groups import qualified_key
from webhook.policy.resources import MatchResource
from webhook.policy.sources import SignatureSource
from webhook.policy.trustroots import RemoteTrustRoot, RepositoryTrustRoot, TrustRoot, TrustRootSpec
from webhook.verify.identity import Identity as IdentityPolicy
from webhook.verify.regexp import RegexpMode

__all__ = [
    "API_VERSION", "FULCIO_EXTENSION_OIDS", "GROUP", "VERSION", "Authority", "ClusterImagePolicy",
    "HashAlgorithm", "Identity", "ImageEntry", "ImagePolicy", "KeyAuthority", "KeylessAuthority",
    "LogSelector", "MatchResource", "Mode", "MultiArch", "MutateSettings", "NoMatchPolicy", "ObjectMeta",
    "Policy", "PolicySpec", "RemoteTrustRoot", "RepositoryTrustRoot", "SecretKeyRef", "SignatureFormat",
    "SignatureSource", "StaticAuthority", "TimestampRequirement", "TrustRoot", "TrustRootSpec", "set_api_group",
    "set_origin",
]

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

# Bounds shared with the CRDs (the API server needs them to cost CEL rules); same limits here
# so that a file and a cluster object are valid or invalid together.
MAX_IMAGES = 256
MAX_AUTHORITIES = 32
MAX_IDENTITIES = 64


class Mode(StrEnum):
    """What a failing policy does: deny the workload, or admit it with a warning."""

    ENFORCE = "enforce"
    WARN = "warn"


class NoMatchPolicy(StrEnum):
    """What happens to an image that no ClusterImagePolicy matches."""

    DENY = "deny"
    WARN = "warn"
    ALLOW = "allow"


class MultiArch(StrEnum):
    """Which digests of a multi-platform image must be signed."""

    REFERENCED_DIGEST = "referencedDigest"
    EVERY_PLATFORM = "everyPlatform"


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


class ImageEntry(Model):
    """One ``images[]`` entry; the glob is compiled once, at load."""

    glob: str
    _compiled: ImageGlob | None = PrivateAttr(default=None)

    @field_validator("glob")
    @classmethod
    def _valid_glob(cls, value: str) -> str:
        try:
            compile_glob(value)
        except GlobError as exc:
            raise PydanticCustomError("glob", "{error}", {"error": str(exc)}) from exc
        return value

    def model_post_init(self, context: Any, /) -> None:
        self._compiled = compile_glob(self.glob)

    @property
    def compiled(self) -> ImageGlob:
        """The compiled, normalised glob."""
        assert self._compiled is not None  # set by model_post_init
        return self._compiled


class MutateSettings(Model):
    """Opt-in mutation of admitted workloads."""

    pin_digest: bool = False


class PolicySpec(Model):
    """Which images (``images``) must be signed by whom (``authorities``)."""

    images: list[ImageEntry] = Field(min_length=1, max_length=MAX_IMAGES)
    mode: Mode = Mode.ENFORCE
    authorities: list[Authority] = Field(min_length=1, max_length=MAX_AUTHORITIES)
    mutate: MutateSettings = Field(default_factory=MutateSettings)
    multi_arch: MultiArch = MultiArch.REFERENCED_DIGEST
    match: list[MatchResource] = Field(default_factory=list, max_length=32)
    policy: SpecPolicy | None = None

    @field_validator("authorities")
    @classmethod
    def _unique_names(cls, value: list[Authority]) -> list[Authority]:
        seen: set[str] = set()
        for authority in value:
            if authority.name in seen:
                raise PydanticCustomError("duplicate", "authority name '{name}' is used twice",
                                          {"name": authority.name})
            seen.add(authority.name)
        return value


class ClusterImagePolicy(KubeObject):
    """Applies to every namespace."""

    kind: Literal["ClusterImagePolicy"] = "ClusterImagePolicy"
    spec: PolicySpec
    # The API group of the document it was loaded from (policy.sigstore.dev ones are translated).
    _api_group: str = PrivateAttr(default=GROUP)

    @property
    def api_group(self) -> str:
        """``policy.signet.dev``, or ``policy.sigstore.dev`` for a translated policy-controller document."""
        return self._api_group

    @property
    def key(self) -> str:
        """Unique identity within a policy set: ``ClusterImagePolicy/name``, ``ClusterImagePolicy.<group>/name``
        for another API group (so that policy-controller's object of the same name never replaces Signet's)."""
        return qualified_key(self.kind, self._api_group, self.name)


class ImagePolicy(KubeObject):
    """Applies in its own namespace, in addition to the cluster policies (never instead)."""

    kind: Literal["ImagePolicy"] = "ImagePolicy"
    spec: PolicySpec

    @model_validator(mode="after")
    def _has_namespace(self) -> ImagePolicy:
        if not self.metadata.namespace:
            raise PydanticCustomError("namespace", "metadata.namespace is required for an ImagePolicy")
        return self

    @field_validator("spec")
    @classmethod
    def _own_secrets_only(cls, spec: PolicySpec, info: ValidationInfo) -> PolicySpec:
        # A namespace's policy must not read (or probe for) Secrets of other namespaces.
        metadata = info.data.get("metadata")
        namespace = metadata.namespace if isinstance(metadata, ObjectMeta) else None
        for index, authority in enumerate(spec.authorities):
            ca_cert = authority.keyless.ca_cert if authority.keyless is not None else None
            for field, ref in (("key.secretRef", authority.key.secret_ref if authority.key is not None else None),
                               ("keyless.caCert.secretRef", ca_cert.secret_ref if ca_cert is not None else None)):
                if ref is not None and ref.namespace is not None and ref.namespace != namespace:
                    raise PydanticCustomError(
                        "secret_namespace", "authorities[{index}].{field}.namespace: an ImagePolicy may only "
                        "use Secrets of its own namespace ({namespace}), not {other}",
                        {"index": index, "field": field, "namespace": namespace or "(none)",
                         "other": ref.namespace})
        for where, other in config_map_namespaces(spec):
            if other != namespace:
                raise PydanticCustomError(
                    "config_map_namespace", "{where}.configMapRef.namespace: an ImagePolicy may only use "
                    "ConfigMaps of its own namespace ({namespace}), not {other}",
                    {"where": where, "namespace": namespace or "(none)", "other": other})
        return spec

    @property
    def key(self) -> str:
        """Unique identity within a policy set (``ImagePolicy/namespace/name``)."""
        return f"{self.kind}/{self.metadata.namespace}/{self.name}"


Policy = ClusterImagePolicy | ImagePolicy


def set_api_group(obj: ClusterImagePolicy | TrustRoot, api_group: str) -> None:
    """Record the API group of the document an object was translated from (the loader's job)."""
    obj._api_group = api_group


