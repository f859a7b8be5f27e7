"""Image globs (``spec.images[].glob``): policy-controller's glob language over canonical names.

Matching, as policy-controller's ``glob.Match``: ``*`` matches any run of characters but ``/``,
``**`` any run at all (both may be empty); the rest is literal, and only ``A-Z a-z 0-9 . _ - : /
* @`` may appear (a glob is not a regexp). A glob must match a whole string: the image's canonical
name (``registry/repository``), or that name followed by the ``:tag``, ``@digest`` or both that the
Pod spec wrote. So ``*/**`` matches every image, ``foo**`` matches ``foo``, ``ghcr.io/acme/*``
every tag and digest of ``ghcr.io/acme/app``, ``...:v*`` tags, ``...@sha256:*`` pinned images.
Like a wildcard in policy-controller, ``*`` does not stop at ``:`` or ``@``: ``ghcr.io/acme/*-prod``
also matches ``ghcr.io/acme/app:x-prod``; end a glob at a path segment or write its ``:tag``.

Normalisation, shared with references (:mod:`webhook.oci.reference`): a literal registry (first
segment with ``.``, ``:`` or ``localhost``) is canonical (case, default port, Docker Hub's names);
a first segment without one is a Docker Hub namespace (``acme/*`` is ``index.docker.io/acme/*``),
a single segment an official image (``nginx``, ``*``). A first segment with a wildcard (``*/**``,
``*.io/**``, ``foo**``) may span registries and is kept as written (lower case, and a literal port
written as references write it: ``*.example.com:443`` is ``*.example.com``), except that the glob
``*/*`` means ``index.docker.io/*/*``, as policy-controller special-cases it (``*/*:v1`` is not special).

Deliberate differences from policy-controller:

1. Images are canonical, so every spelling of a location (``ghcr.io:443``, ``GHCR.IO``,
   ``docker.io/library/nginx``) selects the same policies; policy-controller keeps ports and case,
   and reads ``localhost/app`` as a Docker Hub repository where containerd pulls from localhost.
2. Exact and tag globs also match digest-pinned images: ``ghcr.io/acme/app`` matches
   ``ghcr.io/acme/app@sha256:...`` and ``...app:v1`` matches ``...app:v1@sha256:...``.
   policy-controller matches the resolved ``name@digest`` only, where those never match.
3. Where policy-controller retries a miss on the image *as written*, Signet tries every spelling
   Docker reads as the same repository (:func:`~webhook.oci.reference.name_spellings`): the
   result never depends on how the Pod spec spelled the image.
4. Globs that could never match are refused at load: empty segments, ``:``/``@`` outside a port,
   tag or digest, upper case in a repository path, malformed registries, tags or digests. (As in
   policy-controller, ``***`` means ``**``, and a registry pattern is compared in lower case.)
5. Digest globs see the digest the Pod spec wrote, and the resolved one when the engine selects
   again after resolving the tag (``PolicySet.digest_sensitive``).

One language serves ``policy.signet.dev`` and ``policy.sigstore.dev`` documents alike: a cluster
moving between the two groups must not change which images a glob covers, and the differences
above only make matching independent of spelling, add matches, or refuse globs that could never
match. Matching runs on RE2 (linear time), since tenants write globs in namespaced ImagePolicies.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import re2

from webhook.errors import InputError
from webhook.oci.reference import (
    DEFAULT_PORT,
    DOCKER_HUB,
    ImageReference,
    canonical_registry,
    is_registry_component,
    is_valid_digest,
    name_spellings,
)

MAX_GLOB_LENGTH = 512

_GLOB_CHARS = re.compile(r"[A-Za-z0-9._\-:/*@]+")
_STAR_RUN = re.compile(r"\*{3,}")
_PATH_SEGMENT = re.compile(r"[a-z0-9._*-]+")
_TAG_GLOB = re.compile(r"[A-Za-z0-9_.*-]{1,128}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_GLOB = re.compile(r"\*\*?|[a-z0-9*]+:[a-f0-9*]+")


class GlobError(ValueError):
    """A glob is malformed; the message says why (raised at load, never while matching)."""


def split_reference(text: str) -> tuple[str, str | None, str | None]:
    """Split ``name[:tag][@digest]`` (a reference or a glob) at the ``:``/``@`` of its last segment."""
    slash = text.rfind("/")
    last = text[slash + 1 :]
    cuts = [i for i in (last.find(":"), last.find("@")) if i >= 0]
    if not cuts:
        return text, None, None
    cut = slash + 1 + min(cuts)
    tag_part, at, digest = text[cut:].partition("@")
    return text[:cut], (tag_part[1:] if tag_part else None), (digest if at else None)


def normalize_name(name: str) -> str:
    """The canonical form of a glob's name part (no tag or digest); raises GlobError."""
    segments = name.split("/")
    if any(not segment for segment in segments):
        raise GlobError("empty path segment (a leading, trailing or double '/')")
    first, rest = segments[0], segments[1:]
    for segment in rest:
        _check_path_segment(segment)
    if not rest:
        if "**" in first:  # spans registry and path: `**`, `ghcr.io**`, `foo**`
            return _wildcard_host(first)
        _check_path_segment(first)
        return f"{DOCKER_HUB}/library/{first}"
    path = "/".join(rest)
    if "*" in first:
        return f"{_wildcard_host(first)}/{path}"
    if is_registry_component(first):
        try:
            host = canonical_registry(first)
        except InputError as exc:
            raise GlobError(exc.reason) from None
        if host == DOCKER_HUB and len(rest) == 1 and "**" not in path:
            path = f"library/{path}"
        return f"{host}/{path}"
    _check_path_segment(first)
    return f"{DOCKER_HUB}/{name}"


