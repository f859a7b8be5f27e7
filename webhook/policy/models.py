"""Typed models of ``policy.signet.dev/v1alpha1``: ClusterImagePolicy, ImagePolicy, TrustRoot.

ARCHITECTURE.md §4 is the contract; these models add (all optional, documented in the CRDs):

- ``spec.mutate.pinDigest`` — the mutating webhook rewrites tag references to the verified digest.
- ``spec.multiArch`` — ``referencedDigest`` (default: the signature must be on the digest the
  workload names, index or platform manifest) or ``everyPlatform`` (additionally every platform
  manifest of an index must carry a valid signature, as ``cosign sign --recursive`` makes).
- ``spec.policy``: see :mod:`webhook.policy.attestations`.
- ``spec.authorities[]`` and what they add: see :mod:`webhook.policy.authorities`.

policy-controller's features, in both groups (meanings in the CRDs; ``webhook.policy.compat``
translates its documents): ``spec.match`` (:mod:`~webhook.policy.resources`) and the authorities'
(:mod:`~webhook.policy.authorities`).

Models are frozen and reject unknown fields, so a misspelt requirement (``subjectRegexp``) is an
error at load instead of a requirement silently dropped.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from webhook.policy._base import (
    API_VERSION,
    GROUP,
    VERSION,
    KubeObject,
    Model,
    ObjectMeta,
    set_origin,
)
from webhook.policy.attestations import SpecPolicy, config_map_namespaces
from webhook.policy.authorities import Authority
from webhook.policy.globs import GlobError, ImageGlob, compile_glob
from webhook.policy.groups import qualified_key
from webhook.policy.resources import MatchResource
from webhook.policy.sources import SignatureSource
from webhook.policy.trustroots import RemoteTrustRoot, RepositoryTrustRoot, TrustRoot, TrustRootSpec

__all__ = [
    "API_VERSION", "GROUP", "VERSION", "ClusterImagePolicy", "ImageEntry", "ImagePolicy", "MatchResource", "Mode",
    "MultiArch", "MutateSettings", "NoMatchPolicy", "ObjectMeta", "Policy", "PolicySpec", "RemoteTrustRoot",
    "RepositoryTrustRoot", "SignatureSource", "TrustRoot", "TrustRootSpec", "set_api_group", "set_origin",
]

# Bounds shared with the CRDs (the API server needs them to cost CEL rules); same limits here
# so that a file and a cluster object are valid or invalid together.
MAX_IMAGES = 256
MAX_AUTHORITIES = 32


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
