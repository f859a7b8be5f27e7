"""Glob matching: what users write in spec.images against the references workloads run."""

from __future__ import annotations

import time

import pytest

from webhook.errors import InputError
from webhook.oci.reference import parse_reference
from webhook.policy.globs import GlobError, compile_glob, normalize_name, split_reference

DIGEST = "sha256:" + "ab" * 32
OTHER = "sha256:" + "cd" * 32


def matches(glob: str, image: str) -> bool:
    """What a policy with ``glob`` does with a Pod whose image is written ``image``."""
    return compile_glob(glob).matches(parse_reference(image))


@pytest.mark.parametrize(
    ("glob", "pattern"),
    [
        ("nginx", "index.docker.io/library/nginx"),
        ("acme/app", "index.docker.io/acme/app"),
        ("docker.io/nginx", "index.docker.io/library/nginx"),
        ("docker.io/acme/app", "index.docker.io/acme/app"),
        ("registry-1.docker.io/library/nginx", "index.docker.io/library/nginx"),
        ("index.docker.io/library/nginx", "index.docker.io/library/nginx"),
        ("DOCKER.IO:443/nginx:1.25", "index.docker.io/library/nginx:1.25"),
        ("Docker.io:0443/*", "index.docker.io/library/*"),
        ("docker.io/**", "index.docker.io/**"),
        ("docker.io/foo**", "index.docker.io/foo**"),
        ("ghcr.io/acme/app", "ghcr.io/acme/app"),
        ("GHCR.IO:443/acme/**", "ghcr.io/acme/**"),
        ("ghcr.io:08080/acme/*", "ghcr.io:8080/acme/*"),
        ("localhost/app", "localhost/app"),
        ("localhost:5000/app", "localhost:5000/app"),
        ("127.0.0.1:5000/a/b/c", "127.0.0.1:5000/a/b/c"),
        ("*", "index.docker.io/library/*"),
        ("*/*", "index.docker.io/*/*"),
        ("*/*:v1", "*/*:v1"),  # policy-controller special-cases the exact glob only
        ("*/**", "*/**"),
        ("**", "**"),
        ("foo**", "foo**"),
        ("*.io/acme/*", "*.io/acme/*"),
        ("*.IO/acme/*", "*.io/acme/*"),  # registry patterns compare in lower case
        ("FOO**", "foo**"),
        ("ghcr.io/***", "ghcr.io/**"),  # as policy-controller reads it
        ("ghcr.io/acme/app:****", "ghcr.io/acme/app:**"),
        ("127.0.0.1:*/x/**", "127.0.0.1:*/x/**"),
        ("ghcr.io/acme/app:V1", "ghcr.io/acme/app:V1"),  # tags keep their case
        (f"ghcr.io/acme/app:v1@{DIGEST}", f"ghcr.io/acme/app:v1@{DIGEST}"),
        ("ghcr.io/acme/app@sha256:*", "ghcr.io/acme/app@sha256:*"),
    ],
)
def test_globs_are_normalised_like_references(glob: str, pattern: str) -> None:
    assert compile_glob(glob).pattern == pattern
    assert compile_glob(pattern).pattern == pattern  # idempotent


def test_normalize_name_and_split_reference() -> None:
    assert normalize_name("docker.io/nginx") == "index.docker.io/library/nginx"
    assert split_reference("localhost:5000/app") == ("localhost:5000/app", None, None)
    assert split_reference(f"ghcr.io/a:v1@{DIGEST}") == ("ghcr.io/a", "v1", DIGEST)
    assert split_reference("ghcr.io/a@sha256:*") == ("ghcr.io/a", None, "sha256:*")
    assert split_reference("ghcr.io**:v1") == ("ghcr.io**", "v1", None)


