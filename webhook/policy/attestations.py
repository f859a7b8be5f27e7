"""Policies over signed content: an authority's ``attestations`` and a policy's ``spec.policy`` (ARCHITECTURE.md §4).

An attestation requirement names an in-toto predicate type (an exact URI, or one of cosign's and
policy-controller's short names) and optionally a CEL or Rego policy over the statement. The
policy-level ``spec.policy`` (policy-controller's) judges what the authorities matched, and may see
the workload (``includeSpec``, ``includeObjectMeta``, ``includeTypeMeta``) and the image's config
file (``fetchConfigFile``).

A policy's text is inline (``data``, compiled here, when the document loads: an expression that
does not compile is a load error naming line and column), or a pinned document to fetch
(``remote``: URL + ``sha256sum``) or a ConfigMap entry (``configMapRef``). Those two are only
*named* here, so loading stays free of network and cluster: the decision engine fetches them,
checks the pin, compiles and caches them (``webhook.decision.policy_sources``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import ClassVar, Final, Protocol

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from webhook.errors import PolicyError
from webhook.policy._base import NAME_PATTERN, URL_PATTERN, Model, one_of
from webhook.policy.expressions import DEFAULT_LIMITS, CompiledPolicy, Language, Scope, compile_policy

__all__ = [
    "MAX_ATTESTATIONS", "PREDICATE_TYPE_NAMES", "Attestation", "ConfigMapPolicyRef", "ContentPolicy",
    "RemotePolicy", "SpecPolicy", "check_attestation_requirements", "compiled_policy", "config_map_namespaces",
    "predicate_type_uri", "uses_expressions",
]

# cosign's `--type` names (cosign/pkg/cosign/options: PredicateTypeMap), which policy-controller
# accepts in `predicateType` too; anything else is the predicate type itself.
PREDICATE_TYPE_NAMES: Final[dict[str, str]] = {
    "custom": "https://cosign.sigstore.dev/attestation/v1",
    "slsaprovenance": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance02": "https://slsa.dev/provenance/v0.2",
    "slsaprovenance1": "https://slsa.dev/provenance/v1",
    "spdx": "https://spdx.dev/Document",
    "spdxjson": "https://spdx.dev/Document",
    "cyclonedx": "https://cyclonedx.org/bom",
    "link": "https://in-toto.io/Link/v1",
    "vuln": "https://cosign.sigstore.dev/attestation/vuln/v1",
    "openvex": "https://openvex.dev/ns",
}
MAX_ATTESTATIONS: Final = 16
_MAX_POLICY_TEXT: Final = DEFAULT_LIMITS.max_source_bytes
_SHA256 = r"^(sha256:)?[0-9a-fA-F]{64}$"


def predicate_type_uri(value: str) -> str:
    """The predicate type a requirement means: a short name's URI, else the value itself."""
    return PREDICATE_TYPE_NAMES.get(value, value)


# Compiled policies by (language, scope, text): reloading a directory or relisting the cluster must
# not recompile (Rego's compile check costs a sandbox round trip). Bounded; failures are not kept.
_COMPILED: OrderedDict[tuple[str, str, str], CompiledPolicy] = OrderedDict()
_COMPILED_MAX = 512
_lock = threading.Lock()


def compiled_policy(language: str, text: str, scope: Scope) -> CompiledPolicy:
    """``text`` compiled as a ``type: language`` policy for ``scope`` (cached); PolicyError when it cannot be."""
    key = (language, scope.value, text)
    with _lock:
        hit = _COMPILED.get(key)
        if hit is not None:
            _COMPILED.move_to_end(key)
            return hit
    compiled = compile_policy(language, text, scope)
    with _lock:
        _COMPILED[key] = compiled
        while len(_COMPILED) > _COMPILED_MAX:
            _COMPILED.popitem(last=False)
    return compiled


def _check_language(language: str) -> None:
    if language == "cue":
        raise PolicyError("type: cue is not supported: CUE has no Python runtime; write the policy in rego "
                          "(same input and meaning as policy-controller) or cel")
    if language not in (Language.CEL, Language.REGO):
        raise PolicyError(f"unknown policy type {language!r}; expected cel or rego")


class RemotePolicy(Model):
    """A policy document at ``url``, used only when the SHA-256 of the body is ``sha256sum`` (as policy-controller)."""

    url: str = Field(max_length=2048, pattern=URL_PATTERN)
    sha256sum: str = Field(pattern=_SHA256)

    @property
    def pinned(self) -> str:
        """The pinned digest as 64 lowercase hex digits."""
        return self.sha256sum.lower().removeprefix("sha256:")


class ConfigMapPolicyRef(Model):
    """An entry of a ConfigMap holding the policy text; ``namespace`` None is Signet's own namespace."""

    name: str = Field(max_length=253, pattern=NAME_PATTERN)
    namespace: str | None = Field(default=None, max_length=253, pattern=NAME_PATTERN)
    key: str = Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")


