"""Image references: ``[registry/]repository[:tag][@digest]`` parsed into one canonical form.

The grammar is the CNCF distribution project's (``distribution/reference``, what containerd and
CRI-O parse), every rule a full match over printable ASCII. The canonical form is what policy
matching, caches and audit records see (``str(ref)``, ``ref.name``): the registry host lower-cased,
its port in decimal with the default ``:443`` dropped, IP literals in their standard notation, and
Docker Hub's spellings (``docker.io``, ``index.docker.io``, ``registry-1.docker.io``, or no host)
folded into ``index.docker.io``, with ``library/`` for official images. So every spelling a
container runtime pulls from the same place gives the same :class:`ImageReference`, and spellings a
runtime could read two ways are refused with the reason:

- a first component in upper case without ``.``/``:`` (containerd reads ``Acme/app`` as the host
  ``acme``, go-containerregistry as a Docker Hub namespace);
- a numeric host that is not a plain dotted quad (``127.1``, ``0x7f.0.0.1``, ``010.0.0.1``: the C
  resolver reads those as other addresses, Go's as names);
- ``sha256:<hex>`` alone (containerd reads it as the ID of a local image) and a bare 64-hex name.

A tag written next to a digest is kept (tag globs select on it) but never decides what is pulled.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from webhook.errors import InputError

DOCKER_HUB = "index.docker.io"
"""Canonical name of Docker Hub (go-containerregistry's default registry)."""

DOCKER_HUB_API_HOST = "registry-1.docker.io"
"""The host that actually serves Docker Hub's registry API."""

DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

DEFAULT_TAG = "latest"
DEFAULT_PORT = 443

_MAX_NAME_LENGTH = 255
_DIGEST_ALGORITHMS = frozenset({"sha256", "sha384", "sha512"})

_PRINTABLE_ASCII = re.compile(r"[!-~]+")
_LABEL = r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?"
_REGISTRY_RE = re.compile(rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:]+\])(?::(?P<port>[0-9]+))?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PATH_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}")
_HEX = re.compile(r"[a-f0-9]+")


def is_valid_digest(value: str) -> bool:
    """True for ``sha256:<64 lowercase hex>`` or ``sha512:<128 lowercase hex>``."""
    return _DIGEST_RE.fullmatch(value) is not None


def is_registry_component(component: str) -> bool:
    """Docker's rule: a first component with ``.`` or ``:``, or ``localhost``, names a registry."""
    return "." in component or ":" in component or component == "localhost"


def _canonical_ip_host(host: str) -> str:
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise InputError(f"{host!r} is not an IPv6 address") from None
        # An IPv4-mapped address reaches the IPv4 host: one location, one name.
        mapped = address.ipv4_mapped
        return str(mapped) if mapped is not None else f"[{address.compressed}]"
    labels = host.split(".")
    if all(_NUMERIC_LABEL.fullmatch(label) for label in labels):
        # inet_aton() takes "127.1", "0x7f.1" and "010.0.0.1" (octal) as addresses, Go as names.
        try:
            canonical = str(ipaddress.IPv4Address(host))
        except ValueError:
            canonical = ""
        if canonical != host:
            raise InputError(f"{host!r} is ambiguous: numeric hosts must be dotted-quad IPv4 addresses "
                             "without leading zeros")
    return host


def canonical_registry(registry: str) -> str:
    """``host[:port]`` in canonical form (see module docstring); raises InputError if invalid."""
    lowered = registry.lower()
    match = _REGISTRY_RE.fullmatch(lowered) if lowered.isascii() else None
    if match is None:
        raise InputError(f"registry {registry!r} is not a valid host[:port]")
    host = _canonical_ip_host(match["host"])
    port_text = match["port"]
    if port_text is not None:
        digits = port_text.lstrip("0")
        port = int(digits) if 0 < len(digits) <= 5 else 0
        if not 0 < port <= 65535:
            raise InputError(f"registry {registry!r}: port {port_text} is not between 1 and 65535")
        if port != DEFAULT_PORT:
            host = f"{host}:{port}"
    return DOCKER_HUB if host in DOCKER_HUB_ALIASES else host


