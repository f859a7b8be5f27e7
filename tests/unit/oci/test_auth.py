from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest

from tests.unit.oci.fake_registry import FakeRegistry
from webhook.errors import InputError
from webhook.oci import (
    Credentials,
    CredentialStore,
    RegistryAuthError,
    RegistryClient,
    TokenCache,
    parse_reference,
    parse_www_authenticate,
)
from webhook.oci.knowledge import RegistryKnowledge

pytestmark = pytest.mark.anyio


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- challenges -------------------------------------------------------------------------------


def test_parse_bearer_challenge_with_quoted_commas() -> None:
    [challenge] = parse_www_authenticate(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/nginx:pull,push"'
    )
    assert challenge.scheme == "bearer"
    assert challenge.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/nginx:pull,push",
    }


def test_parse_several_challenges_and_headers() -> None:
    challenges = parse_www_authenticate(['Basic realm="x, y"', 'Bearer realm="https://a/t", error=invalid_token'])
    assert [c.scheme for c in challenges] == ["basic", "bearer"]
    assert challenges[0].params == {"realm": "x, y"}
    assert challenges[1].params == {"realm": "https://a/t", "error": "invalid_token"}
    both = parse_www_authenticate('Basic realm="r1", Bearer realm="https://a/t",service=s')
    assert [(c.scheme, dict(c.params)) for c in both] == [
        ("basic", {"realm": "r1"}),
        ("bearer", {"realm": "https://a/t", "service": "s"}),
    ]


def test_parse_escaped_quotes_and_garbage() -> None:
    [c] = parse_www_authenticate(r'Bearer realm="a\"b"')
    assert c.params["realm"] == 'a"b'
    assert parse_www_authenticate("") == []


# --- docker config ----------------------------------------------------------------------------


def test_docker_config_auth_and_username_password() -> None:
    store = CredentialStore.from_docker_config(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": b64("hub:pw:with:colons")},
                    "ghcr.io": {"username": "gh", "password": "tok"},
                    "http://127.0.0.1:5000": {"auth": b64("local:pw")},
                }
            }
        )
    )
    assert store.lookup("registry-1.docker.io") == Credentials("hub", "pw:with:colons")
    assert store.lookup("docker.io") == Credentials("hub", "pw:with:colons")
    assert store.lookup("GHCR.IO") == Credentials("gh", "tok")
    assert store.lookup("127.0.0.1:5000") == Credentials("local", "pw")
    assert store.lookup("quay.io") is None
    assert "pw" not in repr(store.lookup("ghcr.io"))  # passwords stay out of logs


def test_legacy_dockercfg_shape_and_merge() -> None:
    old = CredentialStore.from_docker_config({"quay.io": {"auth": b64("q:1")}})
    new = CredentialStore.from_docker_config({"auths": {"quay.io": {"auth": b64("q:2")}}})
    assert old.merged(new).lookup("quay.io") == Credentials("q", "2")


@pytest.mark.parametrize(
    ("document", "why"),
    [
        ("not json", "not valid JSON"),
        ("[]", "JSON object"),
        ({"auths": {"h": {"auth": "!!!"}}}, "not base64"),
        ({"auths": {"h": {"auth": b64("nocolon")}}}, "no ':'"),
        ({"auths": {"h": {}}}, "neither"),
    ],
)
def test_docker_config_errors(document: object, why: str) -> None:
    with pytest.raises(InputError, match=why):
        CredentialStore.from_docker_config(document)  # type: ignore[arg-type]


# --- token cache ------------------------------------------------------------------------------


def test_token_cache_expiry_margin_and_bound() -> None:
    now = [1000.0]
    cache = TokenCache(max_entries=2, margin=30, clock=lambda: now[0])
    cache.put("h", "s", "t", expires_in=300)
    now[0] += 269
    assert cache.get("h", "s") == "t"
    now[0] += 2  # within 30 s of expiry: renew early
    assert cache.get("h", "s") is None
    cache.put("h", "a", "1", 60)  # short token: margin shrinks to a quarter (15 s)
    now[0] += 44
    assert cache.get("h", "a") == "1"
    cache.put("h", "b", "2", 60)
    cache.put("h", "c", "3", 60)
    assert len(cache) == 2 and cache.get("h", "a") is None  # LRU evicted


