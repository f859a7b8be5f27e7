"""policy-controller documents: the same meaning as there, its validation rules, or refused with why."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from tests.fixtures_path import shared_fixture
from tests.sigstore_kit.instance import SigstoreKit
from tests.unit.policy.policy_docs import PEM_P256, make_cip
from webhook.policy import Mode, load_documents, load_file
from webhook.policy.authorities import SignatureFormat
from webhook.policy.loader import LoadResult

PC_V1ALPHA1 = "policy.sigstore.dev/v1alpha1"
PC_V1BETA1 = "policy.sigstore.dev/v1beta1"
SYSTEM = "signet-system"


def _pc_policy(authorities: list[dict[str, Any]], api_version: str = PC_V1ALPHA1, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": "ClusterImagePolicy", "metadata": {"name": "pc"},
            "spec": {"images": [{"glob": "ghcr.io/acme/**"}], "authorities": authorities, **spec}}


def load(doc: dict[str, Any]) -> LoadResult:
    return load_documents([doc], source="pc.yaml", system_namespace=SYSTEM)


KEYLESS = {"url": "https://fulcio.sigstore.dev",
           "identities": [{"issuer": "https://accounts.google.com", "subjectRegExp": ".*@acme.com"}]}
IDENTITIES = KEYLESS["identities"]
KIT = SigstoreKit.create(seed_entries=1)
CA_PEM = KIT.ca.root.public_bytes(Encoding.PEM).decode()


@pytest.mark.parametrize("api_version", [PC_V1ALPHA1, PC_V1BETA1])
def test_supported_features_keep_their_meaning(api_version: str) -> None:
    doc = _pc_policy(
        [{"keyless": KEYLESS, "ctlog": {"url": "https://rekor.sigstore.dev"}},
         {"name": "pem", "key": {"data": PEM_P256, "hashAlgorithm": "sha384"}},
         {"static": {"action": "pass"}}],
        api_version=api_version, mode="warn")
    result = load(doc)
    assert result.ok and not result.warnings, result.problems
    (policy,) = result.cluster_policies
    assert policy.origin == f"pc.yaml ({api_version})" and policy.regexp_mode == "search"
    assert policy.key == "ClusterImagePolicy.policy.sigstore.dev/pc"
    assert policy.spec.mode is Mode.WARN
    keyless, key, static = policy.spec.authorities
    assert [a.name for a in policy.spec.authorities] == ["authority-0", "pem", "authority-2"]
    assert keyless.keyless is not None and keyless.keyless.identities[0].subject_reg_exp == ".*@acme.com"
    assert keyless.keyless.rekor is not None and keyless.keyless.rekor.url == "https://rekor.sigstore.dev"
    assert keyless.keyless.requires_log_entry
    assert key.key is not None and key.key.hash_algorithm.value == "sha384"
    assert static.static is not None and static.static.action == "pass"
    # policy-controller reads only cosign's .sig signatures unless told otherwise
    assert [a.signature_format for a in policy.spec.authorities] == [SignatureFormat.LEGACY] * 2 + [None]


# -- defaults and spellings: the same document means the same policy ------------------------------

@pytest.mark.parametrize(
    ("written", "meant"),
    [("SHA512", "sha512"), (" Sha384 ", "sha384"), ("sha224", "sha224"), ("", "sha256"), (None, "sha256")],
)
def test_hash_algorithm_in_any_case_policy_controller_accepts(written: str | None, meant: str) -> None:
    key: dict[str, Any] = {"data": PEM_P256} | ({"hashAlgorithm": written} if written is not None else {})
    (policy,) = load(_pc_policy([{"key": key}])).cluster_policies
    assert policy.spec.authorities[0].key is not None and policy.spec.authorities[0].key.hash_algorithm == meant


@pytest.mark.parametrize(("mode", "meant"), [("", Mode.ENFORCE), (None, Mode.ENFORCE), ("warn", Mode.WARN)])
def test_empty_mode_is_enforce(mode: str | None, meant: Mode) -> None:
    (policy,) = load(_pc_policy([{"static": {"action": "pass"}}], mode=mode)).cluster_policies
    assert policy.spec.mode is meant


def test_empty_authority_names_get_policy_controllers_default() -> None:
    doc = _pc_policy([{"name": "", "static": {"action": "pass"}}, {"name": "second", "static": {"action": "fail"}},
                      {"static": {"action": "pass"}}])
    (policy,) = load(doc).cluster_policies
    assert [a.name for a in policy.spec.authorities] == ["authority-0", "second", "authority-2"]


@pytest.mark.parametrize(("written", "meant"), [(None, "legacy"), ("", "legacy"), ("legacy", "legacy"),
                                                ("bundle", "bundle")])
def test_signature_format(written: str | None, meant: str) -> None:
    authority: dict[str, Any] = {"keyless": KEYLESS} | ({"signatureFormat": written} if written is not None else {})
    (policy,) = load(_pc_policy([authority])).cluster_policies
    assert policy.spec.authorities[0].signature_format == meant


def test_unknown_signature_format_is_refused() -> None:
    result = load(_pc_policy([{"keyless": KEYLESS, "signatureFormat": "simplesigning"}]))
    assert [p.path for p in result.problems] == ["spec.authorities[0].signatureFormat"]


# -- policy-controller's validation rules, one row each: valid, and invalid at the path it names ----

def _key_secret(namespace: str | None) -> dict[str, Any]:
    ref = {"name": "cosign-key"} | ({"namespace": namespace} if namespace is not None else {})
    return {"key": {"secretRef": ref}}


def _ca_secret(namespace: str) -> dict[str, Any]:
    return {"keyless": {"identities": IDENTITIES, "ca-cert": {"secretRef": {"name": "ca", "namespace": namespace}}}}


RULES: list[tuple[str, dict[str, Any], dict[str, Any], str | None]] = [
    # (rule, authority, spec, path of the error; None: valid)
    ("secretRef in Signet's namespace", _key_secret(SYSTEM), {}, None),
    ("secretRef without namespace", _key_secret(None), {}, None),
    ("secretRef with empty namespace", _key_secret(""), {}, None),
    ("secretRef in another namespace", _key_secret("cosign-system"), {},
     "spec.authorities[0].key.secretRef.namespace"),
    ("ca-cert secretRef in another namespace", _ca_secret("team-a"), {},
     "spec.authorities[0].keyless.ca-cert.secretRef.namespace"),
    ("ca-cert secretRef in Signet's namespace", _ca_secret(SYSTEM), {}, None),
    ("static alone", {"static": {"action": "fail"}}, {}, None),
    ("static with ctlog", {"static": {"action": "pass"}, "ctlog": {"url": "https://rekor.sigstore.dev"}}, {},
     "spec.authorities[0].ctlog"),
    ("static with source", {"static": {"action": "pass"}, "source": [{"oci": "ghcr.io/acme/sigs"}]}, {},
     "spec.authorities[0]"),
    ("static with rfc3161timestamp", {"static": {"action": "pass"}, "rfc3161timestamp": {"trustRootRef": "tsa"}},
     {}, "spec.authorities[0]"),
    ("one source", {"keyless": KEYLESS, "source": [{"oci": "ghcr.io/acme/sigs"}]}, {}, None),
    ("two sources", {"keyless": KEYLESS, "source": [{"oci": "ghcr.io/a/b"}, {"oci": "ghcr.io/c/d"}]}, {},
     "spec.authorities[0].source"),
    ("source.oci not a repository", {"keyless": KEYLESS, "source": [{"oci": "acme/sigs"}]}, {},
     "spec.authorities[0].source[0].oci"),
    ("source.oci with a tag", {"keyless": KEYLESS, "source": [{"oci": "ghcr.io/acme/sigs:v1"}]}, {},
     "spec.authorities[0].source[0].oci"),
    ("empty pull-secret name", {"keyless": KEYLESS, "source": [{"signaturePullSecrets": [{"name": ""}]}]}, {},
     "spec.authorities[0].source[0].signaturePullSecrets[0].name"),
    ("pull-secret name", {"keyless": KEYLESS, "source": [{"signaturePullSecrets": [{"name": "regcred"}]}]}, {},
     None),
    ("regexp RE2 refuses (lookahead)",
     {"keyless": {"identities": [{"issuer": "https://x", "subjectRegExp": "(?=a)b"}]}}, {},
     "spec.authorities[0].keyless.identities[0].subjectRegExp"),
    ("regexp RE2 refuses (backreference)",
     {"keyless": {"identities": [{"issuerRegExp": r"(a)\1", "subject": "s"}]}}, {},
     "spec.authorities[0].keyless.identities[0].issuerRegExp"),
    ("url and ca-cert together", {"keyless": KEYLESS | {"ca-cert": {"data": CA_PEM}}}, {},
     "spec.authorities[0].keyless"),
    ("ca-cert data not a certificate", {"keyless": {"identities": IDENTITIES, "ca-cert": {"data": PEM_P256}}}, {},
     "spec.authorities[0].keyless.ca-cert.data"),
    ("hashAlgorithm unknown", {"key": {"data": PEM_P256, "hashAlgorithm": "shaINVALID"}}, {},
     "spec.authorities[0].key.hashAlgorithm"),
    ("mode unknown", {"static": {"action": "pass"}}, {"mode": "audit"}, "spec.mode"),
    ("match resource", {"static": {"action": "pass"}}, {"match": [{"group": "apps", "version": "v1",
                                                                    "resource": "deployments"}]}, None),
    ("match resource unknown", {"static": {"action": "pass"}}, {"match": [{"resource": "apple", "version": "v1"}]},
     "spec.match[0].resource"),
    ("match selector without resource", {"static": {"action": "pass"}},
     {"match": [{"selector": {"matchLabels": {"a": "b"}}}]}, "spec.match[0].selector"),
    ("glob invalid", {"static": {"action": "pass"}}, {"images": [{"glob": "["}]}, "spec.images[0].glob"),
    ("authorities empty", {}, {}, "spec.authorities"),
    ("tagPrefix", {"keyless": KEYLESS, "source": [{"oci": "ghcr.io/a/b", "tagPrefix": "team-"}]}, {}, None),
    # Signet's own fields are not part of policy-controller's schema: such a document means nothing there
    ("Signet-only keyless field", {"keyless": KEYLESS | {"extensions": {"sourceRepositoryRef": "refs/tags/v1"}}}, {},
     "spec.authorities[0].keyless.extensions"),
    ("Signet-only spec field", {"static": {"action": "pass"}}, {"multiArch": "everyPlatform"}, "spec.multiArch"),
    ("Signet's spelling of ca-cert", {"keyless": {"identities": IDENTITIES, "caCert": {"data": CA_PEM}}}, {},
     "spec.authorities[0].keyless.caCert"),
]


@pytest.mark.parametrize(("rule", "authority", "spec", "path"), RULES, ids=[r[0] for r in RULES])
def test_policy_controller_validation_rules(rule: str, authority: dict[str, Any], spec: dict[str, Any],
                                           path: str | None) -> None:
    result = load(_pc_policy([authority] if authority else [], **spec))
    if path is None:
        assert result.ok and len(result.as_written) == 1, [str(p) for p in result.problems]
        return
    assert not result.as_written, rule
    assert [p.path for p in result.problems] == [path], [str(p) for p in result.problems]


def test_the_namespace_rule_follows_the_namespace_signet_is_told() -> None:
    doc = _pc_policy([_key_secret("cosign-system")])
    assert load_documents([doc], system_namespace="cosign-system").ok
    message = load_documents([doc], system_namespace="signet").problems[0].message
    assert "'cosign-system'" in message and "'signet'" in message


@pytest.mark.parametrize(
    ("authority", "path", "words"),
    [
        ({"key": {"kms": "awskms:///arn:aws:kms:us-east-1:1:key/1"}}, "spec.authorities[0].key.kms",
         "cloud credentials and network access"),
        ({"keyless": {"identities": IDENTITIES, "ca-cert": {"kms": "gcpkms://x"}}},
         "spec.authorities[0].keyless.ca-cert.kms", "KMS keys are not supported"),
    ],
)
def test_kms_stays_refused_with_its_reason(authority: dict[str, Any], path: str, words: str) -> None:
    result = load(_pc_policy([authority]))
    assert not result.as_written and len(result.policies) == 1  # its images stay covered, and denied
    assert [p.path for p in result.problems] == [path] and words in result.problems[0].message


def test_image_regex_is_refused() -> None:
    result = load(_pc_policy([{"keyless": KEYLESS}], images=[{"glob": "ghcr.io/**"}, {"regex": "ghcr.io/.*"}]))
    assert [p.path for p in result.problems] == ["spec.images[1].regex"]


# -- loaded instead of refused -------------------------------------------------------------------

def test_match_source_timestamp_and_bring_your_own_ca_load() -> None:
    doc = _pc_policy(
        [{"keyless": {"identities": IDENTITIES, "ca-cert": {"data": CA_PEM}, "insecureIgnoreSCT": True,
                      "trustRootRef": "corp"},
          "source": [{"oci": "registry.corp.example/sigs", "signaturePullSecrets": [{"name": "regcred"}],
                      "tagPrefix": "v2-"}],
          "rfc3161timestamp": {"trustRootRef": "corp-tsa"}, "signatureFormat": "bundle"}],
        api_version=PC_V1BETA1,
        match=[{"group": "apps", "version": "*", "resource": "deployments",
                "selector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}}])
    result = load(doc)
    assert result.ok, [str(p) for p in result.problems]
    (policy,) = result.cluster_policies
    (authority,) = policy.spec.authorities
    assert authority.keyless is not None and authority.keyless.ca_cert is not None
    assert authority.keyless.ca_cert.data == CA_PEM and authority.keyless.insecure_ignore_sct
    assert not authority.keyless.requires_log_entry  # no ctlog: no transparency log, as policy-controller
    source = authority.signature_source
    assert source is not None and source.repository == "registry.corp.example/sigs" and source.tag_prefix == "v2-"
    assert [s.name for s in source.signature_pull_secrets] == ["regcred"]
    assert authority.rfc3161timestamp is not None and authority.trust_root_refs() == ("corp", "corp-tsa")
    assert authority.signature_format is SignatureFormat.BUNDLE
    (entry,) = policy.spec.match
    assert entry.matches("apps", "v1", "deployments", {"tier": "web"})
    assert not entry.matches("apps", "v1", "deployments", {"tier": "db"})


def test_ca_cert_with_ctlog_requires_a_log_entry() -> None:
    authority = {"keyless": {"identities": IDENTITIES, "ca-cert": {"data": CA_PEM}},
                 "ctlog": {"url": "https://rekor.corp.example"}}
    (policy,) = load(_pc_policy([authority])).cluster_policies
    keyless = policy.spec.authorities[0].keyless
    assert keyless is not None and keyless.requires_log_entry and keyless.rekor is not None


def test_signets_own_and_policy_controllers_objects_of_one_name_are_both_in_force() -> None:
    ours = make_cip("pc")
    result = load_documents([ours, _pc_policy([{"static": {"action": "fail"}}])], system_namespace=SYSTEM)
    assert result.ok, [str(p) for p in result.problems]
    assert sorted(p.key for p in result.cluster_policies) == ["ClusterImagePolicy.policy.sigstore.dev/pc",
                                                              "ClusterImagePolicy/pc"]


def test_a_fail_closed_stand_in_keeps_the_policy_controller_key() -> None:
    result = load(_pc_policy([{"key": {"kms": "gcpkms://x"}}]))
    assert result.fail_closed == ("ClusterImagePolicy.policy.sigstore.dev/pc",)


def test_model_errors_use_policy_controllers_field_names() -> None:
    # a Rekor URL that is not a URL is reported where the document wrote it: ctlog, not keyless.rekor
    result = load(_pc_policy([{"keyless": KEYLESS, "ctlog": {"url": "rekor"}}]))
    assert [p.path for p in result.problems] == ["spec.authorities[0].ctlog.url"]


def test_attestations_are_checked_instead_of_signatures_as_in_policy_controller() -> None:
    doc = _pc_policy([{"keyless": KEYLESS, "attestations": [{"name": "sbom", "predicateType": "spdxjson"}]}])
    result = load(doc)
    assert result.ok, [str(p) for p in result.problems]
    authority = result.cluster_policies[0].spec.authorities[0]
    assert authority.require_signature is False and [a.name for a in authority.attestations] == ["sbom"]


def test_spec_policy_is_translated_with_its_inputs() -> None:
    rego = "package sigstore\nisCompliant = true\n"
    doc = _pc_policy([{"keyless": KEYLESS}], policy={"type": "rego", "data": rego, "includeSpec": True,
                                                     "includeObjectMeta": True, "fetchConfigFile": True})
    result = load(doc)
    assert result.ok, [str(p) for p in result.problems]
    level = result.cluster_policies[0].spec.policy
    assert level is not None and level.type == "rego" and level.data == rego
    assert level.include_spec and level.include_object_meta and not level.include_type_meta and level.fetch_config_file


def test_cue_policies_stay_refused_where_they_are_written() -> None:
    result = load(_pc_policy([{"keyless": KEYLESS}], policy={"type": "cue", "data": "isCompliant: true"}))
    assert [p.path for p in result.problems] == ["spec.policy"]
    assert "type: cue is not supported" in result.problems[0].message


def test_a_duplicate_authority_name_is_named_in_the_message() -> None:
    result = load(_pc_policy([{"name": "twice", "static": {"action": "pass"}},
                              {"name": "twice", "static": {"action": "fail"}}]))
    assert [p.message for p in result.problems] == ["authority name 'twice' is used twice"]


def test_other_policy_controller_kinds_are_not_policies() -> None:
    doc = {"apiVersion": PC_V1ALPHA1, "kind": "ImagePolicy", "metadata": {"name": "x"}, "spec": {}}
    assert "not a Signet policy" in str(load_documents([doc]).problems[0])


# -- TrustRoot --------------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


SIGNED_ROOT = b64(json.dumps({"signed": {"_type": "root"}, "signatures": [{"keyid": "k", "sig": "00"}]}).encode())


def _trust_root(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": PC_V1ALPHA1, "kind": "TrustRoot", "metadata": {"name": "corp"}, "spec": spec}


def test_trust_root_layout_fields_load_with_policy_controllers_defaults() -> None:
    remote = load(_trust_root({"remote": {"mirror": "https://tuf.corp.example", "root": SIGNED_ROOT,
                                          "targets": "repo/targets", "trustedRootTarget": "corp_root.json"}}))
    (trust_root,) = remote.trust_roots
    assert trust_root.key == "TrustRoot.policy.sigstore.dev/corp"
    assert trust_root.spec.remote is not None and trust_root.spec.remote.targets == "repo/targets"
    assert trust_root.spec.remote.trusted_root_target == "corp_root.json"
    tarball = b64(b"\x1f\x8b" + b"\0" * 16)
    (default,) = load(_trust_root({"repository": {"root": SIGNED_ROOT, "mirrorFS": tarball}})).trust_roots
    assert default.spec.repository is not None
    assert (default.spec.repository.targets, default.spec.repository.trusted_root_target) == (
        "targets", "trusted_root.json")


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        ({"remote": {"mirror": "https://tuf.example", "root": b64(b'{"signed": {}}')}}, "spec.remote.root",
         "missing signatures"),
        ({"repository": {"root": b64(b'{"signed": {}}'), "mirrorFS": b64(b"\x1f\x8b" + b"\0" * 16)}},
         "spec.repository.root", "missing signatures"),
        ({"remote": {"mirror": "https://tuf.example", "root": SIGNED_ROOT, "targets": "../x"}},
         "spec.remote.targets", "pattern"),
        ({"remote": {"mirror": "https://tuf.example", "root": SIGNED_ROOT, "trustedRootTarget": "a/b"}},
         "spec.remote.trustedRootTarget", "pattern"),
        ({"sigstoreKeys": {}}, "spec.sigstoreKeys", "at least one of certificateAuthorities"),
        ({"trustedRoot": {"mediaType": "x"}}, "spec.trustedRoot", "not part of policy-controller's schema"),
    ],
)
def test_trust_root_refusals_name_the_field(spec: dict[str, Any], path: str, words: str) -> None:
    result = load(_trust_root(spec))
    assert not result.trust_roots
    assert [p.path for p in result.problems] == [path] and words in result.problems[0].message


# -- the real policy-controller test data ------------------------------------------------------------

TESTDATA = ("policy-controller", "test", "testdata")
# policy-controller's e2e tests run it in cosign-system: its documents name Secrets there.
PC_NAMESPACE = "cosign-system"
# The reasons Signet may refuse a document policy-controller accepts.
ALLOWED_REFUSALS = ("KMS keys are not supported", "type: cue is not supported")
# e2e templates: placeholders (TUF_MIRROR, ROOT_JSON, ...) that policy-controller refuses as well.
TEMPLATES = {"trustroot/e2e/bring-your-own-keys.yaml", "trustroot/e2e/with-remote.yaml",
             "trustroot/e2e/with-repository.yaml", "trustroot/e2e/with-tsa.yaml"}


def _documents() -> list[Path]:
    root = shared_fixture("policy-controller")
    return sorted(p for p in root.rglob("*.yaml") if "invalid" not in p.parts
                  and p.name not in ("signed_manifest.yaml", "unsigned_manifest.yaml", "config-sigstore-keys.yaml"))


@pytest.mark.fixtures
def test_every_policy_controller_document_loads_or_is_refused_only_for_kms_and_cue() -> None:
    documents = _documents()
    assert len(documents) > 20
    root = shared_fixture("policy-controller")
    for path in documents:
        relative = str(path.relative_to(root / "test" / "testdata")) if "testdata" in path.parts else path.name
        result = load_file(path, system_namespace=PC_NAMESPACE)
        assert result.policies or result.trust_roots or relative in TEMPLATES, path
        if relative in TEMPLATES:
            assert result.problems and not result.trust_roots, path
            continue
        refused = [p for p in result.problems if not any(r in p.message for r in ALLOWED_REFUSALS)]
        assert refused == [], [str(p) for p in refused]


@pytest.mark.fixtures
def test_policy_controller_valid_policies_load_with_the_same_meaning() -> None:
    directory = shared_fixture(*TESTDATA, "policy-controller")
    sha512 = load_file(directory / "valid" / "valid-policy-hash-algo-sha512.yaml")
    (policy,) = sha512.cluster_policies
    assert policy.spec.images[0].glob == "ghcr.io/sgtcodfish/ace:0.5"
    assert policy.spec.authorities[0].key is not None and policy.spec.authorities[0].key.hash_algorithm == "sha512"
    source = load_file(directory / "valid" / "valid-keyless-with-source.yaml")
    assert source.ok, [str(p) for p in source.problems]
    authority = source.cluster_policies[0].spec.authorities[0]
    assert authority.signature_source is not None and authority.keyless is not None
    assert authority.keyless.ca_cert is not None and authority.keyless.ca_cert.secret_ref is not None
    sigstore_keys = load_file(shared_fixture(*TESTDATA, "trustroot", "valid", "valid-sigstore-keys.yaml"))
    assert sigstore_keys.ok and sigstore_keys.trust_roots[0].spec.trusted_root is not None


@pytest.mark.fixtures
def test_policy_controller_invalid_policies_are_all_rejected() -> None:
    files = sorted(shared_fixture(*TESTDATA, "policy-controller", "invalid").glob("*.yaml"))
    assert len(files) > 20
    for path in files:
        result = load_file(path, system_namespace=PC_NAMESPACE)
        assert not result.as_written, path
        assert all(p.spec.authorities[0].static is not None and p.spec.authorities[0].static.action == "fail"
                   for p in result.policies), path
        assert result.problems and all(p.path for p in result.problems), path


@pytest.mark.fixtures
def test_policy_controller_examples() -> None:
    examples = shared_fixture("policy-controller", "examples", "policies")
    loaded = {p.name: p for f in sorted(examples.glob("*.yaml")) for r in [load_file(f)] for p in r.cluster_policies
              if p.key not in r.fail_closed}
    release = loaded["image-is-signed-by-github-actions"]
    authority = release.spec.authorities[0].keyless
    assert authority is not None and authority.rekor is not None
    assert authority.rekor.url == "https://rekor.sigstore.dev"
    assert authority.identities[0].issuer == "https://token.actions.githubusercontent.com"
    # CUE and KMS examples are refused
    assert "image-policy-typemeta-allow-only-pods" not in loaded
    assert "image-is-signed-by-aws-kms-key" not in loaded