def _check_path_segment(segment: str) -> None:
    if _PATH_SEGMENT.fullmatch(segment) is None:
        if segment.lower() != segment:
            raise GlobError(f"{segment!r}: repository paths are lower case, so this glob could never match")
        raise GlobError(f"{segment!r}: ':' and '@' belong only in a registry port, a tag or a digest")


def _wildcard_host(segment: str) -> str:
    # Hosts are compared in lower case; a wildcard segment may name a host, so it is lowered too.
    if "@" in segment:
        raise GlobError(f"{segment!r}: '@' belongs only before a digest")
    host, colon, port = segment.lower().rpartition(":")
    if colon and port.isdigit():
        # A literal port is written as references write it: decimal, the default (443) dropped.
        number = int(port)
        if not 0 < number <= 65535:
            raise GlobError(f"{segment!r}: port {port} is not between 1 and 65535")
        return host if number == DEFAULT_PORT else f"{host}:{number}"
    return segment.lower()


def _check_tag(tag: str) -> None:
    valid = _TAG_GLOB.fullmatch(tag) is not None and ("*" in tag or _TAG.fullmatch(tag) is not None)
    if not valid:
        raise GlobError(f"{tag!r} is not a valid tag glob (1-128 of [A-Za-z0-9_.-] and '*')")


def _check_digest(digest: str) -> None:
    if "@" in digest:
        raise GlobError("at most one '@digest'")
    if "*" in digest:
        if _DIGEST_GLOB.fullmatch(digest) is None:
            raise GlobError(f"{digest!r} is not a digest glob (algorithm:hex, lower case, with '*')")
    elif not is_valid_digest(digest):
        raise GlobError(f"{digest!r}: a digest must be written out in full (sha256:<64 hex> or "
                        "sha512:<128 hex>) or with '*'")


def _to_regex(pattern: str) -> str:
    # `**` first, so that its two `*`s are not translated as two one-segment wildcards.
    parts = ("[^/]*".join(p.replace(".", r"\.") for p in part.split("*")) for part in pattern.split("**"))
    return ".*".join(parts)


def _is_name_only(pattern: str) -> bool:
    # A last segment that is literal, or literal then one trailing wildcard, cannot be satisfied by
    # a `:tag` or `@digest` unless the bare name satisfies it too: the result depends on the name.
    last = pattern.rsplit("/", 1)[-1]
    return ":" not in last and "@" not in last and "*" not in last.rstrip("*")


