"""TrustRoot (``policy.signet.dev/v1alpha1``): named trust material for ``trustRootRef``.

Exactly one of ``trustedRoot`` (a trusted_root.json, inline as a JSON string or an object),
``remote`` (a TUF mirror URL plus the base64 ``root.json`` to trust first) or ``repository``
(air-gapped: base64 tar.gz of a TUF repository, policy-controller's ``mirrorFS`` layout).

As in policy-controller, a TUF repository keeps its targets under ``targets`` (a path below the
repository root; default ``targets``) and the trust root in the target ``trustedRootTarget``
(default ``trusted_root.json``).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
from typing import Any, Literal

from pydantic import Field, PrivateAttr, field_validator, model_validator
from pydantic_core import PydanticCustomError

from webhook.policy._base import GROUP, URL_PATTERN, KubeObject, Model, one_of
from webhook.policy.groups import qualified_key

TRUSTED_ROOT_TARGET = "trusted_root.json"
# A path below the repository root and a target name: no segment starts with "." (so no "..").
_TARGETS_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$"
_TARGET_PATTERN = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$"


def _base64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PydanticCustomError("base64", "{what} is not valid base64", {"what": what}) from exc


def _json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise PydanticCustomError("json", "{what} is not valid JSON: {error}",
                                  {"what": what, "error": str(exc)}) from exc
    if not isinstance(parsed, dict):
        raise PydanticCustomError("json", "{what} must be a JSON object", {"what": what})
    return parsed


class RemoteTrustRoot(Model):
    """A TUF repository to refresh from, trusted from ``root`` (base64 of its ``root.json``)."""

    mirror: str = Field(pattern=URL_PATTERN)
    root: str
    targets: str = Field(default="targets", max_length=255, pattern=_TARGETS_PATTERN)
    trusted_root_target: str = Field(default=TRUSTED_ROOT_TARGET, max_length=255, pattern=_TARGET_PATTERN)

    @field_validator("root")
    @classmethod
    def _root_json(cls, value: str) -> str:
        _json_object(_base64(value, "root"), "root (decoded)")
        return value

    @property
    def root_bytes(self) -> bytes:
        """The TUF ``root.json`` to bootstrap from."""
        return base64.b64decode("".join(self.root.split()))


class RepositoryTrustRoot(Model):
    """Air-gapped TUF repository: ``mirrorFS`` is a base64 tar.gz (policy-controller's layout)."""

    root: str
    mirror_fs: str = Field(alias="mirrorFS")
    targets: str = Field(default="targets", max_length=255, pattern=_TARGETS_PATTERN)
    trusted_root_target: str = Field(default=TRUSTED_ROOT_TARGET, max_length=255, pattern=_TARGET_PATTERN)

    @field_validator("root")
    @classmethod
    def _root_json(cls, value: str) -> str:
        _json_object(_base64(value, "root"), "root (decoded)")
        return value

    @field_validator("mirror_fs")
    @classmethod
    def _tarball(cls, value: str) -> str:
        if not _base64(value, "mirrorFS").startswith(b"\x1f\x8b"):
            raise PydanticCustomError("tarball", "mirrorFS must be a base64 gzip-compressed tar archive")
        return value

    @property
    def root_bytes(self) -> bytes:
        """The TUF ``root.json`` to bootstrap from."""
        return base64.b64decode("".join(self.root.split()))

    @property
    def tarball(self) -> bytes:
        """The decompressed tar archive of the repository."""
        return gzip.decompress(base64.b64decode("".join(self.mirror_fs.split())))


class TrustRootSpec(Model):
    """Exactly one source of trust material."""

    trusted_root: dict[str, Any] | None = None
    remote: RemoteTrustRoot | None = None
    repository: RepositoryTrustRoot | None = None

    @field_validator("trusted_root", mode="before")
    @classmethod
    def _inline_json(cls, value: Any) -> Any:
        # Kubernetes users often paste the file as a string: both forms mean the same document.
        if isinstance(value, str):
            return _json_object(value, "trustedRoot")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> TrustRootSpec:
        one_of(self, ("trusted_root", "remote", "repository"))
        return self


class TrustRoot(KubeObject):
    """Named trust material that keyless authorities select with ``trustRootRef``."""

    kind: Literal["TrustRoot"] = "TrustRoot"
    spec: TrustRootSpec
    # The API group of the document it was loaded from (policy.sigstore.dev ones are translated).
    _api_group: str = PrivateAttr(default=GROUP)

    @property
    def api_group(self) -> str:
        """``policy.signet.dev``, or ``policy.sigstore.dev`` for a translated policy-controller document."""
        return self._api_group

    @property
    def key(self) -> str:
        """Unique identity within a policy set (``TrustRoot/name``; ``TrustRoot.<group>/name`` for another group)."""
        return qualified_key(self.kind, self._api_group, self.name)