# policy-controller's own table (pkg/apis/glob TestGlobMatch): (image, glob, match?)
POLICY_CONTROLLER_TABLE = [
    ("foo", "index.docker.io/library/foo:latest", True),
    ("foo", "index.docker.io/library/foo:*", True),
    ("foo", "index.docker.io/library/*", True),
    ("foo", "index.docker.io/library/*:latest", True),
    ("foo", "index.docker.io/*/*", True),
    ("foo", "index.docker.io/**", True),
    ("foo", "index.docker.**", True),
    ("foo", "inde**", True),
    ("foo", "**", True),
    ("foo", "foo", True),
    ("foo", "foo*", True),
    ("foo", "foo**", True),
    ("myuser/myapp", "index.docker.io/myuser/myapp:latest", True),
    ("myuser/myapp", "index.docker.io/myuser/myapp:*", True),
    ("myuser/myapp", "index.docker.io/myuser/*", True),
    ("myuser/myapp", "index.docker.io/myuser/*:latest", True),
    ("myuser/myapp", "index.docker.io/*/*", True),
    ("myuser/myapp", "index.docker.io/**", True),
    ("myuser/myapp", "index.docker.**", True),
    ("myuser/myapp", "inde**", True),
    ("myuser/myapp", "**", True),
    ("myuser/myapp", "myuser/myapp", True),
    ("myuser/myapp", "myuser/myapp*", True),
    ("myuser/myapp", "myuser/myapp**", True),
    ("ghcr.io/foo/bar", "ghcr.io/*/*", True),
    ("ghcr.io/foo/bar", "ghcr.io/**", True),
    ("ghcr.io/foo", "ghcr.io/*/*", False),
    ("ghcr.io/foo", "ghcr.io/**", True),
    ("ghcr.io/foo", "ghc**", True),
    ("ghcr.io/foo", "**", True),
    ("ghcr.io/foo", "*/**", True),
    ("ghcr.io/foo", "ghcr.io/foo*", True),
    ("ghcr.io/foo", "ghcr.io/foo**", True),
    ("prefix-ghcr.io/foo", "ghcr.io/foo", False),
    ("ghcr.io/foo-suffix", "ghcr.io/foo", False),
    ("ghcrxio/foo", "ghcr.io/**", False),
    ("foo", "*", True),
    ("myuser/myapp", "*/*", True),
]


@pytest.mark.parametrize(("image", "glob", "expected"), POLICY_CONTROLLER_TABLE)
def test_policy_controller_glob_table(image: str, glob: str, expected: bool) -> None:
    assert matches(glob, image) is expected


def test_policy_controller_error_rows() -> None:
    with pytest.raises(InputError):  # invalid references are not matched: the engine denies them
        parse_reference("invalid&name")
    for glob in (".+", "[a-z]*"):
        with pytest.raises(GlobError, match="not regular expressions"):
            compile_glob(glob)


