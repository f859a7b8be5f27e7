"""TrustRoot ``sigstoreKeys`` (policy-controller's bring-your-own keys) → a trusted_root.json the verifier uses."""

from __future__ import annotations

import base64
import copy
import json
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key

from tests.sigstore_kit.instance import SigstoreKit
from webhook.policy import load_documents
from webhook.policy.sigstore_keys import convert
from webhook.verify.certs import CertificateVerifier
from webhook.verify.trustroot import TrustedRoot


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return SigstoreKit.create(seed_entries=1)


def key_pem(entry: dict[str, Any]) -> str:
    der = base64.b64decode(entry["publicKey"]["rawBytes"])
    return load_der_public_key(der).public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def sigstore_keys(kit: SigstoreKit) -> dict[str, Any]:
    """The kit's keys written as policy-controller's sigstoreKeys (base64 of PEM, as its []byte fields)."""
    root = kit.trusted_root()
    chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in (kit.ca.intermediate, kit.ca.root))
    tsa_chain = "".join(c.public_bytes(Encoding.PEM).decode() for c in (kit.tsa.leaf, kit.tsa.root))
    return {
        "certificateAuthorities": [{"subject": {"organization": "kit", "commonName": "fulcio"},
                                    "uri": "https://fulcio.example", "certChain": b64(chain)}],
        "tLogs": [{"baseURL": "https://rekor.example", "hashAlgorithm": "sha-256",
                   "publicKey": b64(key_pem(root["tlogs"][0]))}],
        "ctLogs": [{"baseURL": "https://ctfe.example", "hashAlgorithm": "sha-256",
                    "publicKey": b64(key_pem(root["ctlogs"][0]))}],
        "timestampAuthorities": [{"subject": {"organization": "kit", "commonName": "tsa"},
                                  "uri": "https://tsa.example", "certChain": b64(tsa_chain)}],
    }


def test_keys_become_a_trusted_root_with_the_logs_own_ids(kit: SigstoreKit) -> None:
    conversion = convert(sigstore_keys(kit))
    assert conversion.errors == []
    root = TrustedRoot.from_json(json.dumps(conversion.document))
    expected = TrustedRoot.from_json(kit.trusted_root_json())
    assert [log.log_id for log in root.tlogs] == [expected.tlogs[0].log_id]
    assert [log.log_id for log in root.ctlogs] == [expected.ctlogs[0].log_id]
    assert root.tlogs[0].base_url == "https://rekor.example"
    assert root.tlogs[0].key_details == "PKIX_ECDSA_P256_SHA_256"
    assert [ca.chain for ca in root.certificate_authorities] == [(kit.ca.intermediate, kit.ca.root)]
    assert [tsa.chain for tsa in root.timestamp_authorities] == [(kit.tsa.leaf, kit.tsa.root)]
    # and the verifier accepts what that CA issued
    leaf = kit.issue_leaf()
    signed_at = leaf.certificate.not_valid_before_utc + timedelta(minutes=1)
    assert CertificateVerifier(root).verify(leaf.certificate, signed_at)


def test_a_trust_root_document_with_sigstore_keys_loads_as_that_trusted_root(kit: SigstoreKit) -> None:
    doc = {"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "byo"},
           "spec": {"sigstoreKeys": sigstore_keys(kit)}}
    result = load_documents([doc])
    assert result.ok, [str(p) for p in result.problems]
    (trust_root,) = result.trust_roots
    assert trust_root.key == "TrustRoot.policy.sigstore.dev/byo"
    assert trust_root.spec.trusted_root == convert(sigstore_keys(kit)).document


def _broken(kit: SigstoreKit, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    keys = copy.deepcopy(sigstore_keys(kit))
    node: Any = keys
    for part in path[:-1]:
        node = node[part]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return keys


@pytest.mark.parametrize(
    ("path", "value", "where", "words"),
    [
        (("certificateAuthorities",), [], "", "at least one of certificateAuthorities and timestampAuthorities"),
        (("certificateAuthorities", 0, "certChain"), "FULCIO_CERT_CHAIN", "certificateAuthorities[0].certChain",
         "base64"),
        (("certificateAuthorities", 0, "certChain"), b64("not pem"), "certificateAuthorities[0].certChain",
         "no PEM certificate"),
        (("certificateAuthorities", 0, "uri"), None, "certificateAuthorities[0].uri", "missing"),
        (("certificateAuthorities", 0, "subject"), {"organization": "kit"},
         "certificateAuthorities[0].subject.commonName", "missing"),
        (("tLogs", 0, "hashAlgorithm"), "md5", "tLogs[0].hashAlgorithm", "sha-256"),
        (("tLogs", 0, "baseURL"), "rekor", "tLogs[0].baseURL", "http(s) base URL"),
        (("ctLogs", 0, "publicKey"), b64("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"),
         "ctLogs[0].publicKey", "not a usable PEM public key"),
    ],
)
def test_policy_controller_validation_rules(kit: SigstoreKit, path: tuple[Any, ...], value: Any, where: str,
                                            words: str) -> None:
    keys: dict[str, Any]
    if path == ("certificateAuthorities",):
        keys = {"certificateAuthorities": []}
    else:
        keys = _broken(kit, path, value)
    conversion = convert(keys)
    assert conversion.document == {}
    assert any(p == where and words in m for p, m in conversion.errors), conversion.errors


def test_a_tsa_chain_holds_at_most_one_leaf(kit: SigstoreKit) -> None:
    leaves = "".join(c.public_bytes(Encoding.PEM).decode() for c in (kit.tsa.leaf, kit.issue_leaf().certificate))
    conversion = convert(_broken(kit, ("timestampAuthorities", 0, "certChain"), b64(leaves)))
    assert conversion.errors == [("timestampAuthorities[0].certChain",
                                  "certificate chain must contain at most one TSA certificate")]


def test_errors_name_the_field_of_the_trust_root_document(kit: SigstoreKit) -> None:
    doc = {"apiVersion": "policy.sigstore.dev/v1alpha1", "kind": "TrustRoot", "metadata": {"name": "byo"},
           "spec": {"sigstoreKeys": _broken(kit, ("tLogs", 0, "publicKey"), "REKOR_PUBLIC_KEY")}}
    result = load_documents([doc])
    assert not result.trust_roots
    assert [(p.path, p.name) for p in result.problems] == [("spec.sigstoreKeys.tLogs[0].publicKey", "byo")]
