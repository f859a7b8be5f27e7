"""Trust an authority chooses: its own CA (``caCert``), SCTs waived, a TSA's timestamp required, logs from a TrustRoot.

Every case is a real signature from a signing kit in the in-memory registry, allowed or denied by
what the authority says; and a ``trustRootRef`` means the TrustRoot of the referring object's API
group (policy-controller's for its documents, Signet's for Signet's).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.sigstore_kit import SigstoreKit
from tests.sigstore_kit.ca import FulcioCA, SigningCertificate
from tests.sigstore_kit.ctlog import CTLog
from tests.unit.decision.features import (
    HOST,
    ISSUER,
    REPO,
    SIGNER,
    Rig,
    default_kit,
    keyless_policy,
    load_policies,
    put_sig,
    rigs,
    sign,
    trust_root_doc,
)
from tests.unit.oci.fake_registry import FakeRegistry
from tests.unit.policy.test_sigstore_keys import sigstore_keys

pytestmark = pytest.mark.anyio


@pytest.fixture
async def rig() -> AsyncIterator[Callable[..., Rig]]:
    async for build in rigs():
        yield build


@pytest.fixture(scope="module")
def corp_ca() -> FulcioCA:
    """A company's own CA (root and intermediate), unknown to any Sigstore trust root."""
    return FulcioCA.create(CTLog(base_url="https://ct.corp.example"), organization="corp.example")


@pytest.fixture(scope="module")
def other_kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=1)


def pem(*certificates: object) -> str:
    return "".join(c.public_bytes(Encoding.PEM).decode() for c in certificates)  # type: ignore[attr-defined]


def indented(text: str, spaces: int) -> str:
    return "\n".join(" " * spaces + line for line in text.strip().splitlines())


def ca_policy(data: str, *, ignore_sct: bool = True, rekor: bool = False, signature_format: str = "") -> str:
    extra = f"        ca-cert:\n          data: |\n{indented(data, 12)}\n"
    extra += "        insecureIgnoreSCT: true\n" if ignore_sct else ""
    authority_extra = "      ctlog: {url: 'https://rekor.example'}\n" if rekor else ""
    authority_extra += f"      signatureFormat: {signature_format}\n" if signature_format else ""
    return keyless_policy(api_version="policy.sigstore.dev/v1alpha1", keyless_extra=extra,
                          authority_extra=authority_extra)


def signed_by(fake: FakeRegistry, leaf: SigningCertificate, *, seed: bytes, kit: SigstoreKit | None = None,
              **options: object) -> str:
    digest = fake.put_image(REPO, None, seed=seed)
    options.setdefault("tlog", False)
    put_sig(fake, digest, sign(kit or default_kit(), digest, leaf=leaf, **options))
    return f"{HOST}/{REPO}@{digest}"


# -- keyless.ca-cert: bring your own PKI ------------------------------------------------------------

async def test_certificates_of_the_given_ca_are_accepted_without_a_log(rig: Callable[..., Rig],
                                                                       corp_ca: FulcioCA) -> None:
    fake = FakeRegistry()
    image = signed_by(fake, corp_ca.issue_leaf(SIGNER, ISSUER, sct="none"), seed=b"corp")
    fulcio = signed_by(fake, default_kit().issue_leaf(SIGNER, ISSUER), seed=b"fulcio", tlog=True)
    r = rig(load_policies(ca_policy(pem(corp_ca.intermediate, corp_ca.root))), fake)
    allowed = await r.one(image)
    assert allowed.verdict == "allow" and allowed.signer == SIGNER, allowed.reason
    # the Sigstore CA is not the one this authority trusts
    denied = await r.one(fulcio)
    assert denied.verdict == "deny" and "certificate chain" in denied.reason
    # the default authority (Fulcio, with a log) refuses the corporate certificate
    plain = rig(load_policies(keyless_policy()), fake)
    assert (await plain.one(image)).verdict == "deny"


async def test_each_given_certificate_is_an_anchor_of_its_own(rig: Callable[..., Rig], corp_ca: FulcioCA) -> None:
    fake = FakeRegistry()
    by_intermediate = signed_by(fake, corp_ca.issue_leaf(SIGNER, ISSUER, sct="none"), seed=b"by-int")
    by_root = signed_by(fake, corp_ca.issue_leaf(SIGNER, ISSUER, sct="none", issued_by_root=True), seed=b"by-root")
    root_only = rig(load_policies(ca_policy(pem(corp_ca.root))), fake)
    assert (await root_only.one(by_root)).verdict == "allow"
    # as with a Go certificate pool of roots: the intermediate must be listed to anchor its leaves
    assert (await root_only.one(by_intermediate)).verdict == "deny"


