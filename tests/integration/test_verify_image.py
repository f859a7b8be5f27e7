"""``verify_image`` and ``signet verify`` against Debian's docker-registry, signatures made with the signing kit.

Layouts: legacy ``.sig`` (with and without the Rekor bundle annotation, the latter through the
Rekor stand-in), cosign v3 bundle referrer (fallback tag), multi-arch index, keyed; negative cases;
the connaisseur test image from ../shared/fixtures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures_path import shared_fixture
from tests.integration.registry import (
    OCI_INDEX,
    OCI_MANIFEST,
    LocalRegistry,
    canonical_json,
    silent_server,
    status_server,
)
from tests.integration.rekor_server import RekorServer
from tests.sigstore_kit import SigstoreKit
from tests.sigstore_kit.keys import new_p256, public_pem
from webhook.images import LAYOUT_BUNDLE, LAYOUT_LEGACY, ImageVerification, RekorLookup, verify_image
from webhook.oci import RegistryClient, RegistryLimits, parse_reference
from webhook.rekor import RekorClient
from webhook.verify.identity import Identity
from webhook.verify.keys import PublicKey, load_pem_public_key
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Verifier

pytestmark = pytest.mark.anyio

SIGNER, ISSUER = "signer@example.com", "https://oidc.example"
POLICY = Identity(subject=SIGNER, issuer=ISSUER)
BUNDLE_ANNOTATION = "dev.sigstore.cosign/bundle"
PROJECT = Path(__file__).resolve().parents[2]
SIGNET = PROJECT / ".venv" / "bin" / "signet"

TI = ("cosign-image-signatures", "connaisseur-testimage")
KEYLESS = "sha256:31dc72a13a0c34b40eb95419d2b2fd67320c856baf3b72da518023ee8d370aee"
ALICE = "sha256:071bf7a986f1ca9cb2a1f0bc8392822a7777f90d58f2d2c6f271913e08de7c81"
ALICE_BOB_CHARLIE = "sha256:bfec161fecb0a887df7cb85e4da327c65986ccda7060cf3cd92171c6c90d7533"
CO_UNSIGNED = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
TI_SIGNER, TI_ISSUER = "philipp.belitz@securesystems.de", "https://github.com/login/oauth"


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=3)


@pytest.fixture(scope="module")
def trusted_root_file(kit: SigstoreKit, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trust") / "trusted_root.json"
    path.write_bytes(kit.trusted_root_json())
    return path


@pytest.fixture(scope="module")
def verifier(kit: SigstoreKit) -> Verifier:
    return Verifier(TrustedRoot.from_json(kit.trusted_root_json()))


@pytest.fixture(scope="module")
def rekor_server(kit: SigstoreKit) -> Iterator[RekorServer]:
    server = RekorServer(kit.rekor_v1)
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[RegistryClient]:
    async with RegistryClient(allow_http=True) as registry_client:
        yield registry_client


def legacy(registry: LocalRegistry, kit: SigstoreKit, repo: str, *, drop_bundle: bool = False,
           tamper: bool = False, **options: Any) -> str:
    """Push an image and a legacy signature for it; returns ``host/repo@digest``."""
    digest = registry.push_random_image(repo, None)
    sig = kit.sign_image_legacy(digest, repository=f"{registry.host}/{repo}", **options)
    annotations = {k: v for k, v in sig.annotations.items() if not (drop_bundle and k == BUNDLE_ANNOTATION)}
    payload = sig.payload.replace(b'"docker-reference":"', b'"docker-reference":"evil/') if tamper else sig.payload
    registry.push_legacy_signature(repo, digest, [(payload, annotations)])
    return f"{registry.host}/{repo}@{digest}"


async def run(ref: str, client: RegistryClient, verifier: Verifier, **options: Any) -> ImageVerification:
    if "key" not in options:
        options.setdefault("policy", POLICY)
    return await verify_image(parse_reference(ref), registry_client=client, verifier=verifier, **options)


# --- layouts ----------------------------------------------------------------------------------------


async def test_legacy_keyless_with_bundle_annotation(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier
) -> None:
    ref = legacy(registry, kit, "vi/legacy")
    result = await run(ref, client, verifier)
    assert result.ok and not result.infrastructure_failure
    (outcome,) = result.signatures
    assert outcome.layout == LAYOUT_LEGACY and outcome.signer is not None and outcome.signer.subject == SIGNER
    assert outcome.log_index is not None
    # One crypto verification, many policies: the wrong identity names the signer found.
    other = await run(ref, client, verifier, policy=Identity(subject="bob@example.com", issuer=ISSUER))
    assert not other.ok and not other.infrastructure_failure
    assert other.signatures[0].reason is not None and SIGNER in other.signatures[0].reason
    assert "bob@example.com" in other.explain()


async def test_legacy_without_bundle_uses_rekor_once(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier, rekor_server: RekorServer
) -> None:
    ref = legacy(registry, kit, "vi/nobundle", drop_bundle=True)
    before = rekor_server.retrieve_count
    async with RekorClient() as rekor_client:
        rekor = RekorLookup(rekor_client, rekor_server.url)
        first = await run(ref, client, verifier, rekor=rekor)
        assert first.ok, first.explain()
        assert rekor_server.retrieve_count == before + 1
        second = await run(ref, client, verifier, rekor=rekor)
        assert second.ok and rekor_server.retrieve_count == before + 1  # cached: no request
    # Without a Rekor to ask, a keyless signature without log evidence does not verify.
    offline = await run(ref, client, verifier)
    assert not offline.ok and "no transparency log entry" in (offline.signatures[0].reason or "")


async def test_legacy_not_in_rekor_fails(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier, rekor_server: RekorServer
) -> None:
    ref = legacy(registry, kit, "vi/notlogged", tlog=False)
    async with RekorClient() as rekor_client:
        result = await run(ref, client, verifier, rekor=RekorLookup(rekor_client, rekor_server.url))
    assert not result.ok and not result.infrastructure_failure
    assert "transparency log" in (result.signatures[0].reason or "")


async def test_rekor_down_is_infrastructure_failure(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier
) -> None:
    ref = legacy(registry, kit, "vi/rekordown", drop_bundle=True)
    server = RekorServer(kit.rekor_v1)
    server.fail_with = 503
    try:
        async with RekorClient() as rekor_client:
            result = await run(ref, client, verifier, rekor=RekorLookup(rekor_client, server.url))
    finally:
        server.stop()
    assert not result.ok and result.infrastructure_failure
    assert "Rekor at" in (result.signatures[0].reason or "") and "503" in result.explain()


async def test_bundle_referrer_through_fallback_tag(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier
) -> None:
    repo = "vi/bundle"
    digest = registry.push_random_image(repo, None)
    registry.push_bundle_referrer(repo, digest, kit.sign_image_bundle(digest).to_json())
    result = await run(f"{registry.host}/{repo}@{digest}", client, verifier)
    assert result.ok, result.explain()
    (outcome,) = result.signatures
    assert outcome.layout == LAYOUT_BUNDLE and outcome.checked.source == "referrers-fallback-tag"
    assert outcome.verified is not None and outcome.verified.statement is not None


async def test_bundle_with_other_predicate_is_not_a_signature(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier
) -> None:
    from tests.sigstore_kit.bundles import in_toto_statement, statement_subject

    repo = "vi/bundle-att"
    digest = registry.push_random_image(repo, None)
    subject = statement_subject(digest.removeprefix("sha256:"))
    statement = in_toto_statement([subject], "https://slsa.dev/provenance/v1", {})
    signed = kit.sign_blob(b"", dsse=True, statement=statement)
    registry.push_bundle_referrer(repo, digest, signed.to_json())
    result = await run(f"{registry.host}/{repo}@{digest}", client, verifier)
    assert not result.ok and "predicate type" in (result.signatures[0].reason or "")


async def test_multi_arch_index_signature(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier
) -> None:
    repo = "vi/multiarch"
    children = []
    for arch in ("amd64", "arm64"):
        digest = registry.push_random_image(repo, None)
        children.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": 1,
                         "platform": {"architecture": arch, "os": "linux"}})
    index = registry.push_manifest(repo, "multi", canonical_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}), OCI_INDEX)
    sig = kit.sign_image_legacy(index)
    registry.push_legacy_signature(repo, index, [(sig.payload, sig.annotations)])

    by_tag = await run(f"{registry.host}/{repo}:multi", client, verifier)
    assert by_tag.ok and by_tag.digest == index
    platform = children[0]["digest"]
    # Default, like cosign: the digest the workload names must itself be signed.
    strict = await run(f"{registry.host}/{repo}:multi@{platform}", client, verifier)
    assert not strict.ok and "no signatures found" in strict.explain()
    # Policy choice: a platform manifest covered by a verified index signature.
    covered = await run(f"{registry.host}/{repo}:multi@{platform}", client, verifier, include_index_signatures=True)
    assert covered.ok and covered.index_digest == index
    explicit = await run(f"{registry.host}/{repo}@{platform}", client, verifier, include_index_signatures=True,
                         index_digest=index)
    assert explicit.ok
    stranger = registry.push_random_image(repo, None)
    not_listed = await run(f"{registry.host}/{repo}@{stranger}", client, verifier, include_index_signatures=True,
                           index_digest=index)
    assert not not_listed.ok


async def test_keyed_signature(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier
) -> None:
    private = new_p256()
    ref = legacy(registry, kit, "vi/keyed", key=private, tlog=False)
    public: PublicKey = load_pem_public_key(public_pem(private.public_key()), "key")
    result = await run(ref, client, verifier, key=public)
    assert result.ok, result.explain()
    wrong = load_pem_public_key(public_pem(new_p256().public_key()), "key")
    assert not (await run(ref, client, verifier, key=wrong)).ok


# --- negative -----------------------------------------------------------------------------------------


async def test_tampered_payload(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier
) -> None:
    result = await run(legacy(registry, kit, "vi/tampered", tamper=True), client, verifier)
    assert not result.ok and not result.infrastructure_failure
    assert "signature" in (result.signatures[0].reason or "")


async def test_signature_for_another_digest(
    registry: LocalRegistry, kit: SigstoreKit, client: RegistryClient, verifier: Verifier
) -> None:
    repo = "vi/otherdigest"
    digest = registry.push_random_image(repo, None)
    sig = kit.sign_image_legacy(registry.push_random_image(repo, None))
    registry.push_legacy_signature(repo, digest, [(sig.payload, sig.annotations)])
    result = await run(f"{registry.host}/{repo}@{digest}", client, verifier)
    assert not result.ok and "image binding" in (result.signatures[0].reason or "")


async def test_unsigned(registry: LocalRegistry, client: RegistryClient, verifier: Verifier) -> None:
    digest = registry.push_random_image("vi/unsigned", None)
    result = await run(f"{registry.host}/vi/unsigned@{digest}", client, verifier)
    assert not result.ok and not result.infrastructure_failure and result.signatures == []
    assert f"no signatures found for {registry.host}/vi/unsigned@{digest}" in result.explain()


async def test_registry_500_is_infrastructure_failure(verifier: Verifier) -> None:
    with status_server(500) as host:
        async with RegistryClient(allow_http=True) as broken:
            result = await run(f"{host}/vi/app@sha256:{'ab' * 32}", broken, verifier)
    assert not result.ok and result.infrastructure_failure and "500" in result.explain()
    assert "no signatures found" not in result.explain()


async def test_registry_hanging_is_infrastructure_failure(verifier: Verifier) -> None:
    limits = RegistryLimits(connect_timeout=0.3, read_timeout=0.3, operation_timeout=0.6)
    with silent_server() as host:
        async with RegistryClient(allow_http=True, limits=limits) as hung:
            result = await run(f"{host}/vi/app@sha256:{'ab' * 32}", hung, verifier)
    assert not result.ok and result.infrastructure_failure and "in time" in result.explain()


# --- the connaisseur test image (real cosign signatures) -------------------------------------------


def load_fixture_signature(registry: LocalRegistry, digest: str) -> str:
    """Push the fixture's ``.sig`` manifest for ``digest`` as cosign pushed it; returns host/repo@digest."""
    base = shared_fixture(*TI, "securesystemsengineering", "testimage")
    repo = "securesystemsengineering/testimage"
    sig = json.loads((base / "manifests" / f"{digest.replace(':', '-')}.sig.json").read_text())
    for layer in sig["layers"]:
        registry.push_blob(repo, (base / "blobs" / f"{layer['digest']}.json").read_bytes())
    config = canonical_json({"rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in sig["layers"]]},
                             "config": {}})
    sig["config"] = {"mediaType": "application/vnd.oci.image.config.v1+json", "size": len(config),
                     "digest": registry.push_blob(repo, config)}
    sig["mediaType"] = OCI_MANIFEST
    registry.push_manifest(repo, f"{digest.replace(':', '-')}.sig", json.dumps(sig).encode())
    return f"{registry.host}/{repo}@{digest}"


