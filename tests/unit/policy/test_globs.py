"""Glob matching: what users write in spec.images against the references workloads run."""

from __future__ import annotations

import pytest

from webhook.policy.globs import GlobError, compile_glob, normalize_name, split_reference

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("nginx", "index.docker.io/library/nginx"),
        ("acme/app", "index.docker.io/acme/app"),
        ("docker.io/nginx", "index.docker.io/library/nginx"),
        ("docker.io/acme/app", "index.docker.io/acme/app"),
        ("registry-1.docker.io/library/nginx", "index.docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "index.docker.io/library/nginx"),
        ("ghcr.io/acme/app", "ghcr.io/acme/app"),
        ("localhost/app", "localhost/app"),
        ("localhost:5000/app", "localhost:5000/app"),
        ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c"),
    ],
)
def test_names_are_normalised_like_docker(name: str, expected: str) -> None:
    assert normalize_name(name) == expected
    assert normalize_name(expected) == expected  # idempotent on normalised names


@pytest.mark.parametrize(
    ("reference", "parts"),
    [
        ("ghcr.io/acme/app", ("ghcr.io/acme/app", None, None)),
        ("ghcr.io/acme/app:v1", ("ghcr.io/acme/app", "v1", None)),
        (f"ghcr.io/acme/app@{DIGEST}", ("ghcr.io/acme/app", None, DIGEST)),
        (f"ghcr.io/acme/app:v1@{DIGEST}", ("ghcr.io/acme/app", "v1", DIGEST)),
        ("localhost:5000/app", ("localhost:5000/app", None, None)),
        ("localhost:5000/app:1.0", ("localhost:5000/app", "1.0", None)),
    ],
)
def test_split_reference_tells_port_from_tag(reference: str, parts: tuple[str, str | None, str | None]) -> None:
    assert split_reference(reference) == parts