async def test_without_a_log_the_certificate_must_be_valid_now(rig: Callable[..., Rig], corp_ca: FulcioCA) -> None:
    fake = FakeRegistry()
    earlier = datetime.now(UTC) - timedelta(hours=1)
    expired = signed_by(fake, corp_ca.issue_leaf(SIGNER, ISSUER, sct="none", not_before=earlier), seed=b"old")
    r = rig(load_policies(ca_policy(pem(corp_ca.intermediate))), fake)
    denied = await r.one(expired)
    assert denied.verdict == "deny" and "certificate chain" in denied.reason


async def test_the_sct_is_checked_unless_waived(rig: Callable[..., Rig], corp_ca: FulcioCA) -> None:
    fake = FakeRegistry()
    no_sct = signed_by(fake, corp_ca.issue_leaf(SIGNER, ISSUER, sct="none"), seed=b"no-sct")
    corp_sct = signed_by(fake, corp_ca.issue_leaf(SIGNER, ISSUER), seed=b"corp-sct")  # a CT log no root knows
    strict = rig(load_policies(ca_policy(pem(corp_ca.intermediate), ignore_sct=False)), fake)
    for image in (no_sct, corp_sct):
        denied = await strict.one(image)
        assert denied.verdict == "deny" and "SCT" in denied.reason, denied.reason
    waived = rig(load_policies(ca_policy(pem(corp_ca.intermediate))), fake)
    assert [(await waived.one(i)).verdict for i in (no_sct, corp_sct)] == ["allow", "allow"]


async def test_a_ca_cert_authority_with_a_log_requires_the_entry(rig: Callable[..., Rig]) -> None:
    kit = default_kit()
    fake = FakeRegistry()
    unlogged = signed_by(fake, kit.issue_leaf(SIGNER, ISSUER), seed=b"unlogged")
    logged = signed_by(fake, kit.issue_leaf(SIGNER, ISSUER), seed=b"logged", tlog=True)
    r = rig(load_policies(ca_policy(pem(kit.ca.intermediate), rekor=True)), fake)
    assert (await r.one(logged)).verdict == "allow"
    denied = await r.one(unlogged)
    assert denied.verdict == "deny" and "transparency log" in denied.reason


async def test_ca_certificates_from_a_secret_are_part_of_the_verdict(rig: Callable[..., Rig],
                                                                      corp_ca: FulcioCA) -> None:
    fake = FakeRegistry()
    image = signed_by(fake, corp_ca.issue_leaf(SIGNER, ISSUER, sct="none"), seed=b"secret-ca")
    held = {"pem": pem(corp_ca.intermediate)}
    asked: list[tuple[str | None, str]] = []

    async def read(namespace: str | None, name: str) -> str:
        asked.append((namespace, name))
        return held["pem"]

    extra = "        caCert: {secretRef: {name: corp-ca}}\n        insecureIgnoreSCT: true\n"
    r = rig(load_policies(keyless_policy(keyless_extra=extra)), fake, ca_certificates=read)
    assert (await r.one(image)).verdict == "allow"
    assert asked == [(None, "corp-ca")]  # a ClusterImagePolicy's Secret is in Signet's namespace
    fresh = rig(load_policies(keyless_policy(keyless_extra=extra)), fake, ca_certificates=read)
    held["pem"] = pem(default_kit().ca.intermediate)  # rotated to a CA that did not issue it
    assert (await fresh.one(image)).verdict == "deny"

    async def unreadable(namespace: str | None, name: str) -> str:
        raise LookupError("no such Secret")

    missing = rig(load_policies(keyless_policy(keyless_extra=extra)), fake, ca_certificates=unreadable)
    denied = await missing.one(image)
    assert denied.verdict == "deny" and "caCert.secretRef are not available" in denied.reason
    assert "corp-ca" not in denied.reason


# -- rfc3161timestamp --------------------------------------------------------------------------------

def tsa_policy(root_name: str = "corp-tsa") -> str:
    return keyless_policy(authority_extra=f"      rfc3161timestamp: {{trustRootRef: {root_name}}}\n")


async def test_a_timestamp_from_the_trust_roots_authorities_is_required(rig: Callable[..., Rig],
                                                                        other_kit: SigstoreKit) -> None:
    kit = default_kit()
    fake = FakeRegistry()
    stamped = signed_by(fake, kit.issue_leaf(SIGNER, ISSUER), seed=b"stamped", tsa=True, tlog=True)
    stamped_unlogged = signed_by(fake, kit.issue_leaf(SIGNER, ISSUER), seed=b"tsa-only", tsa=True)
    unstamped = signed_by(fake, kit.issue_leaf(SIGNER, ISSUER), seed=b"unstamped", tlog=True)
    foreign = signed_by(fake, kit.issue_leaf(SIGNER, ISSUER), seed=b"foreign-tsa", kit=other_kit, tsa=True)
    r = rig(load_policies(tsa_policy(), trust_root_doc("corp-tsa", kit.trusted_root())), fake)
    assert (await r.one(stamped)).verdict == "allow"
    # as in policy-controller, the timestamp dates the signature: no transparency log is needed
    assert (await r.one(stamped_unlogged)).verdict == "allow"
    missing = await r.one(unstamped)
    assert missing.verdict == "deny" and "no RFC 3161 timestamp" in missing.reason
    assert (await r.one(foreign)).verdict == "deny"
    # the TSAs are the named TrustRoot's, not the default trust root's
    theirs = rig(load_policies(tsa_policy(), trust_root_doc("corp-tsa", other_kit.trusted_root())), fake)
    assert (await theirs.one(foreign)).verdict == "allow"
    assert (await theirs.one(stamped_unlogged)).verdict == "deny"