def normalise_registry(registry: str) -> str:
    """:func:`canonical_registry`, or the lower-cased text when invalid (config keys, credentials).

    An invalid host can never equal the registry of a parsed reference, so this lenient form is
    safe for lookups keyed by registry.
    """
    try:
        return canonical_registry(registry)
    except InputError:
        return registry.lower()


@lru_cache(maxsize=8192)
def name_spellings(name: str) -> tuple[str, ...]:
    """Every ``registry/repository`` Docker reads as the canonical ``name``; ``name`` first.

    Only Docker Hub has more than one: its host names and none, with and without ``library/``.
    """
    registry, _, repository = name.partition("/")
    if registry != DOCKER_HUB:
        return (name,)
    paths = [repository]
    namespace, _, short = repository.partition("/")
    if namespace == "library" and "/" not in short:
        paths.append(short)
    spellings = [name]
    for path in paths:
        spellings += [f"{host}/{path}" for host in (DOCKER_HUB, "docker.io", DOCKER_HUB_API_HOST)]
        # Without a host, a path whose first component looks like a host would name that host.
        if "/" not in path or not is_registry_component(path.partition("/")[0]):
            spellings.append(path)
    return tuple(dict.fromkeys(spellings))


@dataclass(frozen=True, slots=True)
class ImageReference:
    """A canonical image reference; at least one of ``tag`` and ``digest`` is set."""

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


def _split_tag(remainder: str) -> tuple[str, str | None]:
    # The tag follows the last ':' after the last '/'; an earlier ':' is the registry's port.
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        return remainder[:colon], remainder[colon + 1 :]
    return remainder, None


def parse_reference(text: str) -> ImageReference:
    """Parse ``text`` into its canonical :class:`ImageReference` (see module docstring)."""

    def bad(why: str) -> InputError:
        return InputError(f"invalid image reference {text!r}: {why}")

    if not text:
        raise bad("empty")
    if not text.isascii() or _PRINTABLE_ASCII.fullmatch(text) is None:
        raise bad("whitespace, control or non-ASCII characters are not allowed")
    remainder, at, digest_text = text.partition("@")
    digest: str | None = None
    if at:
        if "@" in digest_text:
            raise bad("more than one '@'")
        if not is_valid_digest(digest_text):
            raise bad(f"digest {digest_text!r} is not sha256:<64 lowercase hex> or sha512:<128 lowercase hex>")
        digest = digest_text
    remainder, tag = _split_tag(remainder)
    if tag is not None and _TAG_RE.fullmatch(tag) is None:
        raise bad(f"tag {tag!r} must be 1-128 characters of [A-Za-z0-9_.-], not starting with '.' or '-'")
    if not remainder:
        raise bad("no repository name")

    first, slash, rest = remainder.partition("/")
    if slash and is_registry_component(first):
        try:
            registry = canonical_registry(first)
        except InputError as exc:
            raise bad(exc.reason) from None
        path = rest
    elif slash and first.lower() != first:
        raise bad(f"{first!r} is ambiguous: containerd reads an upper-case first component as a registry "
                  "host, other tools as a Docker Hub namespace")
    else:
        registry, path = DOCKER_HUB, remainder
    looks_like_id = (remainder in _DIGEST_ALGORITHMS and tag is not None and _HEX.fullmatch(tag) is not None) or (
        tag is None and _HEX.fullmatch(remainder) is not None and len(remainder) == 64)
    if not slash and digest is None and looks_like_id:
        raise bad("a bare digest or 64-hex string names a local image ID, not a registry location")

    components = path.split("/")
    for component in components:
        if not component:
            raise bad("empty path component (a leading, trailing or double '/')")
        if _PATH_COMPONENT_RE.fullmatch(component) is None:
            hint = " (repository names are lower case)" if component.lower() != component else ""
            raise bad(
                f"repository component {component!r} is not [a-z0-9] separated by '.', '_', '__' or '-'{hint}"
            )
    if registry == DOCKER_HUB and len(components) == 1:
        path = f"library/{path}"
    # distribution's limit, counted on its own normalised name (docker.io/...) whatever the spelling.
    counted = f"docker.io/{path}" if registry == DOCKER_HUB else f"{registry}/{path}"
    if len(counted) > _MAX_NAME_LENGTH:
        raise bad(f"name longer than {_MAX_NAME_LENGTH} characters")

    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest)