# (glob, normalised reference, matches?)
MATCH_TABLE = [
    # `**` crosses segments, `*` does not
    ("ghcr.io/acme/**", "ghcr.io/acme/app", True),
    ("ghcr.io/acme/**", "ghcr.io/acme/team/app", True),
    ("ghcr.io/acme/**", "ghcr.io/acme", False),
    ("ghcr.io/acme/**", "ghcr.io/acmex/app", False),
    ("ghcr.io/acme/*", "ghcr.io/acme/app", True),
    ("ghcr.io/acme/*", "ghcr.io/acme/team/app", False),
    ("ghcr.io/*/app", "ghcr.io/acme/app", True),
    ("ghcr.io/*/*", "ghcr.io/foo", False),
    ("ghcr.io/**", "ghcr.io/foo", True),
    ("ghc**", "ghcr.io/foo", True),
    # the tag and digest never get in the way of a name glob
    ("ghcr.io/acme/*", "ghcr.io/acme/app:v1", True),
    ("ghcr.io/acme/*", f"ghcr.io/acme/app@{DIGEST}", True),
    ("ghcr.io/acme/app", "ghcr.io/acme/app:latest", True),
    # anchored at both ends, dots are literal
    ("ghcr.io/foo", "prefix-ghcr.io/foo", False),
    ("ghcr.io/foo", "ghcr.io/foo-suffix", False),
    ("ghcr.io/**", "ghcrxio/foo", False),
    ("ghcr.io/foo*", "ghcr.io/foo", True),
    ("ghcr.io/foo*", "ghcr.io/foobar", True),
    # registry with port, wildcard port
    ("127.0.0.1:*/securesystemsengineering/**", "127.0.0.1:5000/securesystemsengineering/testimage", True),
    ("127.0.0.1:*/securesystemsengineering/**", "127.0.0.2:5000/securesystemsengineering/testimage", False),
    ("localhost:5000/*", "localhost:5000/app", True),
    # Docker Hub: globs written like Pod images
    ("nginx", "index.docker.io/library/nginx", True),
    ("nginx", "nginx:1.25", True),
    ("nginx", "index.docker.io/library/nginx-unprivileged", False),
    ("nginx", "index.docker.io/acme/nginx", False),
    ("index.docker.io/library/nginx*", "index.docker.io/library/nginx-unprivileged", True),
    ("docker.io/library/nginx", "index.docker.io/library/nginx", True),
    ("acme/*", "index.docker.io/acme/app", True),
    ("acme/*", "ghcr.io/acme/app", False),
    ("*", "index.docker.io/library/busybox", True),
    ("*", "index.docker.io/acme/app", False),
    ("*/*", "index.docker.io/acme/app", True),
    ("*/*", "ghcr.io/acme", False),
    ("docker.io/**", "index.docker.io/acme/app", True),
    ("images.*", "index.docker.io/library/images.x", True),
    # `**` alone matches everything
    ("**", "index.docker.io/library/nginx", True),
    ("**", "ghcr.io/a/b/c:v1", True),
    ("ghcr.io**", "ghcr.io/a/b", True),
    # documented differences from policy-controller's unnormalised fallback
    ("*/**", "ghcr.io/foo", False),
    ("*/**", "index.docker.io/acme/app", True),
    ("foo**", "index.docker.io/library/foo", False),
    # a tag or digest in the glob narrows it to references that carry it
    ("ghcr.io/sigstore/cosign/cosign:v1.12.1", "ghcr.io/sigstore/cosign/cosign:v1.12.1", True),
    ("ghcr.io/sigstore/cosign/cosign:v1.12.1", "ghcr.io/sigstore/cosign/cosign:v1.12.2", False),
    ("ghcr.io/sigstore/cosign/cosign:v1.12.1", "ghcr.io/sigstore/cosign/cosign", False),
    ("ghcr.io/acme/app:v*", "ghcr.io/acme/app:v2", True),
    ("ghcr.io/acme/app:v*", "ghcr.io/acme/app:latest", False),
    (f"ghcr.io/acme/app@{DIGEST}", f"ghcr.io/acme/app@{DIGEST}", True),
    (f"ghcr.io/acme/app@{DIGEST}", f"ghcr.io/acme/app:v1@{DIGEST}", True),
    (f"ghcr.io/acme/app@{DIGEST}", "ghcr.io/acme/app:v1", False),
    (f"ghcr.io/acme/app@{DIGEST}", "ghcr.io/acme/app@sha256:" + "cd" * 32, False),
]


@pytest.mark.parametrize(("glob", "reference", "expected"), MATCH_TABLE)
def test_glob_matching_table(glob: str, reference: str, expected: bool) -> None:
    compiled = compile_glob(glob)
    name, tag, digest = split_reference(reference)
    assert compiled.matches(normalize_name(name), tag, digest) is expected


@pytest.mark.parametrize(
    ("glob", "reason"),
    [
        ("", "empty"),
        ("[", "not regular expressions"),
        (".+", "not regular expressions"),
        ("[a-z]*", "not regular expressions"),
        ("ghcr.io/acme/(app|web)", "not regular expressions"),
        ("ghcr.io/***", "use '*'"),
        ("ghcr.io//app", "empty path segment"),
        ("/ghcr.io/app", "empty path segment"),
        ("ghcr.io/app@sha256:abc", "written out in full"),
        ("ghcr.io/app@sha256:*", "written out in full"),
        ("ghcr.io/app:-bad", "not a valid tag glob"),
    ],
)
def test_invalid_globs_are_rejected_with_a_reason(glob: str, reason: str) -> None:
    with pytest.raises(GlobError, match=reason.replace("(", r"\(").replace("*", r"\*")):
        compile_glob(glob)


def test_pattern_shows_the_normalised_glob() -> None:
    assert compile_glob("nginx").pattern == "index.docker.io/library/nginx"
    assert compile_glob("acme/*:v1").pattern == "index.docker.io/acme/*:v1"
    assert compile_glob("**").pattern == "**"
    assert compile_glob("ghcr.io/acme/**").matches_any_tag
    assert not compile_glob("ghcr.io/acme/app:v1").matches_any_tag