async def test_a_trust_root_without_timestamp_authorities_satisfies_no_one(rig: Callable[..., Rig]) -> None:
    kit = default_kit()
    fake = FakeRegistry()
    stamped = signed_by(fake, kit.issue_leaf(SIGNER, ISSUER), seed=b"stamped", tsa=True, tlog=True)
    no_tsas = {**kit.trusted_root(), "timestampAuthorities": []}
    r = rig(load_policies(tsa_policy(), trust_root_doc("corp-tsa", no_tsas)), fake)
    denied = await r.one(stamped)
    assert denied.verdict == "deny" and "has no timestamp authorities" in denied.reason
    absent = rig(load_policies(tsa_policy("nowhere")), fake)
    assert "TrustRoot 'nowhere' does not exist" in (await absent.one(stamped)).reason


# -- logs from another TrustRoot -------------------------------------------------------------------

@pytest.mark.parametrize(("field", "words"), [("rekor", "transparency log"), ("ctlog", "SCT")])
async def test_logs_come_from_the_trust_root_an_authority_names(rig: Callable[..., Rig], other_kit: SigstoreKit,
                                                                field: str, words: str) -> None:
    fake = FakeRegistry()
    digest = fake.put_image(REPO, None, seed=b"logs")
    put_sig(fake, digest, sign(default_kit(), digest))
    image = f"{HOST}/{REPO}@{digest}"
    keyless_extra = f"        {field}: {{trustRootRef: logs}}\n"
    ours = rig(load_policies(keyless_policy(keyless_extra=keyless_extra),
                             trust_root_doc("logs", default_kit().trusted_root())), fake)
    assert (await ours.one(image)).verdict == "allow"
    theirs = rig(load_policies(keyless_policy(keyless_extra=keyless_extra),
                               trust_root_doc("logs", other_kit.trusted_root())), fake)
    denied = await theirs.one(image)
    assert denied.verdict == "deny" and words in denied.reason, denied.reason


# -- a trustRootRef means the TrustRoot of the referring object's group ------------------------------

async def test_trust_roots_of_one_name_in_both_groups_never_stand_for_each_other(
        rig: Callable[..., Rig], other_kit: SigstoreKit) -> None:
    fake = FakeRegistry()
    digest = fake.put_image(REPO, None, seed=b"groups")
    put_sig(fake, digest, sign(default_kit(), digest))
    image = f"{HOST}/{REPO}@{digest}"
    signets = trust_root_doc("corp", other_kit.trusted_root())  # another Sigstore instance
    policy_controllers = json.dumps({"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot",
                                     "metadata": {"name": "corp"}, "spec": {"sigstoreKeys":
                                                                            sigstore_keys(default_kit())}})
    keyless_extra = "        trustRootRef: corp\n"
    signet_policy = keyless_policy(keyless_extra=keyless_extra)
    pc_policy = keyless_policy(api_version="policy.sigstore.dev/v1alpha1", keyless_extra=keyless_extra)
    for policy, verdict in ((signet_policy, "deny"), (pc_policy, "allow")):
        r = rig(load_policies(policy, signets, policy_controllers), fake)
        assert (await r.one(image)).verdict == verdict, policy


async def test_a_bundle_from_the_given_ca_needs_no_log_either(rig: Callable[..., Rig], corp_ca: FulcioCA) -> None:
    fake = FakeRegistry(referrers_api=True)
    digest = fake.put_image(REPO, None, seed=b"corp-bundle")
    signed = default_kit().sign_image_bundle(digest, leaf=corp_ca.issue_leaf(SIGNER, ISSUER, sct="none"), rekor=None)
    fake.put_referrer(REPO, digest, signed.to_json())
    r = rig(load_policies(ca_policy(pem(corp_ca.intermediate), signature_format="bundle")), fake)
    allowed = await r.one(f"{HOST}/{REPO}@{digest}")
    assert allowed.verdict == "allow", allowed.reason
    # the same bundle under the default authority: no log entry, no Fulcio chain
    assert (await rig(load_policies(keyless_policy()), fake).one(f"{HOST}/{REPO}@{digest}")).verdict == "deny"