def fixture_key(name: str) -> PublicKey:
    return load_pem_public_key(shared_fixture(*TI, f"{name}.pub.pem").read_bytes(), name)


@pytest.fixture(scope="module")
def prod_verifier() -> Verifier:
    return Verifier(TrustedRoot.from_file(shared_fixture("trust", "prod", "trusted_root.json")))


async def test_connaisseur_keyless(registry: LocalRegistry, client: RegistryClient, prod_verifier: Verifier) -> None:
    ref = load_fixture_signature(registry, KEYLESS)
    ok = await run(ref, client, prod_verifier, policy=Identity(subject=TI_SIGNER, issuer=TI_ISSUER))
    assert ok.ok, ok.explain()
    other = await run(ref, client, prod_verifier, policy=Identity(subject="bob@example.com", issuer=TI_ISSUER))
    assert not other.ok and TI_SIGNER in other.explain()


async def test_connaisseur_keyed(registry: LocalRegistry, client: RegistryClient, prod_verifier: Verifier) -> None:
    alice = load_fixture_signature(registry, ALICE)
    assert (await run(alice, client, prod_verifier, key=fixture_key("alice"))).ok
    assert not (await run(alice, client, prod_verifier, key=fixture_key("bob"))).ok
    three = load_fixture_signature(registry, ALICE_BOB_CHARLIE)
    for name in ("alice", "bob", "charlie"):
        result = await run(three, client, prod_verifier, key=fixture_key(name))
        assert result.ok and sum(o.satisfied for o in result.signatures) == 1, name


