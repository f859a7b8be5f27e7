"""The attestation examples in policies/examples decide as their comments say (their globs and keys swapped
for the test registry and a test key, everything else as shipped)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.sigstore_kit import default_kit
from tests.sigstore_kit.keys import new_p256, public_pem
from tests.unit.decision.attesting import legacy, put_att
from tests.unit.engine_harness import REPO, Harness
from tests.unit.oci.fake_registry import HOST
from webhook.policy.loader import load_documents
from webhook.policy.matching import PolicySet
from webhook.policy.models import NoMatchPolicy

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[3] / "policies" / "examples"
IMAGE = f"{HOST}/{REPO}:v1"
GITHUB = "https://token.actions.githubusercontent.com"
RELEASE = "https://github.com/acme/app/.github/workflows/release.yml@refs/tags/v1.4.0"
PIPELINE = "https://github.com/example-platform/pipelines/.github/workflows/build.yml@refs/heads/main"
# Fulcio claims by OID suffix: 11 runnerEnvironment, 12 sourceRepositoryURI.
GITHUB_HOSTED = {11: "github-hosted", 12: "https://github.com/acme/app"}
SCAN_KEY = new_p256()


def example(name: str, **swap: Any) -> PolicySet:
    [document] = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    document["spec"]["images"] = [{"glob": f"{HOST}/**"}]
    for authority in document["spec"]["authorities"]:
        if "key" in authority and "key" in swap:
            authority["key"]["data"] = swap["key"]
    result = load_documents([document])
    assert result.ok, result.problems
    return PolicySet.from_load_result(result, no_match_policy=NoMatchPolicy.DENY)


def provenance(ref: str, repository: str = "https://github.com/acme/app") -> dict[str, Any]:
    return {"buildDefinition": {"buildType": "https://actions.github.io/buildtypes/workflow/v1",
                                "externalParameters": {"workflow": {"ref": ref, "repository": repository,
                                                                    "path": ".github/workflows/release.yml"}}},
            "runDetails": {"builder": {"id": "https://github.com/actions/runner/github-hosted"}}}


@pytest.mark.parametrize(("predicate", "claims", "verdict"), [
    (provenance("refs/tags/v1.4.0"), GITHUB_HOSTED, "allow"),
    (provenance("refs/heads/main"), GITHUB_HOSTED, "deny"),
    (provenance("refs/tags/v1.4.0", "https://github.com/acme/fork"), GITHUB_HOSTED, "deny"),
    (provenance("refs/tags/v1.4.0"), {11: "self-hosted", 12: "https://github.com/acme/app"}, "deny"),
], ids=["release-tag", "branch", "other-repository", "self-hosted-runner"])
async def test_slsa_provenance_from_github_actions_tags(make: Callable[..., Harness], predicate: dict[str, Any],
                                                       claims: dict[int, str], verdict: str) -> None:
    h = make(example("slsa-provenance-github-tags.yaml"))
    digest = h.fake.put_image(REPO, "v1")
    put_att(h.fake, digest, legacy(default_kit(), digest, predicate=predicate, identity=RELEASE, issuer=GITHUB,
                                   claims=claims))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == verdict, outcome.reason


@pytest.mark.parametrize(("predicate_type", "verdict"), [
    ("https://spdx.dev/Document", "allow"), ("https://cyclonedx.org/bom", "allow"),
    ("https://slsa.dev/provenance/v1", "deny")])
async def test_an_sbom_must_exist(make: Callable[..., Harness], predicate_type: str, verdict: str) -> None:
    h = make(example("sbom-required.yaml"))
    digest = h.fake.put_image(REPO, "v1")
    sig = default_kit().sign_image_legacy(digest, repository=f"{HOST}/{REPO}", identity=PIPELINE, issuer=GITHUB)
    _push_sig(h, digest, sig.payload, sig.annotations)
    put_att(h.fake, digest, legacy(default_kit(), digest, predicate_type, {}, identity=PIPELINE, issuer=GITHUB))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == verdict, outcome.reason


def _push_sig(h: Harness, digest: str, payload: bytes, annotations: dict[str, str]) -> None:
    from tests.unit.oci.fake_registry import OCI_MANIFEST, SIMPLE_SIGNING, dumps

    layer = {**h.fake.put_blob(payload), "mediaType": SIMPLE_SIGNING, "annotations": dict(annotations)}
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": h.fake.put_blob(b"{}"), "layers": [layer]}
    h.fake.put_manifest(REPO, dumps(manifest), tag=digest.replace(":", "-") + ".sig")


def scan(age: timedelta, severities: list[str]) -> dict[str, Any]:
    finished = (datetime.now(UTC) - age).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"scanner": {"uri": "pkg:github/aquasecurity/trivy@v0.50.0", "result": {"Results": [
                {"Target": "app", "Vulnerabilities": [{"VulnerabilityID": f"CVE-2026-{i}", "Severity": s}
                                                      for i, s in enumerate(severities)]},
                {"Target": "os"}]}},
            "metadata": {"scanStartedOn": finished, "scanFinishedOn": finished}}


@pytest.mark.parametrize(("scans", "verdict"), [
    ([scan(timedelta(days=1), ["HIGH", "LOW"])], "allow"),
    ([scan(timedelta(days=8), [])], "deny"),
    ([scan(timedelta(days=1), ["CRITICAL"])], "deny"),
    ([scan(timedelta(days=20), ["CRITICAL"]), scan(timedelta(hours=3), ["MEDIUM"])], "allow"),
], ids=["fresh-clean", "stale", "critical", "old-scan-superseded"])
async def test_a_fresh_vulnerability_scan_without_critical_findings(make: Callable[..., Harness],
                                                                   scans: list[dict[str, Any]], verdict: str) -> None:
    h = make(example("vulnerability-scan-fresh.yaml", key=public_pem(SCAN_KEY.public_key()).decode()))
    digest = h.fake.put_image(REPO, "v1")
    vuln = "https://cosign.sigstore.dev/attestation/vuln/v1"
    put_att(h.fake, digest, *(legacy(default_kit(), digest, vuln, s, key=SCAN_KEY) for s in scans))
    [outcome] = await h.decide(IMAGE)
    assert outcome.verdict == verdict, outcome.reason