# --- flows ------------------------------------------------------------------------------------


async def test_anonymous_bearer_dance_and_token_reuse() -> None:
    fake = FakeRegistry(auth="bearer")
    fake.put_image("acme/app")
    async with RegistryClient(transport=fake.transport()) as client:
        ref = parse_reference(f"{fake.host}/acme/app")
        await client.resolve_digest(ref)
        assert client.request_count == 3  # 401, token, retry
        await client.resolve_digest(ref)
        assert client.request_count == 4  # cached token sent up front: no 401
        assert fake.tokens_issued == 1
        other = parse_reference(f"{fake.host}/acme/other")
        fake.put_image("acme/other")
        await client.resolve_digest(other)
        assert client.request_count == 6  # known realm: token for the new scope first, no 401
    token_requests = [line for line in fake.log if line.startswith("GET auth.test")]
    assert len(token_requests) == 2


async def test_token_request_carries_service_and_scopes() -> None:
    seen: list[httpx.Request] = []
    fake = FakeRegistry(auth="bearer")
    fake.put_image("acme/app")
    inner = fake.handle

    def spy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return inner(request)

    async with RegistryClient(transport=httpx.MockTransport(spy)) as client:
        await client.resolve_digest(parse_reference(f"{fake.host}/acme/app"))
    token = next(r for r in seen if r.url.host == "auth.test")
    assert token.url.params.get_list("service") == ["fake.test"]
    assert token.url.params.get_list("scope") == ["repository:acme/app:pull"]
    assert "authorization" not in token.headers  # anonymous


async def test_expired_token_is_refetched() -> None:
    now = [0.0]
    fake = FakeRegistry(auth="bearer", token_lifetime=60)
    fake.put_image("acme/app")
    cache = TokenCache(clock=lambda: now[0])
    async with RegistryClient(transport=fake.transport(), token_cache=cache) as client:
        ref = parse_reference(f"{fake.host}/acme/app")
        await client.resolve_digest(ref)
        now[0] += 120
        await client.resolve_digest(ref)
    assert fake.tokens_issued == 2


async def test_token_endpoint_with_basic_credentials() -> None:
    fake = FakeRegistry(auth="bearer", credentials=("u", "p"))
    fake.put_image("acme/app")
    ref = parse_reference(f"{fake.host}/acme/app")
    async with RegistryClient(transport=fake.transport()) as client:
        with pytest.raises(RegistryAuthError, match=r"no credentials are configured for registry.test"):
            await client.resolve_digest(ref)
    creds = CredentialStore({fake.host: Credentials("u", "p")})
    async with RegistryClient(transport=fake.transport(), credentials=creds) as client:
        assert (await client.resolve_digest(ref)).startswith("sha256:")
    wrong = CredentialStore({fake.host: Credentials("u", "nope")})
    async with RegistryClient(transport=fake.transport(), credentials=wrong) as client:
        with pytest.raises(RegistryAuthError, match=r"credentials were rejected"):
            await client.resolve_digest(ref)


async def test_basic_auth_challenge() -> None:
    fake = FakeRegistry(auth="basic", credentials=("u", "p"))
    fake.put_image("acme/app")
    ref = parse_reference(f"{fake.host}/acme/app")
    creds = CredentialStore({f"https://{fake.host}": Credentials("u", "p")})
    async with RegistryClient(transport=fake.transport(), credentials=creds) as client:
        await client.resolve_digest(ref)
        assert client.request_count == 2
        await client.resolve_digest(ref)
        assert client.request_count == 3  # Basic sent up front once the scheme is known
    async with RegistryClient(transport=fake.transport()) as client:
        with pytest.raises(
            RegistryAuthError, match=r"answered 401 to HEAD manifest latest of acme/app: authentication"
        ):
            await client.resolve_digest(ref)
    wrong = CredentialStore({fake.host: Credentials("u", "x")})
    async with RegistryClient(transport=fake.transport(), credentials=wrong) as client:
        with pytest.raises(RegistryAuthError, match=r"were refused"):
            await client.resolve_digest(ref)


# --- at once --------------------------------------------------------------------------------


