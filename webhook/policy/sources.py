"""An authority's ``source``: where its signatures are looked up (policy-controller's Source).

``oci`` names another repository holding the signatures (``cosign sign`` with ``COSIGN_REPOSITORY``);
``signaturePullSecrets`` name Secrets *in the workload's namespace* whose registry credentials read
that repository; ``tagPrefix`` is prepended to cosign's tags (``<prefix>sha256-<hex>.sig``). Without
a source, signatures are looked up next to the image with the workload's pull secrets.
"""

from __future__ import annotations

import re

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from webhook.errors import InputError
from webhook.oci.reference import parse_reference
from webhook.policy._base import Model

# A tag is at most 128 characters; cosign's own part of it ("sha256-<64 hex>.sig") takes 75.
MAX_TAG_PREFIX = 128 - len("sha256-") - 64 - len(".sig")
MAX_PULL_SECRETS = 16
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:[0-9]+)?")


def signature_repository(oci: str) -> str:
    """The canonical repository an ``oci`` source names (``registry/path``); ValueError says why it cannot be used.

    policy-controller's rule: a value whose first component has no ``.`` or ``:`` must be a bare
    registry; anything else must be a repository with that registry, without tag or digest.
    Signet refuses a bare registry too: signatures live in a repository, and policy-controller
    would look for them in ``index.docker.io/library/<registry>``.
    """
    first, slash, _ = oci.partition("/")
    if not slash or not ("." in first or ":" in first):
        if not slash and _HOST.fullmatch(oci):
            raise ValueError(f"{oci!r} names a registry, not a repository: give the repository that holds the "
                             "signatures (e.g. ghcr.io/acme/signatures)")
        raise ValueError(f"{oci!r} is not a repository: it must start with a registry host (a name with '.' or "
                         "':'), e.g. ghcr.io/acme/signatures")
    if "@" in oci or ":" in oci[len(first):]:
        raise ValueError(f"{oci!r} must name a repository, without tag or digest")
    try:
        return parse_reference(oci).name
    except InputError as exc:
        raise ValueError(exc.reason) from None


def signature_tag(digest: str, prefix: str = "", suffix: str = "sig") -> str:
    """cosign's tag for ``digest`` (``sha256:<hex>``): ``<prefix>sha256-<hex>.<suffix>`` (sig, att)."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{prefix}{algorithm}-{hex_digest}.{suffix}"


class PullSecretRef(Model):
    """A Secret of the workload's namespace holding registry credentials (``kubernetes.io/dockerconfigjson``)."""

    name: str = Field(max_length=253)

    @field_validator("name")
    @classmethod
    def _named(cls, value: str) -> str:
        # policy-controller only requires a name; any other character could not name a Secret.
        if not value:
            raise PydanticCustomError("secret_name", "a pull secret needs a name")
        if not all(c.isascii() and (c.isalnum() or c in "._-") for c in value):
            raise PydanticCustomError("secret_name", "'{value}' cannot name a Secret (letters, digits, '.', '_' "
                                      "and '-' only)", {"value": value})
        return value


class SignatureSource(Model):
    """Where an authority's signatures (and attestations) are read from."""

    oci: str | None = Field(default=None, max_length=255)
    signature_pull_secrets: list[PullSecretRef] = Field(default_factory=list, max_length=MAX_PULL_SECRETS)
    tag_prefix: str = Field(default="", max_length=MAX_TAG_PREFIX, pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)?$")

    @field_validator("oci")
    @classmethod
    def _repository(cls, value: str | None) -> str | None:
        if value:  # policy-controller treats an empty oci as absent
            try:
                signature_repository(value)
            except ValueError as exc:
                raise PydanticCustomError("oci", "{error}", {"error": str(exc)}) from None
        return value or None

    @property
    def repository(self) -> str | None:
        """The canonical repository holding the signatures; None: the image's own repository."""
        return signature_repository(self.oci) if self.oci else None
