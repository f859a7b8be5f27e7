"""Image references: parsing and normalising ``[registry/]repository[:tag][@digest]``.

The grammar is the one of the CNCF distribution project (``distribution/reference``), with Docker
Hub normalised the way Docker and go-containerregistry do it, so that a policy glob, a cache key
and a token scope all see the same name: ``nginx`` is ``index.docker.io/library/nginx:latest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from webhook.errors import InputError

DOCKER_HUB = "index.docker.io"
"""Canonical name of Docker Hub (go-containerregistry's default registry)."""

DOCKER_HUB_API_HOST = "registry-1.docker.io"
"""The host that actually serves Docker Hub's registry API."""

DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

DEFAULT_TAG = "latest"

_MAX_NAME_LENGTH = 255

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[[a-fA-F0-9:]+\]"
_DOMAIN_RE = re.compile(rf"^(?:{_IPV6}|{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*)(?::[0-9]+)?$")
_PATH_COMPONENT_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$")


def is_valid_digest(value: str) -> bool:
    """True for ``sha256:<64 lowercase hex>`` or ``sha512:<128 lowercase hex>``."""
    return _DIGEST_RE.match(value) is not None


def normalise_registry(registry: str) -> str:
    """Lower-case a registry host and fold Docker Hub's aliases into ``index.docker.io``."""
    host = registry.lower()
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def _looks_like_registry(component: str) -> bool:
    # The distribution rule: only a first component with a dot, a port or the literal
    # "localhost" names a registry; "acme/app" is the Docker Hub repository acme/app.
    return "." in component or ":" in component or component == "localhost"


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A normalised image reference; at least one of ``tag`` and ``digest`` is set."""

    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse ``text``; raises InputError naming what is wrong with it."""
        return parse_reference(text)

    @property
    def name(self) -> str:
        """``registry/repository``: what policies match and what caches key on."""
        return f"{self.registry}/{self.repository}"

    @property
    def identifier(self) -> str:
        """What goes after ``/manifests/``: the digest when known (immutable), else the tag."""
        if self.digest is not None:
            return self.digest
        return self.tag or DEFAULT_TAG

    @property
    def is_docker_hub(self) -> bool:
        return self.registry == DOCKER_HUB

    def with_digest(self, digest: str) -> ImageReference:
        """The same reference pinned to ``digest`` (the tag is kept for display)."""
        if not is_valid_digest(digest):
            raise InputError(f"invalid digest {digest!r}: expected sha256:<64 hex> or sha512:<128 hex>")
        return ImageReference(self.registry, self.repository, self.tag, digest)

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """Parse and normalise an image reference (see module docstring)."""

    def bad(why: str) -> InputError:
        return InputError(f"invalid image reference {text!r}: {why}")

    if not text or text != text.strip():
        raise bad("empty or surrounded by whitespace")
    remainder = text
    digest: str | None = None
    if "@" in remainder:
        remainder, _, digest = remainder.partition("@")
        if "@" in digest:
            raise bad("more than one '@'")
        if not is_valid_digest(digest):
            raise bad(f"digest {digest!r} is not sha256:<64 lowercase hex> or sha512:<128 lowercase hex>")

    # The tag is after the last ':' that follows the last '/', so a registry port is not a tag.
    tag: str | None = None
    last_slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > last_slash:
        remainder, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise bad(f"tag {tag!r} must be 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'")

    if not remainder:
        raise bad("no repository name")
    first, slash, rest = remainder.partition("/")
    if slash and _looks_like_registry(first):
        if not _DOMAIN_RE.match(first):
            raise bad(f"registry {first!r} is not a valid host[:port]")
        registry, path = normalise_registry(first), rest
    else:
        registry, path = DOCKER_HUB, remainder

    components = path.split("/")
    for component in components:
        if not component:
            raise bad("empty path component (a leading, trailing or double '/')")
        if not _PATH_COMPONENT_RE.match(component):
            hint = " (repository names are lower case)" if component.lower() != component else ""
            raise bad(
                f"repository component {component!r} is not [a-z0-9] separated by '.', '_', '__' or '-'{hint}"
            )
    if registry == DOCKER_HUB and len(components) == 1:
        path = f"library/{path}"
    if len(f"{registry}/{path}") > _MAX_NAME_LENGTH:
        raise bad(f"name longer than {_MAX_NAME_LENGTH} characters")

    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)