class Delayed(httpx.AsyncBaseTransport):
    """The fake registry answering after ``delay``, counting token requests in flight at once."""

    def __init__(self, fake: FakeRegistry, delay: float = 0.02) -> None:
        self.fake, self.delay = fake, delay
        self.tokens_in_flight = self.peak_tokens_in_flight = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        token = request.url.host == "auth.test"
        if token:
            self.tokens_in_flight += 1
            self.peak_tokens_in_flight = max(self.peak_tokens_in_flight, self.tokens_in_flight)
        try:
            await asyncio.sleep(self.delay)
            return self.fake.handle(request)
        finally:
            if token:
                self.tokens_in_flight -= 1


async def test_concurrent_first_requests_to_one_repository_share_one_token() -> None:
    fake = FakeRegistry(auth="bearer")
    fake.put_image("acme/app")
    ref = parse_reference(f"{fake.host}/acme/app")
    async with RegistryClient(transport=Delayed(fake)) as client:
        await asyncio.gather(*(client.resolve_digest(ref) for _ in range(5)))
    assert fake.tokens_issued == 1  # five 401s, one token fetch


async def test_tokens_for_different_repositories_are_fetched_at_once() -> None:
    fake = FakeRegistry(auth="bearer")
    refs = []
    for n in range(6):
        fake.put_image(f"acme/app{n}")
        refs.append(parse_reference(f"{fake.host}/acme/app{n}"))
    transport = Delayed(fake)
    async with RegistryClient(transport=transport) as client:
        await client.resolve_digest(refs[0])  # learns the realm
        await asyncio.gather(*(client.resolve_digest(ref) for ref in refs[1:]))
    assert fake.tokens_issued == 6
    assert transport.peak_tokens_in_flight == 5  # not one after another


async def test_what_a_registry_wants_is_shared_by_clients_of_other_credentials() -> None:
    fake = FakeRegistry(auth="bearer")
    fake.put_image("acme/app")
    ref = parse_reference(f"{fake.host}/acme/app")
    knowledge = RegistryKnowledge()
    async with RegistryClient(transport=fake.transport(), knowledge=knowledge) as first:
        await first.resolve_digest(ref)
        assert first.request_count == 3  # 401, token, retry
    creds = CredentialStore({"other.test": Credentials("u", "p")})
    async with RegistryClient(transport=fake.transport(), knowledge=knowledge, credentials=creds) as second:
        await second.resolve_digest(ref)
        assert second.request_count == 2  # its own token first (tokens are never shared), no 401
    assert fake.tokens_issued == 2


async def test_a_refused_token_is_replaced_once() -> None:
    fake = FakeRegistry(auth="bearer")
    fake.put_image("acme/app")
    ref = parse_reference(f"{fake.host}/acme/app")
    cache = TokenCache()
    async with RegistryClient(transport=fake.transport(), token_cache=cache) as client:
        await client.resolve_digest(ref)
        cache.put(fake.host, "repository:acme/app:pull", "revoked", 300)  # the registry will refuse it
        await client.resolve_digest(ref)
        assert client.request_count == 3 + 3  # sent with the revoked token, 401, new token, retry
    assert fake.tokens_issued == 2
    assert cache.counts.hits >= 1 and cache.counts.misses >= 1


async def test_a_failed_token_fetch_lets_go_of_the_challenge_it_answered() -> None:
    """Every exchange ends (its connection and per-host slot released), the refused token request and the 401."""
    ended: list[str] = []

    class Ends:
        def request_done(self, upstream: str, host: str, seconds: float, outcome: str) -> None:
            ended.append(f"{host} {outcome}")

        def connection_opened(self, upstream: str, host: str, protocol: str) -> None:
            return None

        def connection_closed(self, upstream: str, host: str) -> None:
            return None

    class Streaming(httpx.AsyncBaseTransport):
        """Answers that stay open until closed, as a real connection's do."""

        def __init__(self, fake: FakeRegistry) -> None:
            self.fake = fake

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            answer = self.fake.handle(request)
            return httpx.Response(answer.status_code, headers=answer.headers,
                                  stream=httpx.ByteStream(answer.content))

    fake = FakeRegistry(auth="bearer", credentials=("u", "p"))
    fake.put_image("acme/app")
    async with RegistryClient(transport=Streaming(fake), observer=Ends()) as client:
        with pytest.raises(RegistryAuthError):
            await client.resolve_digest(parse_reference(f"{fake.host}/acme/app"))
    assert sorted(ended) == ["auth.test denied", "registry.test denied"]
