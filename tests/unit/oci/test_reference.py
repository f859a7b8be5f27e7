"""Image references: one canonical form for every spelling of a location; malformed ones say why."""

from __future__ import annotations

import pytest

from webhook.errors import InputError
from webhook.oci import ImageReference, parse_reference
from webhook.oci.reference import canonical_registry, name_spellings, normalise_registry

D = "sha256:" + "ab" * 32
HUB = "index.docker.io"


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("nginx", HUB, "library/nginx", "latest", None),
        ("nginx:1.25", HUB, "library/nginx", "1.25", None),
        ("acme/app", HUB, "acme/app", "latest", None),
        ("docker.io/nginx", HUB, "library/nginx", "latest", None),
        ("docker.io/library/nginx:1", HUB, "library/nginx", "1", None),
        ("index.docker.io/nginx", HUB, "library/nginx", "latest", None),
        ("index.docker.io/acme/app", HUB, "acme/app", "latest", None),
        ("registry-1.docker.io/acme/app", HUB, "acme/app", "latest", None),
        ("registry-1.docker.io/nginx", HUB, "library/nginx", "latest", None),
        ("DOCKER.IO/acme/app", HUB, "acme/app", "latest", None),
        ("Index.Docker.IO:443/acme/app", HUB, "acme/app", "latest", None),
        ("docker.io:0443/nginx", HUB, "library/nginx", "latest", None),
        ("docker.io:5000/nginx", "docker.io:5000", "nginx", "latest", None),  # another port, another place
        ("docker.io/foo.bar/app", HUB, "foo.bar/app", "latest", None),
        ("ghcr.io/acme/app:v1", "ghcr.io", "acme/app", "v1", None),
        ("GHCR.IO/acme/app:v1", "ghcr.io", "acme/app", "v1", None),
        ("ghcr.io:443/acme/app", "ghcr.io", "acme/app", "latest", None),
        ("ghcr.io:0443/acme/app", "ghcr.io", "acme/app", "latest", None),
        ("ghcr.io:00443/acme/app", "ghcr.io", "acme/app", "latest", None),
        ("ghcr.io:08080/acme/app", "ghcr.io:8080", "acme/app", "latest", None),
        ("ghcr.io:65535/acme/app", "ghcr.io:65535", "acme/app", "latest", None),
        ("ghcr.io/acme/sub/app", "ghcr.io", "acme/sub/app", "latest", None),
        ("ghcr.io/app", "ghcr.io", "app", "latest", None),  # only Docker Hub gets library/
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/app:dev", "localhost:5000", "app", "dev", None),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000", "a/b", "latest", None),
        ("10.0.0.1/a", "10.0.0.1", "a", "latest", None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("[0:0:0:0:0:0:0:1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("[::1]:443/app", "[::1]", "app", "latest", None),
        ("[FD00::1]/app", "[fd00::1]", "app", "latest", None),
        ("[::ffff:7f00:1]:5000/app", "127.0.0.1:5000", "app", "latest", None),  # IPv4-mapped
        ("Registry.Example.com:443/x", "registry.example.com", "x", "latest", None),
        ("xn--bcher-kva.example/x", "xn--bcher-kva.example", "x", "latest", None),
        (f"ghcr.io/acme/app@{D}", "ghcr.io", "acme/app", None, D),
        (f"ghcr.io/acme/app:v1@{D}", "ghcr.io", "acme/app", "v1", D),
        (f"nginx@{D}", HUB, "library/nginx", None, D),
        ("a/b.c_d__e-f---g", HUB, "a/b.c_d__e-f---g", "latest", None),
        ("localhost:5000", HUB, "library/localhost", "5000", None),  # as Docker reads it
        ("ghcr.io/a/b:V_1.2-rc", "ghcr.io", "a/b", "V_1.2-rc", None),
        ("ghcr.io/a:" + "t" * 128, "ghcr.io", "a", "t" * 128, None),
        ("ghcr.io/a@sha512:" + "cd" * 64, "ghcr.io", "a", None, "sha512:" + "cd" * 64),
        ("sha256:latest", HUB, "library/sha256", "latest", None),  # not an image ID: no hex
        ("a" * 63, HUB, "library/" + "a" * 63, "latest", None),
    ],
)
def test_parse_gives_the_canonical_reference(
    text: str, registry: str, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert ImageReference.parse(str(ref)) == ref  # the canonical text is a fixed point


def test_str_and_name() -> None:
    assert str(parse_reference("nginx")) == "index.docker.io/library/nginx:latest"
    ref = parse_reference(f"ghcr.io/acme/app:v1@{D}")
    assert str(ref) == f"ghcr.io/acme/app:v1@{D}"
    assert ref.name == "ghcr.io/acme/app"
    assert ref.identifier == D
    assert parse_reference("ghcr.io/acme/app:v1").identifier == "v1"


@pytest.mark.parametrize(
    "spellings",
    [
        ["nginx", "library/nginx", "docker.io/nginx", "docker.io/library/nginx", "index.docker.io/nginx",
         "index.docker.io/library/nginx:latest", "registry-1.docker.io/library/nginx", "DOCKER.IO:443/nginx",
         "docker.io:0443/library/nginx:latest", "Registry-1.Docker.Io/nginx"],
        ["acme/app", "docker.io/acme/app", "index.docker.io/acme/app", "registry-1.docker.io:443/acme/app"],
        ["ghcr.io/acme/prod/app", "ghcr.io:443/acme/prod/app", "GHCR.io/acme/prod/app:latest",
         "ghcr.io:000443/acme/prod/app"],
        ["127.0.0.1:5000/app", "[::ffff:7f00:1]:5000/app", "127.0.0.1:05000/app"],
    ],
)
def test_every_spelling_of_a_location_is_one_reference(spellings: list[str]) -> None:
    assert len({parse_reference(s) for s in spellings}) == 1


def test_spellings_of_a_name_all_parse_back_to_it() -> None:
    for name in ("index.docker.io/library/nginx", "index.docker.io/acme/app", "index.docker.io/foo.bar/app",
                 "index.docker.io/localhost/app", "ghcr.io/acme/app"):
        spellings = name_spellings(name)
        assert spellings[0] == name
        assert {parse_reference(s).name for s in spellings} == {name}
    assert "nginx" in name_spellings("index.docker.io/library/nginx")
    # without its host, `foo.bar/app` would name the registry foo.bar: not a spelling of this image
    assert "foo.bar/app" not in name_spellings("index.docker.io/foo.bar/app")
    assert name_spellings("ghcr.io/acme/app") == ("ghcr.io/acme/app",)


def test_with_digest() -> None:
    ref = parse_reference("ghcr.io/acme/app:v1").with_digest(D)
    assert str(ref) == f"ghcr.io/acme/app:v1@{D}"
    with pytest.raises(InputError):
        ref.with_digest("sha256:short")
    with pytest.raises(InputError):
        ref.with_digest(D + "\n")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        # not a full match: a trailing newline or anything invisible is refused everywhere
        ("ghcr.io/acme/app\n:v1", "whitespace, control"),
        ("ghcr.io/acme/app:v1\n", "whitespace, control"),
        ("ghcr.io/acme/app\n", "whitespace, control"),
        (f"ghcr.io/acme/app@{D}\n", "whitespace, control"),
        ("ghcr.io\n/acme/app", "whitespace, control"),
        ("ghcr.io/acme/app:v1\r", "whitespace, control"),
        ("ghcr.io/acme/app\t", "whitespace, control"),
        ("ghcr.io/acme/app\x00", "whitespace, control"),
        ("ghcr.io/acme/app\x7f", "whitespace, control"),
        (" nginx", "whitespace, control"),
        ("ghcr.io/acme/ app", "whitespace, control"),
        ("ghcr.io/acme/app:v1\u00a0", "non-ASCII"),
        ("ghcr.io/acme/app:v\u0661", "non-ASCII"),  # an Arabic-Indic digit is \w to Python's re
        ("ghcr.io/acme/\u0430pp", "non-ASCII"),  # Cyrillic a
        ("g\u0127cr.io/acme/app", "non-ASCII"),
        ("ghcr.io/acme/app:\u00e9", "non-ASCII"),
        ("", "empty"),
        # malformed
        ("UPPER//bad@@ref", "more than one '@'"),
        ("Nginx", "lower case"),
        ("ghcr.io/Acme/app", "lower case"),
        ("ghcr.io//app", "empty path component"),
        ("ghcr.io/app/", "empty path component"),
        ("/app", "empty path component"),
        ("ghcr.io/app@sha256:abc", "digest"),
        ("ghcr.io/app@md5:" + "a" * 32, "digest"),
        ("ghcr.io/app@sha256:" + "AB" * 32, "digest"),
        ("ghcr.io/app@", "digest"),
        ("ghcr.io/app:", "tag"),
        ("ghcr.io/app:-bad", "tag"),
        ("ghcr.io/app:.bad", "tag"),
        ("ghcr.io/app:" + "t" * 129, "tag"),
        ("ghcr.io/app:a+b", "tag"),
        ("ghcr.io/a..b", "repository component"),
        ("ghcr.io/a_-b", "repository component"),
        ("ghcr.io/a___b", "repository component"),
        ("ghcr.io/-a", "repository component"),
        ("ghcr.io/a.", "repository component"),
        ("-bad.io/app", "registry"),
        ("bad-.io/app", "registry"),
        ("bad..io/app", "registry"),
        ("bad_host.io/app", "registry"),
        ("ghcr.io:port/app", "registry"),
        ("ghcr.io:/app", "registry"),
        ("[::1/app", "registry"),
        ("[zz::1]:5000/app", "registry"),
        ("[1::2::3]/app", "not an IPv6 address"),
        ("ghcr.io/" + "a" * 250, "longer than 255"),
        ("x" * 250, "longer than 255"),  # docker.io/library/ counts, whatever the spelling
        (":tag", "no repository"),
        # ports
        ("ghcr.io:0/app", "port 0"),
        ("ghcr.io:000/app", "port 000"),
        ("ghcr.io:65536/app", "port 65536"),
        ("ghcr.io:99999999999999999999/app", "between 1 and 65535"),
        # ambiguous: runtimes disagree on where these point
        ("Acme/app", "ambiguous"),
        ("LOCALHOST/app", "ambiguous"),
        ("127.1/app", "ambiguous"),
        ("127.0.0.01/app", "ambiguous"),
        ("010.0.0.1/app", "ambiguous"),
        ("0x7f.0.0.1/app", "ambiguous"),
        ("127.0.0.0x1/app", "ambiguous"),
        ("2130706433:5000/app", "ambiguous"),
        ("1.2.3.4.5/app", "ambiguous"),
        ("256.0.0.1/app", "ambiguous"),
        ("sha256:" + "ab" * 32, "local image ID"),
        ("sha512:" + "ab" * 64, "local image ID"),
        ("ab" * 32, "local image ID"),
    ],
)
def test_invalid_references_say_why(text: str, why: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_reference(text)
    assert why in str(caught.value)
    assert "invalid image reference" in str(caught.value)


def test_canonical_registry_is_shared_with_config_lookups() -> None:
    assert canonical_registry("Docker.IO:443") == HUB
    assert canonical_registry("ghcr.io:0443") == "ghcr.io"
    with pytest.raises(InputError):
        canonical_registry("ghcr.io:0")
    # lenient form for keys (mirrors, credentials): an invalid host can never equal a parsed registry
    assert normalise_registry("GHCR.IO:443") == "ghcr.io"
    assert normalise_registry("Not A Host") == "not a host"