class ContentPolicy(Model):
    """A CEL or Rego policy: ``data`` inline, or a pinned ``remote`` document, or a ``configMapRef`` entry."""

    type: str = Field(min_length=1, max_length=16)
    data: str | None = Field(default=None, min_length=1, max_length=_MAX_POLICY_TEXT)
    remote: RemotePolicy | None = None
    config_map_ref: ConfigMapPolicyRef | None = None
    _compiled: CompiledPolicy | None = PrivateAttr(default=None)
    scope: ClassVar[Scope] = Scope.ATTESTATION

    @model_validator(mode="after")
    def _compiles(self) -> ContentPolicy:
        one_of(self, ("data", "remote", "config_map_ref"))
        try:
            _check_language(self.type)
            if self.data is not None:
                self._compiled = compiled_policy(self.type, self.data, self.scope)
        except PolicyError as exc:
            raise PydanticCustomError("policy", "{error}", {"error": exc.reason}) from None
        return self

    @property
    def compiled(self) -> CompiledPolicy | None:
        """The compiled inline policy; None when its text is fetched (``remote``, ``configMapRef``)."""
        return self._compiled

    @property
    def source(self) -> str:
        """Where the text comes from, for messages: ``inline``, the URL, or ``ConfigMap ns/name[key]``."""
        if self.remote is not None:
            return self.remote.url
        if self.config_map_ref is not None:
            ref = self.config_map_ref
            return f"ConfigMap {ref.namespace or '(signet namespace)'}/{ref.name}[{ref.key}]"
        return "inline"


class SpecPolicy(ContentPolicy):
    """``spec.policy``: judges the authorities that matched (policy-controller's PolicyResult), once one did."""

    fetch_config_file: bool = False
    include_spec: bool = False
    include_object_meta: bool = False
    include_type_meta: bool = False
    scope: ClassVar[Scope] = Scope.POLICY

    @property
    def needs_workload(self) -> bool:
        """The policy sees part of the admitted object, so its result is per workload, not per image."""
        return self.include_spec or self.include_object_meta or self.include_type_meta


class Attestation(Model):
    """One attestation an authority requires: found, signed by the authority, of this type, passing ``policy``."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[^\x00-\x1f\x7f]+$")
    predicate_type: str = Field(min_length=1, max_length=1024, pattern=r"^[^\s]+$")
    policy: ContentPolicy | None = None

    @field_validator("predicate_type")
    @classmethod
    def _known_names(cls, value: str) -> str:
        return predicate_type_uri(value)


def check_attestation_requirements(attestations: Sequence[Attestation], require_signature: bool, *,
                                   static: bool) -> None:
    """An authority's attestation rules: unique names (``spec.policy`` refers to them), not on ``static``,
    and ``requireSignature: false`` only where attestations stand in for the signature."""
    if static and (attestations or not require_signature):
        raise PydanticCustomError("static", "static cannot be combined with attestations or requireSignature")
    if not require_signature and not attestations:
        raise PydanticCustomError("require_signature", "requireSignature: false needs at least one attestation "
                                  "(otherwise the authority would require nothing)")
    seen: set[str] = set()
    for attestation in attestations:
        if attestation.name in seen:
            raise PydanticCustomError("duplicate", "attestation name '{name}' is used twice in this authority",
                                      {"name": attestation.name})
        seen.add(attestation.name)


class _Authority(Protocol):
    @property
    def attestations(self) -> list[Attestation]: ...


class _Spec(Protocol):
    @property
    def authorities(self) -> Sequence[_Authority]: ...

    @property
    def policy(self) -> SpecPolicy | None: ...


class _Policy(Protocol):
    @property
    def spec(self) -> _Spec: ...


def config_map_namespaces(spec: _Spec) -> Iterator[tuple[str, str]]:
    """(field path, namespace) of every ``configMapRef`` naming a namespace (an ImagePolicy may name only its own)."""
    for index, authority in enumerate(spec.authorities):
        for number, attestation in enumerate(authority.attestations):
            ref = attestation.policy.config_map_ref if attestation.policy is not None else None
            if ref is not None and ref.namespace is not None:
                yield f"authorities[{index}].attestations[{number}].policy", ref.namespace
    ref = spec.policy.config_map_ref if spec.policy is not None else None
    if ref is not None and ref.namespace is not None:
        yield "policy", ref.namespace


def uses_expressions(policy: _Policy) -> bool:
    """The policy has a CEL or Rego policy to evaluate (so decisions need the policy sandbox)."""
    spec = policy.spec
    return spec.policy is not None or any(a.policy is not None for authority in spec.authorities
                                          for a in authority.attestations)
