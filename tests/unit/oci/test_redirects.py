"""What a registry can make the client contact: redirects, token realms, its own address; and who gets credentials."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import pytest

from webhook.errors import RegistryError
from webhook.oci import (
    Credentials,
    CredentialStore,
    EgressRefusedError,
    RegistryClient,
    Repository,
    parse_reference,
)

pytestmark = pytest.mark.anyio

BLOB = b"signature payload"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BASIC = "Basic " + base64.b64encode(b"u:p").decode()

Route = Callable[[httpx.Request], httpx.Response]


@dataclass
class Net:
    """Every host the client can reach; logs each request with the credentials it carried."""

    routes: dict[str, Route]
    log: list[tuple[str, str | None]] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.log.append((f"{request.url.netloc.decode()}{request.url.path}", request.headers.get("authorization")))
        route = self.routes.get(request.url.netloc.decode())
        return route(request) if route is not None else httpx.Response(599)

    def client(self, **kwargs: object) -> RegistryClient:
        return RegistryClient(transport=httpx.MockTransport(self.handle), **kwargs)  # type: ignore[arg-type]

    def hosts(self) -> list[str]:
        return [line.split("/", 1)[0] for line, _ in self.log]


def redirecting(location: str) -> Route:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith("/v2/"):
            return httpx.Response(307, headers={"Location": location})
        return httpx.Response(200, content=BLOB)

    return route


@pytest.mark.parametrize(
    ("location", "host", "rule"),
    [
        ("http://cdn.test/b", "cdn.test", "a redirect to another origin must use https"),
        ("https://10.0.0.1/b", "10.0.0.1", "10.0.0.1 is a private address; only public addresses may be reached"),
        ("https://169.254.169.254/latest/meta-data/", "169.254.169.254", "169.254.169.254 is a link-local address"),
        ("https://127.0.0.1:8080/", "127.0.0.1:8080", "127.0.0.1:8080 is a loopback address"),
        ("https://[::ffff:a9fe:a9fe]/", "[::ffff:a9fe:a9fe]", "is a link-local address"),
        ("https://2130706433/", "2130706433", "2130706433 is a loopback address"),
        ("https://0.0.0.0/", "0.0.0.0", "0.0.0.0 is a unspecified address"),
        ("https://user:pw@cdn.test/", "cdn.test", "a redirect carrying credentials in the URL is not followed"),
        ("file:///etc/passwd", "file", "a redirect must be an http(s) URL with a host"),
    ],
)
async def test_redirects_outside_the_rules_are_refused_before_sending(location: str, host: str, rule: str) -> None:
    net = Net({"registry.test": redirecting(location), "cdn.test": redirecting(location)})
    async with net.client() as client:
        with pytest.raises(EgressRefusedError) as caught:
            await client.get_blob(Repository("registry.test", "acme/app"), DIGEST)
    assert str(caught.value).startswith(
        f"registry registry.test redirected GET blob {DIGEST} of acme/app to {host}: refused, "
    )
    assert rule in str(caught.value)
    assert net.hosts() == ["registry.test"]  # the refused target got nothing


async def test_credentials_stay_on_their_origin_through_redirects() -> None:
    def registry(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != BASIC:
            return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})
        if request.url.path.startswith("/v2/"):
            return httpx.Response(302, headers={"Location": f"/storage/{DIGEST}"})  # same origin
        return httpx.Response(307, headers={"Location": f"https://cdn.test/{DIGEST}?sig=x"})

    net = Net({"registry.test": registry, "cdn.test": lambda _r: httpx.Response(200, content=BLOB)})
    creds = CredentialStore({"registry.test": Credentials("u", "p")})
    async with net.client(credentials=creds) as client:
        assert await client.get_blob(Repository("registry.test", "acme/app"), DIGEST) == BLOB
    assert net.log == [
        (f"registry.test/v2/acme/app/blobs/{DIGEST}", None),
        (f"registry.test/v2/acme/app/blobs/{DIGEST}", BASIC),
        (f"registry.test/storage/{DIGEST}", BASIC),
        (f"cdn.test/{DIGEST}", None),
    ]


async def test_a_private_registry_may_send_us_to_its_private_storage_only_over_https() -> None:
    net = Net({
        "10.0.0.5:5000": redirecting("https://10.0.0.6:9000/bucket/b"),
        "10.0.0.6:9000": lambda _r: httpx.Response(200, content=BLOB),
    })
    async with net.client() as client:
        assert await client.get_blob(Repository("10.0.0.5:5000", "acme/app"), DIGEST) == BLOB
    for location, rule in (("http://10.0.0.6:9000/b", "must use https"), ("https://127.0.0.1/b", "loopback")):
        net = Net({"10.0.0.5:5000": redirecting(location)})
        async with net.client() as client:
            with pytest.raises(EgressRefusedError, match=rule):
                await client.get_blob(Repository("10.0.0.5:5000", "acme/app"), DIGEST)
        assert net.hosts() == ["10.0.0.5:5000"]


async def test_a_registry_named_at_an_inside_address_is_not_contacted() -> None:
    net = Net({})
    async with net.client() as client:
        with pytest.raises(EgressRefusedError) as caught:
            await client.resolve_digest(parse_reference("169.254.169.254/latest/meta-data:v1"))
        with pytest.raises(EgressRefusedError, match=r"127.0.0.1:5000 is a loopback address"):
            await client.resolve_digest(parse_reference("127.0.0.1:5000/acme/app:v1"))  # loopback needs allow_http
    assert net.log == []
    assert str(caught.value) == (
        "registry 169.254.169.254: HEAD manifest v1 of latest/meta-data: refused, 169.254.169.254 is a link-local "
        "address; only public or private addresses may be reached from here"
    )
    net = Net({"127.0.0.1:5000": lambda _r: httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})})
    async with net.client(allow_http=True) as client:
        assert await client.resolve_digest(parse_reference("127.0.0.1:5000/acme/app:v1")) == DIGEST


def challenging(realm: str) -> Route:
    def route(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") == "Bearer t":
            return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})
        return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="s"'})

    return route


def token(_request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"token": "t"})


@pytest.mark.parametrize(
    ("realm", "host", "rule"),
    [
        ("http://auth.test/token", "auth.test", "a token realm to another origin must use https"),
        ("https://169.254.169.254/token", "169.254.169.254", "169.254.169.254 is a link-local address"),
        ("https://10.0.0.1/token", "10.0.0.1", "10.0.0.1 is a private address"),
        ("https://[::1]:5001/token", "[::1]:5001", "is a loopback address"),
        ("gopher://auth.test/", "auth.test", "unusable token realm"),
    ],
)
async def test_token_realms_pointing_inside_are_refused(realm: str, host: str, rule: str) -> None:
    net = Net({"registry.test": challenging(realm), "auth.test": token})
    creds = CredentialStore({"registry.test": Credentials("u", "p")})
    async with net.client(credentials=creds) as client:
        with pytest.raises(RegistryError) as caught:
            await client.resolve_digest(parse_reference("registry.test/acme/app:v1"))
    assert rule in str(caught.value)
    if "unusable" not in rule:
        assert isinstance(caught.value, EgressRefusedError)
        assert str(caught.value).startswith(f"registry registry.test named token realm {host}: refused, ")
    assert net.hosts() == ["registry.test"]  # neither the realm nor anything else was asked


async def test_a_development_registry_keeps_its_token_service_beside_it() -> None:
    # docker-registry with a token server on another loopback port: allowed with allow_http, on the same host only.
    net = Net({"127.0.0.1:5000": challenging("http://127.0.0.1:5001/token"), "127.0.0.1:5001": token})
    async with net.client(allow_http=True) as client:
        assert await client.resolve_digest(parse_reference("127.0.0.1:5000/acme/app:v1")) == DIGEST
    net = Net({"127.0.0.1:5000": challenging("http://localhost:5001/token"), "localhost:5001": token})
    async with net.client(allow_http=True) as client:
        with pytest.raises(EgressRefusedError, match=r"named token realm localhost:5001: refused, .* must use https"):
            await client.resolve_digest(parse_reference("127.0.0.1:5000/acme/app:v1"))
    assert net.hosts() == ["127.0.0.1:5000"]


async def test_token_credentials_do_not_follow_a_redirect_to_another_origin() -> None:
    def auth(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(307, headers={"Location": "/v2/token"})
        return httpx.Response(307, headers={"Location": "https://elsewhere.test/token"})

    net = Net({"registry.test": challenging("https://auth.test/token"), "auth.test": auth, "elsewhere.test": token})
    creds = CredentialStore({"registry.test": Credentials("u", "p")})
    async with net.client(credentials=creds) as client:
        assert await client.resolve_digest(parse_reference("registry.test/acme/app:v1")) == DIGEST
    assert [(line.split("?")[0], who) for line, who in net.log] == [
        ("registry.test/v2/acme/app/manifests/v1", None),
        ("auth.test/token", BASIC),
        ("auth.test/v2/token", BASIC),  # same origin as the realm: the login goes along
        ("elsewhere.test/token", None),  # another origin: it does not
        ("registry.test/v2/acme/app/manifests/v1", "Bearer t"),
    ]


async def test_an_operator_configured_registry_may_live_on_loopback() -> None:
    # A sidecar mirror or an explicitly insecure registry is the operator's choice, not the workload's.
    def answer(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Docker-Content-Digest": DIGEST})

    net = Net({"127.0.0.1:5000": answer, "127.0.0.1:5443": answer})
    async with net.client(insecure_registries=["127.0.0.1"]) as client:
        assert await client.resolve_digest(parse_reference("127.0.0.1:5000/acme/app:v1")) == DIGEST
    async with net.client(mirrors={"docker.io": "https://127.0.0.1:5443"}) as client:
        assert await client.resolve_digest(parse_reference("nginx:v1")) == DIGEST
    assert net.hosts() == ["127.0.0.1:5000", "127.0.0.1:5443"]
    async with net.client() as client:
        with pytest.raises(EgressRefusedError, match=r"127.0.0.2:5000 is a loopback address"):
            await client.resolve_digest(parse_reference("127.0.0.2:5000/acme/app:v1"))
    assert len(net.log) == 2
