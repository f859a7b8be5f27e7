"""Image globs: ``spec.images[].glob`` normalised like Docker references and compiled once.

Semantics (documented for users in ``policies/examples``):

- ``*`` matches within one path segment (no ``/``), ``**`` matches anything, ``/`` included.
- A glob matches the *repository name* (``registry/repository``) of the image. The tag and digest
  are not part of the match, so ``ghcr.io/acme/*`` covers ``ghcr.io/acme/app:v1`` and
  ``ghcr.io/acme/app@sha256:...`` alike. A glob may add ``:<tag-glob>`` and/or ``@<digest>``
  (e.g. ``ghcr.io/sigstore/cosign/cosign:v1.12.1``, as policy-controller users write); it then
  matches only references carrying such a tag / exactly that digest.
- Globs are normalised the way Docker normalises references, so that users can write what they
  write in a Pod spec: ``nginx`` → ``index.docker.io/library/nginx``, ``acme/*`` →
  ``index.docker.io/acme/*``, ``docker.io/...`` and ``registry-1.docker.io/...`` →
  ``index.docker.io/...``. The first segment is a registry when it contains ``.`` or ``:`` or is
  ``localhost``. A first segment containing ``**`` already spans registry and path and is taken
  verbatim: ``**`` matches every image, ``ghcr.io**`` every ghcr.io image.
  (policy-controller differs in corners because it also tries unnormalised names: its ``*/**``
  matched ``ghcr.io/foo`` and its ``foo**`` matched ``foo``; here ``*/**`` means "any Docker Hub
  user's images" and ``foo**`` matches nothing normalised. Write ``**`` or a full name.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

DOCKER_HUB = "index.docker.io"
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "registry-1.docker.io", "index.docker.io"})

# The characters a glob may use: those of image references plus `*`. Everything else (regexp
# syntax such as `[`, `+`, `?`, `(`) is rejected so nobody mistakes globs for regexps.
_GLOB_CHARS = re.compile(r"[A-Za-z0-9._\-:/*@]+")
_DIGEST = re.compile(r"sha(256:[a-f0-9]{64}|384:[a-f0-9]{96}|512:[a-f0-9]{128})")
_TAG_GLOB = re.compile(r"[A-Za-z0-9_*][A-Za-z0-9._\-*]{0,127}")


class GlobError(ValueError):
    """A glob is malformed; the message says why (raised at load, never while matching)."""


def _is_registry(segment: str) -> bool:
    return "." in segment or ":" in segment or segment == "localhost"


def normalize_name(name: str) -> str:
    """``nginx`` → ``index.docker.io/library/nginx``; idempotent on already normalised names.

    Only the repository name: callers strip tag and digest first (see :func:`split_reference`).
    """
    first, sep, rest = name.partition("/")
    if "**" in first:
        return name  # it spans registry and path already (`**`, `ghcr.io**`): taken verbatim
    if not sep or not _is_registry(first):
        first, rest = DOCKER_HUB, name
    elif first in _DOCKER_HUB_ALIASES:
        first = DOCKER_HUB
    # Docker Hub's official images live under `library/`; `docker.io/**` still means all of Hub.
    if first == DOCKER_HUB and "/" not in rest and rest != "**":
        rest = f"library/{rest}"
    return f"{first}/{rest}"


def split_reference(reference: str) -> tuple[str, str | None, str | None]:
    """Split ``name[:tag][@digest]`` into its parts (no validation: references come normalised)."""
    name, _, digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag: str | None = None
    # A colon after the last slash is a tag; before it, it belongs to the registry's port.
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def _glob_to_regex(glob: str) -> str:
    # `**` first, through a placeholder, so that its `*`s are not translated a second time.
    parts = [re.escape(p).replace(r"\*", "[^/]*") for p in glob.split("**")]
    return ".*".join(parts)


@dataclass(frozen=True, slots=True)
class ImageGlob:
    """One compiled glob. ``pattern`` is the normalised glob, shown in messages and audit."""

    glob: str
    pattern: str
    name_regex: re.Pattern[str]
    tag_regex: re.Pattern[str] | None
    digest: str | None

    @property
    def matches_any_tag(self) -> bool:
        """True when only the repository name matters (the common, cacheable case)."""
        return self.tag_regex is None and self.digest is None

    def matches_name(self, name: str) -> bool:
        """Does the (normalised) repository name match? Ignores any tag/digest part of the glob."""
        return self.name_regex.fullmatch(name) is not None

    def matches(self, name: str, tag: str | None, digest: str | None) -> bool:
        """Full match of a normalised reference split by :func:`split_reference`."""
        if not self.matches_name(name):
            return False
        if self.tag_regex is not None and (tag is None or self.tag_regex.fullmatch(tag) is None):
            return False
        return self.digest is None or self.digest == digest


@lru_cache(maxsize=4096)  # validation and the models' post-init compile the same globs
def compile_glob(glob: str) -> ImageGlob:
    """Validate, normalise and compile one glob; raises :class:`GlobError` with a reason."""
    if not glob:
        raise GlobError("a glob must not be empty")
    if not _GLOB_CHARS.fullmatch(glob):
        raise GlobError(
            f"invalid glob {glob!r}: only letters, digits, '.', '_', '-', ':', '/', '@' and '*' are "
            "allowed (globs are not regular expressions)"
        )
    if "***" in glob:
        raise GlobError(f"invalid glob {glob!r}: use '*' (one segment) or '**' (any depth)")
    name, tag, digest = split_reference(glob)
    if "@" in name or (digest is not None and "@" in digest):
        raise GlobError(f"invalid glob {glob!r}: at most one '@digest'")
    if digest is not None and not _DIGEST.fullmatch(digest):
        raise GlobError(f"invalid glob {glob!r}: a digest must be written out in full (sha256:<64 hex>)")
    if tag is not None and not _TAG_GLOB.fullmatch(tag):
        raise GlobError(f"invalid glob {glob!r}: {tag!r} is not a valid tag glob")
    segments = name.split("/")
    if any(not s for s in segments):
        raise GlobError(f"invalid glob {glob!r}: empty path segment")
    normalised = normalize_name(name)
    pattern = normalised + (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest else "")
    return ImageGlob(
        glob=glob,
        pattern=pattern,
        name_regex=re.compile(_glob_to_regex(normalised)),
        tag_regex=re.compile(_glob_to_regex(tag)) if tag is not None else None,
        digest=digest,
    )
