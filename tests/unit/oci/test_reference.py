from __future__ import annotations

import pytest

from webhook.errors import InputError
from webhook.oci import ImageReference, parse_reference

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", "index.docker.io", "library/nginx", "latest", None),
        ("nginx:1.25", "index.docker.io", "library/nginx", "1.25", None),
        ("acme/app", "index.docker.io", "acme/app", "latest", None),
        ("docker.io/nginx", "index.docker.io", "library/nginx", "latest", None),
        ("docker.io/library/nginx:1", "index.docker.io", "library/nginx", "1", None),
        ("index.docker.io/acme/app", "index.docker.io", "acme/app", "latest", None),
        ("registry-1.docker.io/acme/app", "index.docker.io", "acme/app", "latest", None),
        ("DOCKER.IO/acme/app", "index.docker.io", "acme/app", "latest", None),
        ("ghcr.io/acme/app:v1", "ghcr.io", "acme/app", "v1", None),
        ("ghcr.io/acme/sub/app", "ghcr.io", "acme/sub/app", "latest", None),
        ("ghcr.io/app", "ghcr.io", "app", "latest", None),  # only Docker Hub gets library/
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", "latest", None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("Registry.Example.com:443/x", "registry.example.com:443", "x", "latest", None),
        (f"ghcr.io/acme/app@{D}", "ghcr.io", "acme/app", None, D),
        (f"ghcr.io/acme/app:v1@{D}", "ghcr.io", "acme/app", "v1", D),
        (f"nginx@{D}", "index.docker.io", "library/nginx", None, D),
        ("a/b.c_d__e-f---g", "index.docker.io", "a/b.c_d__e-f---g", "latest", None),
        ("localhost:5000", "index.docker.io", "library/localhost", "5000", None),  # as Docker reads it
        ("ghcr.io/a/b:V_1.2-rc", "ghcr.io", "a/b", "V_1.2-rc", None),
        ("ghcr.io/a@sha512:" + "cd" * 64, "ghcr.io", "a", None, "sha512:" + "cd" * 64),
    ],
)
def test_parse_normalises(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ImageReference.parse(str(ref)) == ref  # str() round-trips


def test_str_and_name() -> None:
    assert str(parse_reference("nginx")) == "index.docker.io/library/nginx:latest"
    ref = parse_reference(f"ghcr.io/acme/app:v1@{D}")
    assert str(ref) == f"ghcr.io/acme/app:v1@{D}"
    assert ref.name == "ghcr.io/acme/app"
    assert ref.identifier == D
    assert parse_reference("ghcr.io/acme/app:v1").identifier == "v1"


def test_docker_hub_aliases_are_one_registry() -> None:
    names = {parse_reference(f"{r}/acme/app").name for r in ("docker.io", "index.docker.io", "registry-1.docker.io")}
    assert names == {parse_reference("acme/app").name}


def test_with_digest() -> None:
    ref = parse_reference("ghcr.io/acme/app:v1").with_digest(D)
    assert str(ref) == f"ghcr.io/acme/app:v1@{D}"
    with pytest.raises(InputError):
        ref.with_digest("sha256:short")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("UPPER//bad@@ref", "more than one '@'"),
        ("", "empty"),
        (" nginx", "whitespace"),
        ("Nginx", "lower case"),
        ("ghcr.io/Acme/app", "lower case"),
        ("ghcr.io//app", "empty path component"),
        ("ghcr.io/app/", "empty path component"),
        ("ghcr.io/app@sha256:abc", "digest"),
        ("ghcr.io/app@md5:" + "a" * 32, "digest"),
        ("ghcr.io/app@sha256:" + "AB" * 32, "digest"),
        ("ghcr.io/app:-bad", "tag"),
        ("ghcr.io/app:" + "t" * 129, "tag"),
        ("ghcr.io/a..b", "repository component"),
        ("ghcr.io/a_-b", "repository component"),
        ("-bad.io/app", "registry"),
        ("ghcr.io:port/app", "registry"),
        ("ghcr.io/" + "a" * 250, "longer than 255"),
        (":tag", "no repository"),
    ],
)
def test_invalid_references_say_why(text: str, why: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_reference(text)
    assert why in str(caught.value)
    assert "invalid image reference" in str(caught.value)