# (glob, image as a Pod spec writes it, matches?)
MATCH_TABLE = [
    # issue 11: a catch-all written `*/**` catches every image, `foo**` its bare name
    ("*/**", "ghcr.io/foo", True),
    ("*/**", "ghcr.io/foo/bar", True),
    ("*/**", "nginx", True),
    ("*/**", "acme/app", True),
    ("*/**", "localhost:5000/a", True),
    ("*/**", f"[::1]:5000/a@{DIGEST}", True),
    ("foo**", "foo", True),
    ("foo**", "foo/bar", True),  # Docker Hub's foo/bar, written the short way
    ("foo**", "foo.io/x", True),
    ("foo**", "ghcr.io/foo", False),
    # digest globs: only images that carry a digest
    ("ghcr.io/acme/app@sha256:*", f"ghcr.io/acme/app@{DIGEST}", True),
    ("ghcr.io/acme/app@sha256:*", f"ghcr.io/acme/app:v1@{DIGEST}", True),
    ("ghcr.io/acme/app@sha256:*", "ghcr.io/acme/app:v1", False),
    ("ghcr.io/acme/app@sha256:*", f"ghcr.io/acme/other@{DIGEST}", False),
    ("ghcr.io/acme/app@*", f"ghcr.io/acme/app@{DIGEST}", True),
    (f"ghcr.io/acme/app@{DIGEST}", f"ghcr.io/acme/app@{DIGEST}", True),
    (f"ghcr.io/acme/app@{DIGEST}", f"ghcr.io/acme/app:v1@{DIGEST}", True),
    (f"ghcr.io/acme/app@{DIGEST}", "ghcr.io/acme/app:v1", False),
    (f"ghcr.io/acme/app@{DIGEST}", f"ghcr.io/acme/app@{OTHER}", False),
    # Signet's reading: exact and tag globs also match digest-pinned images
    ("ghcr.io/acme/app", f"ghcr.io/acme/app@{DIGEST}", True),
    ("ghcr.io/acme/app", "ghcr.io/acme/app:v1", True),
    ("ghcr.io/acme/app:v1", f"ghcr.io/acme/app:v1@{DIGEST}", True),
    ("ghcr.io/acme/app:v1", "ghcr.io/acme/app:v1", True),
    ("ghcr.io/acme/app:v1", "ghcr.io/acme/app:v2", False),
    ("ghcr.io/acme/app:v1", f"ghcr.io/acme/app@{DIGEST}", False),  # no tag was written
    ("ghcr.io/acme/app:v1", "ghcr.io/acme/app", False),  # that is :latest
    ("ghcr.io/acme/app:latest", "ghcr.io/acme/app", True),
    ("ghcr.io/acme/app:v*", "ghcr.io/acme/app:v2", True),
    ("ghcr.io/acme/app:v*", "ghcr.io/acme/app:latest", False),
    ("ghcr.io/acme/app:**", "ghcr.io/acme/app:x", True),
    ("ghcr.io/sigstore/cosign/cosign:v1.12.1", "ghcr.io/sigstore/cosign/cosign:v1.12.1", True),
    ("ghcr.io/sigstore/cosign/cosign:v1.12.1", "ghcr.io/sigstore/cosign/cosign:v1.12.2", False),
    # `**` crosses segments, `*` does not
    ("ghcr.io/acme/**", "ghcr.io/acme/team/app", True),
    ("ghcr.io/acme/**", "ghcr.io/acme", False),
    ("ghcr.io/acme/**", "ghcr.io/acmex/app", False),
    ("ghcr.io/acme/*", "ghcr.io/acme/team/app", False),
    ("ghcr.io/*/app", "ghcr.io/acme/app", True),
    # like policy-controller's, a wildcard does not stop at ':' (documented)
    ("ghcr.io/acme/*-prod", "ghcr.io/acme/web-prod", True),
    ("ghcr.io/acme/*-prod", "ghcr.io/acme/web:x-prod", True),
    ("ghcr.io/acme/*-prod", "ghcr.io/acme/web:x-test", False),
    # registry with port, wildcard port; spellings of the registry do not matter
    ("127.0.0.1:*/securesystemsengineering/**", "127.0.0.1:5000/securesystemsengineering/testimage", True),
    ("127.0.0.1:*/securesystemsengineering/**", "127.0.0.2:5000/securesystemsengineering/testimage", False),
    ("localhost:5000/*", "localhost:05000/app", True),
    ("ghcr.io/acme/prod/**", "ghcr.io:443/acme/prod/app", True),
    ("ghcr.io/acme/prod/**", "GHCR.IO/acme/prod/app", True),
    ("GHCR.io:0443/acme/prod/**", "ghcr.io/acme/prod/app", True),
    ("ghcr.io:443/acme/**", "ghcr.io:8443/acme/app", False),
    # Docker Hub: globs written like Pod images, any of Hub's names
    ("nginx", "index.docker.io/library/nginx", True),
    ("nginx", "docker.io/nginx:1.25", True),
    ("nginx", "registry-1.docker.io/library/nginx", True),
    ("nginx", "nginx-unprivileged", False),
    ("nginx", "acme/nginx", False),
    ("nginx", "ghcr.io/nginx", False),
    ("docker.io/library/nginx*", "nginx-unprivileged", True),
    ("registry-1.docker.io/acme/*", "acme/app", True),
    ("acme/*", "docker.io/acme/app", True),
    ("acme/*", "ghcr.io/acme/app", False),
    ("*", "busybox", True),
    ("*", "acme/app", False),
    ("*", "ghcr.io/app", False),
    ("*/*", "acme/app", True),
    ("*/*", "busybox", True),
    ("*/*", "ghcr.io/acme", False),
    ("*/*:v1", "ghcr.io/acme:v1", True),
    ("docker.io/**", "acme/app", True),
    ("docker.io/**", "ghcr.io/acme/app", False),
    ("docker.io/foo**", "foo", True),
    ("images.*", "images.x", True),
    ("*.io/acme/*", "acme/app", True),  # index.docker.io is a *.io
    ("*.io/acme/*", "docker.io/acme/app", True),
    ("*.io/acme/*", "quay.io/acme/app", True),
    ("docker.*/**", "nginx", True),
    ("foo.bar/**", "docker.io/foo.bar/app", False),  # Hub's namespace foo.bar is not the host foo.bar
    # anchored at both ends, dots are literal
    ("ghcr.io/foo", "ghcr.io/foo-suffix", False),
    ("ghcr.io/**", "ghcrxio/foo", False),
    ("ghcr.io**", "ghcr.io/a/b", True),
    ("**", "ghcr.io/a/b/c:v1", True),
]