async def test_connaisseur_unsigned(registry: LocalRegistry, client: RegistryClient, prod_verifier: Verifier) -> None:
    shared_fixture(*TI)
    result = await run(f"{registry.host}/securesystemsengineering/testimage@{CO_UNSIGNED}", client, prod_verifier,
                       key=fixture_key("alice"))
    assert not result.ok and "no signatures found" in result.explain()


# --- the CLI, end to end ------------------------------------------------------------------------------


def signet(*args: str) -> subprocess.CompletedProcess[str]:
    command = [str(SIGNET)] if SIGNET.exists() else [sys.executable, "-m", "webhook.cli"]
    return subprocess.run([*command, "verify", *args], check=False, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "NO_COLOR": "1"})


def test_cli_verify(registry: LocalRegistry, kit: SigstoreKit, trusted_root_file: Path,
                    rekor_server: RekorServer) -> None:
    ref = legacy(registry, kit, "vi/cli")
    common = ["--trusted-root", str(trusted_root_file), "--allow-http-registry"]
    ok = signet(ref, "--certificate-identity", SIGNER, "--certificate-oidc-issuer", ISSUER, *common)
    assert ok.returncode == 0, ok.stderr
    assert "The following checks were performed" in ok.stderr
    payloads = json.loads(ok.stdout)
    assert payloads[0]["critical"]["image"]["docker-manifest-digest"] == ref.rsplit("@", 1)[1]
    assert payloads[0]["optional"]["Subject"] == SIGNER and "logIndex" in payloads[0]["optional"]["Bundle"]

    wrong = signet(ref, "--certificate-identity", "bob@example.com", "--certificate-oidc-issuer", ISSUER, *common)
    assert wrong.returncode == 1 and SIGNER in wrong.stderr and "bob@example.com" in wrong.stderr

    as_json = signet(ref, "--certificate-identity-regexp", r".*@example\.com", "--certificate-oidc-issuer", ISSUER,
                     "--output", "json", *common)
    document = json.loads(as_json.stdout)
    assert as_json.returncode == 0 and document["verified"] is True
    assert document["signatures"][0]["signer"] == SIGNER and document["signatures"][0]["logIndex"] is not None

    nobundle = legacy(registry, kit, "vi/cli-nobundle", drop_bundle=True)
    via_rekor = signet(nobundle, "--certificate-identity", SIGNER, "--certificate-oidc-issuer", ISSUER,
                       "--rekor-url", rekor_server.url, *common)
    assert via_rekor.returncode == 0, via_rekor.stderr

    unsigned = signet(f"{registry.host}/vi/cli@sha256:{'cd' * 32}", "--certificate-identity", SIGNER,
                      "--certificate-oidc-issuer", ISSUER, *common)
    assert unsigned.returncode == 1 and "no signatures found" in unsigned.stderr

    bad = signet("UPPER//bad@@ref", "--certificate-identity", SIGNER, "--certificate-oidc-issuer", ISSUER, *common)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr

    with status_server(500) as host:
        broken = signet(f"{host}/vi/app@sha256:{'ab' * 32}", "--certificate-identity", SIGNER,
                        "--certificate-oidc-issuer", ISSUER, *common)
    assert broken.returncode == 1 and "infrastructure error" in broken.stderr