@lru_cache(maxsize=16384)
def candidates(ref: ImageReference) -> tuple[str, ...]:
    """The strings a glob may match for ``ref``: each spelling, bare and with what the spec wrote."""
    suffixes = [""]
    if ref.tag is not None:
        suffixes.append(f":{ref.tag}")
    if ref.digest is not None:
        suffixes.append(f"@{ref.digest}")
        if ref.tag is not None:
            suffixes.append(f":{ref.tag}@{ref.digest}")
    return tuple(s + suffix for s in name_spellings(ref.name) for suffix in suffixes)


@dataclass(frozen=True, slots=True)
class ImageGlob:
    """One compiled glob. ``pattern`` is the normalised glob, shown in messages and audit."""

    glob: str
    pattern: str
    name_only: bool
    """The match depends on the repository name only (so it can be memoised per name)."""
    digest_sensitive: bool
    """The match may change once the digest is known (see module docstring, difference 5)."""
    registry: str | None
    """The literal registry every match starts with (``ghcr.io``), None when it has a wildcard."""
    _head: str = field(repr=False)
    _tail: str = field(repr=False)
    _inner: tuple[str, ...] = field(repr=False)
    _regex: Any = field(repr=False, compare=False)

    def matches_text(self, text: str) -> bool:
        """Does the glob match this one spelling (``registry/repository[:tag][@digest]``)?"""
        # Literal parts every match contains rule out most texts before RE2 is entered.
        if not (text.startswith(self._head) and text.endswith(self._tail)):
            return False
        if any(part not in text for part in self._inner):
            return False
        return self._regex.fullmatch(text) is not None

    def may_extend(self, spelling: str) -> bool:
        """Could the glob match ``spelling`` followed by some ``:tag``/``@digest``? (False only when it cannot.)"""
        return spelling.startswith(self._head) or self._head.startswith(spelling)

    def matches_name(self, name: str) -> bool:
        """Does the canonical ``registry/repository`` match? Exact only for ``name_only`` globs."""
        return any(self.matches_text(spelling) for spelling in name_spellings(name))

    def matches(self, ref: ImageReference) -> bool:
        """Does the glob match the canonical reference ``ref``?"""
        return any(self.matches_text(candidate) for candidate in candidates(ref))


@lru_cache(maxsize=4096)  # validation and the models' post-init compile the same globs
def compile_glob(glob: str) -> ImageGlob:
    """Validate, normalise and compile one glob; raises :class:`GlobError` with a reason."""
    if not glob:
        raise GlobError("a glob must not be empty")
    if len(glob) > MAX_GLOB_LENGTH:
        raise GlobError(f"a glob is at most {MAX_GLOB_LENGTH} characters")
    if _GLOB_CHARS.fullmatch(glob) is None:
        raise GlobError(
            f"invalid glob {glob!r}: only letters, digits, '.', '_', '-', ':', '/', '@' and '*' are "
            "allowed (globs are not regular expressions)"
        )
    # policy-controller reads `***` as `**` then `*`: any run of three or more is `**`.
    name, tag, digest = split_reference(_STAR_RUN.sub("**", glob))
    try:
        if tag is not None:
            _check_tag(tag)
        if digest is not None:
            _check_digest(digest)
        # policy-controller's special case, for this exact glob only (so `*/*:v1` is not).
        pattern = f"{DOCKER_HUB}/*/*" if glob == "*/*" else normalize_name(name)
    except GlobError as exc:
        raise GlobError(f"invalid glob {glob!r}: {exc}") from None
    pattern += (f":{tag}" if tag is not None else "") + (f"@{digest}" if digest is not None else "")
    name_only = _is_name_only(pattern)
    last = pattern.rsplit("/", 1)[-1]
    first, slash, _ = pattern.partition("/")
    chunks = pattern.split("*")
    return ImageGlob(
        glob=glob,
        pattern=pattern,
        name_only=name_only,
        digest_sensitive=not name_only and ("@" in last or "*" in last),
        registry=first if slash and "*" not in first else None,
        _head=chunks[0],
        _tail=chunks[-1] if len(chunks) > 1 else "",
        _inner=tuple(c for c in chunks[1:-1] if c),
        _regex=re2.compile(_to_regex(pattern)),
    )