@pytest.mark.parametrize(("glob", "image", "expected"), MATCH_TABLE)
def test_glob_matching_table(glob: str, image: str, expected: bool) -> None:
    assert matches(glob, image) is expected


@pytest.mark.parametrize(
    ("glob", "reason"),
    [
        ("", "empty"),
        ("[", "not regular expressions"),
        ("ghcr.io/acme/(app|web)", "not regular expressions"),
        ("ghcr.io/acme/app?", "not regular expressions"),
        ("ghcr.io/acme/app\n", "not regular expressions"),
        ("ghcr.io/\u0430pp", "not regular expressions"),
        ("ghcr.io//app", "empty path segment"),
        ("/ghcr.io/app", "empty path segment"),
        ("ghcr.io/app/", "empty path segment"),
        ("ghcr.io/app@sha256:abc", "written out in full"),
        ("ghcr.io/app@sha384:" + "a" * 96, "written out in full"),
        ("ghcr.io/app@", "written out in full"),
        ("ghcr.io/app@sha256:AB*", "not a digest glob"),
        ("ghcr.io/app@sha256:*@sha256:*", "at most one"),
        ("ghcr.io/app:-bad", "not a valid tag glob"),
        ("ghcr.io/app:", "not a valid tag glob"),
        ("ghcr.io/app:a:b", "not a valid tag glob"),
        ("ghcr.io/app:" + "t" * 129, "not a valid tag glob"),
        ("ghcr.io/Acme/*", "lower case"),
        ("Acme/app", "lower case"),
        ("*@x/**", "'@' belongs only before a digest"),
        ("ghcr.io/a:b/c", "':' and '@' belong only"),
        ("ghcr.io/a@b/c", "':' and '@' belong only"),
        ("ghcr.io:0/app", "port 0"),
        ("ghcr.io:70000/**", "between 1 and 65535"),
        ("127.1/**", "ambiguous"),
        ("-bad.io/**", "not a valid host"),
        ("g" * 513, "at most 512"),
    ],
)
def test_invalid_globs_are_rejected_with_a_reason(glob: str, reason: str) -> None:
    with pytest.raises(GlobError, match=reason.replace("(", r"\(").replace("*", r"\*")):
        compile_glob(glob)


@pytest.mark.parametrize(
    ("glob", "name_only", "digest_sensitive"),
    [
        ("ghcr.io/acme/**", True, False),
        ("ghcr.io/acme/app", True, False),
        ("ghcr.io/acme/app*", True, False),
        ("**", True, False),
        ("*/**", True, False),
        ("foo**", True, False),
        ("**/app", True, False),
        ("ghcr.io/acme/app:v1", False, False),
        ("ghcr.io/acme/app:v*", False, True),
        ("ghcr.io/acme/*-prod", False, True),
        ("ghcr.io/acme/app@sha256:*", False, True),
        (f"ghcr.io/acme/app@{DIGEST}", False, True),
    ],
)
def test_which_globs_depend_on_the_name_alone(glob: str, name_only: bool, digest_sensitive: bool) -> None:
    compiled = compile_glob(glob)
    assert (compiled.name_only, compiled.digest_sensitive) == (name_only, digest_sensitive)


def test_pathological_globs_match_in_linear_time() -> None:
    # A tenant writes globs; backtracking regexps would take minutes on this one.
    glob = compile_glob("**a" * 40 + "**b")
    image = parse_reference("ghcr.io/" + "a/" * 100 + "a" * 40)
    start = time.perf_counter()
    assert not glob.matches(image)
    assert time.perf_counter() - start < 0.05
