"""Shared pieces of the policy.signet.dev models: base model, object metadata, one-of rule."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from webhook.errors import PolicyError
from webhook.verify.regexp import RegexpMode, check_regexp

GROUP = "policy.signet.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
URL_PATTERN = r"^https?://[^\s/]+(/\S*)?$"


def one_of(model: BaseModel, fields: tuple[str, ...]) -> None:
    present = [f for f in fields if getattr(model, f) is not None]
    if len(present) != 1:
        names = [type(model).model_fields[f].alias or f for f in fields]
        listed = ", ".join(names[:-1]) + f" and {names[-1]}"
        raise PydanticCustomError("one_of", "exactly one of {names} is required", {"names": listed})


def compile_regexp(value: str | None) -> str | None:
    """Validate an identity regexp (Go syntax, RE2) at load; the message says what RE2 or Go refuses."""
    if value is not None:
        try:
            check_regexp(value)
        except PolicyError as exc:
            raise PydanticCustomError("regexp", "{error}", {"error": exc.reason}) from exc
    return value


class Model(BaseModel):
    """Frozen, camelCase on the wire, unknown fields rejected (a typo must not drop a rule)."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, alias_generator=to_camel, populate_by_name=True,
        str_strip_whitespace=False,
    )


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata Signet reads; the API server's other fields are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str = Field(min_length=1, max_length=253, pattern=NAME_PATTERN)
    namespace: str | None = Field(default=None, max_length=63)


class KubeObject(Model):
    """A top-level object: apiVersion, metadata (kind and spec are added by each kind)."""

    api_version: Literal["policy.signet.dev/v1alpha1"] = "policy.signet.dev/v1alpha1"
    metadata: ObjectMeta
    # Where the object came from ("policies/a.yaml", "cluster", original apiVersion): for messages.
    _origin: str = PrivateAttr(default="")
    # Identity regexps match in full in policy.signet.dev; policy.sigstore.dev documents search (Go).
    _regexp_mode: RegexpMode = PrivateAttr(default="full")

    @property
    def name(self) -> str:
        """``metadata.name``."""
        return self.metadata.name

    @property
    def origin(self) -> str:
        """Where it was loaded from, for messages and audit (e.g. ``policies/a.yaml``)."""
        return self._origin

    @property
    def regexp_mode(self) -> RegexpMode:
        """How this object's identity regexps match: ``full``, or ``search`` as policy-controller does."""
        return self._regexp_mode


def set_origin(obj: KubeObject, origin: str) -> None:
    """Record where an object came from (the loader's job; models stay frozen otherwise)."""
    obj._origin = origin


def set_regexp_mode(obj: KubeObject, mode: RegexpMode) -> None:
    """Make identity regexps search (``policy.sigstore.dev`` documents) or match in full (the loader's job)."""
    obj._regexp_mode = mode

