"""Property tests: every spelling of one location is one reference and gets one policy selection."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.policy.policy_docs import make_cip, make_ip
from webhook.errors import InputError
from webhook.oci.reference import DOCKER_HUB, ImageReference, is_registry_component, parse_reference
from webhook.policy import NoMatchPolicy, PolicySet, load_documents
from webhook.policy.globs import compile_glob

DIGESTS = ("sha256:" + "ab" * 32, "sha256:" + "0f" * 32, "sha512:" + "cd" * 64)

# Globs of every kind: literal and wildcard registries, Docker Hub short forms, tags, digests.
GLOBS = (
    "**", "*/**", "*", "*/*", "*/*:v1", "foo**", "acme/*", "library/*", "docker.io/**", "index.docker.io/foo**",
    "nginx", "nginx:1.*", "*.io/**", "ghcr.io/**", "ghcr.io/acme/*", "ghcr.io/acme/app", "ghcr.io/acme/app:v1",
    "GHCR.io:443/acme/**", "ghcr.io:5000/**", "localhost/**", "localhost:5000/*", "127.0.0.1:*/**",
    "127.0.0.1/**", "registry.example.com/*/app*", "*/acme/**", "**/app",
    "ghcr.io/acme/*-prod", f"ghcr.io/acme/app@{DIGESTS[0]}", "ghcr.io/**@sha256:*", "**:latest",
    "registry-1.docker.io/*/x",
)


def _policy_set() -> PolicySet:
    docs = [make_cip(f"g{i}", (glob,)) for i, glob in enumerate(GLOBS)]
    docs += [make_ip(f"n{i}", "team", (glob,)) for i, glob in enumerate(GLOBS[::3])]
    result = load_documents(docs)
    assert result.ok, [str(p) for p in result.problems]
    return PolicySet.from_load_result(result, no_match_policy=NoMatchPolicy.WARN)


POLICIES = _policy_set()


@dataclass(frozen=True)
class Location:
    """A canonical location and the parts a spelling may vary."""

    host: str  # canonical host, without port
    port: int | None  # canonical port (None: the default)
    path: str
    tag: str | None
    digest: str | None

    @property
    def reference(self) -> ImageReference:
        registry = self.host if self.port is None else f"{self.host}:{self.port}"
        return ImageReference(registry, self.path, self.tag if self.tag or self.digest else "latest", self.digest)


_component = st.one_of(
    st.sampled_from(["app", "acme", "foo", "team3", "library", "nginx", "x-prod", "a_b", "a__b", "a--b", "v1.2",
                     "foo.bar", "localhost", "sha256", "0"]),
    st.from_regex(r"[a-z0-9]{1,4}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,3}){0,2}", fullmatch=True),
)
_path = st.lists(_component, min_size=1, max_size=3).map("/".join)
_hosts = st.sampled_from(["ghcr.io", "registry.example.com", "localhost", "127.0.0.1", "[::1]", "[fd00::1]",
                          "a-b.c0", "foo.io", DOCKER_HUB])
_tag = st.one_of(st.none(), st.sampled_from(["latest", "v1", "1.25", "V_1-rc.2", "x-prod"]))


@st.composite
def locations(draw: st.DrawFn) -> Location:
    host = draw(_hosts)
    port = None if host == DOCKER_HUB else draw(st.sampled_from([None, None, 5000, 8443, 1]))
    path = draw(_path)
    if host == DOCKER_HUB and "/" not in path:
        path = f"library/{path}"
    return Location(host, port, path, draw(_tag), draw(st.one_of(st.none(), st.sampled_from(DIGESTS))))


def _vary_case(draw: Callable[[st.SearchStrategy[list[bool]]], list[bool]], text: str) -> str:
    flips = draw(st.lists(st.booleans(), min_size=len(text), max_size=len(text)))
    return "".join(c.upper() if flip else c for c, flip in zip(text, flips, strict=True))


@st.composite
def spellings(draw: st.DrawFn, location: Location) -> str:
    """One way a Pod spec may write ``location``, as a container runtime would read it."""
    path = location.path
    if location.host == DOCKER_HUB:
        short = path.removeprefix("library/") if path.count("/") == 1 and path.startswith("library/") else path
        path = draw(st.sampled_from([path, short]))
        hosts = ["docker.io", "index.docker.io", "registry-1.docker.io"]
        if not is_registry_component(path.partition("/")[0]) or "/" not in path:
            hosts.append("")
        host = draw(st.sampled_from(hosts))
        port = draw(st.sampled_from(["", ":443", ":0443"])) if host else ""
    else:
        host = location.host
        if host == "[::1]":
            host = draw(st.sampled_from(["[::1]", "[0:0:0:0:0:0:0:1]", "[0000::0001]"]))
        elif host == "127.0.0.1":
            host = draw(st.sampled_from(["127.0.0.1", "[::ffff:7f00:1]", "[::FFFF:7f00:1]"]))
        if location.port is None:
            port = draw(st.sampled_from(["", ":443", ":0443", ":000443"]))
        else:
            port = draw(st.sampled_from([f":{location.port}", f":0{location.port}"]))
    if host and (host != "localhost" or port):  # an upper-case bare `localhost` is ambiguous, refused
        host = _vary_case(draw, host)
    text = f"{host}{port}/{path}" if host else path
    if location.tag is not None:
        text += f":{location.tag}"
    elif location.digest is None and draw(st.booleans()):
        text += ":latest"
    if location.digest is not None:
        text += f"@{location.digest}"
    return text


@st.composite
def location_and_spellings(draw: st.DrawFn) -> tuple[Location, list[str]]:
    location = draw(locations())
    return location, draw(st.lists(spellings(location), min_size=2, max_size=5))


def _selected(image: str, namespace: str | None) -> list[str]:
    return [p.key for p in POLICIES.select(image, namespace).policies]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(location_and_spellings())
def test_every_spelling_parses_to_the_same_reference(case: tuple[Location, list[str]]) -> None:
    location, texts = case
    for text in texts:
        ref = parse_reference(text)
        assert ref == location.reference, text
        assert parse_reference(str(ref)) == ref


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(location_and_spellings(), st.sampled_from([None, "team", "other"]))
def test_every_spelling_gets_the_same_policies(case: tuple[Location, list[str]], namespace: str | None) -> None:
    _, texts = case
    selections = {tuple(_selected(text, namespace)) for text in texts}
    assert len(selections) == 1, (texts, selections)


@settings(max_examples=200, deadline=None)
@given(locations(), st.sampled_from([g for g in GLOBS if compile_glob(g).name_only]))
def test_name_only_globs_are_decided_by_the_name(location: Location, glob: str) -> None:
    # What makes memoising per name sound: no tag or digest changes the answer of such a glob.
    compiled = compile_glob(glob)
    ref = location.reference
    assert compiled.matches_name(ref.name) == compiled.matches(ref)


@settings(max_examples=200, deadline=None)
@given(locations())
def test_a_resolved_digest_only_adds_policies(location: Location) -> None:
    assert POLICIES.digest_sensitive  # its `@sha256:*` glob waits for the digest
    ref = location.reference
    before = set(_selected(str(ref), "team"))
    after = set(_selected(str(ref.with_digest(DIGESTS[1])), "team"))
    assert before <= after
    pinned_only = f"ClusterImagePolicy/g{GLOBS.index('ghcr.io/**@sha256:*')}"
    assert (pinned_only in after) == (ref.registry == "ghcr.io")


_FORBIDDEN = st.sampled_from(["\n", "\r", "\t", " ", "\x00", "\x1b", "\x7f", "\u00a0", "\u2028", "\u0430", "\u0661",
                              "\uff0f", "\u00e9"])


@settings(max_examples=200, deadline=None)
@given(locations(), _FORBIDDEN, st.data())
def test_a_reference_with_a_forbidden_character_never_parses(location: Location, bad: str, data: st.DataObject) -> None:
    text = str(location.reference)
    at = data.draw(st.integers(min_value=0, max_value=len(text)))
    with pytest.raises(InputError, match="whitespace, control or non-ASCII"):
        parse_reference(text[:at] + bad + text[at:])


@settings(max_examples=200, deadline=None)
@given(locations(), st.data())
def test_an_upper_case_repository_never_parses(location: Location, data: st.DataObject) -> None:
    ref = location.reference
    letters = [i for i, c in enumerate(ref.repository) if c.isalpha()]
    if not letters:
        return
    i = data.draw(st.sampled_from(letters))
    repository = ref.repository[:i] + ref.repository[i].upper() + ref.repository[i + 1 :]
    with pytest.raises(InputError):
        parse_reference(str(ImageReference(ref.registry, repository, ref.tag, ref.digest)))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["ghcr.io", "docker.io", "registry.example.com:5000"]), st.data())
def test_a_glob_means_the_same_whatever_the_spelling_of_its_registry(host: str, data: st.DataObject) -> None:
    spelled = _vary_case(data.draw, host)
    if ":" not in host:
        spelled += data.draw(st.sampled_from(["", ":443", ":0443"]))
    elif data.draw(st.booleans()):
        spelled = spelled.replace(":5000", ":05000")
    if host == "docker.io":
        spelled = data.draw(st.sampled_from([spelled, "INDEX.docker.io", "registry-1.docker.io:443"]))
    for rest in ("acme/**", "acme/app:v1", "*"):
        assert compile_glob(f"{spelled}/{rest}").pattern == compile_glob(f"{host}/{rest}").pattern
