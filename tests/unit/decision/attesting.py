"""Attestations pushed to the in-memory registry, as cosign lays them out, and policies that require them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tests.sigstore_kit import SigstoreKit
from tests.sigstore_kit.attestations import LegacyImageAttestation, attest_image_bundle, attest_image_legacy
from tests.unit.engine_harness import ISSUER, REPO, SIGNER
from tests.unit.oci.fake_registry import HOST, OCI_MANIFEST, FakeRegistry, dumps

DSSE = "application/vnd.dsse.envelope.v1+json"
PROVENANCE = "https://slsa.dev/provenance/v1"
SPDX = "https://spdx.dev/Document"
VULN = "https://cosign.sigstore.dev/attestation/vuln/v1"
TAG_PROVENANCE: dict[str, object] = {
    "buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/tags/v1.2.3", "repository":
                                                            "https://github.com/acme/app"}}},
    "runDetails": {"builder": {"id": "https://github.com/actions/runner"}},
}
BRANCH_PROVENANCE: dict[str, object] = {
    "buildDefinition": {"externalParameters": {"workflow": {"ref": "refs/heads/main", "repository":
                                                            "https://github.com/acme/app"}}},
}


def put_att(fake: FakeRegistry, digest: str, *attestations: LegacyImageAttestation, repo: str = REPO) -> str:
    """cosign < v3's ``sha256-<hex>.att`` manifest: one DSSE layer per attestation."""
    layers = [{**fake.put_blob(a.envelope), "mediaType": DSSE, "annotations": dict(a.annotations)}
              for a in attestations]
    manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": fake.put_blob(b"{}"), "layers": layers}
    return fake.put_manifest(repo, dumps(manifest), tag=digest.replace(":", "-") + ".att")


def legacy(kit: SigstoreKit, digest: str, predicate_type: str = PROVENANCE,
           predicate: Mapping[str, object] | None = None, **options: Any) -> LegacyImageAttestation:
    options.setdefault("identity", SIGNER)
    options.setdefault("issuer", ISSUER)
    return attest_image_legacy(kit, digest, predicate_type=predicate_type,
                               predicate=TAG_PROVENANCE if predicate is None else predicate,
                               repository=f"{HOST}/{REPO}", **options)


def put_bundle(fake: FakeRegistry, kit: SigstoreKit, digest: str, predicate_type: str = PROVENANCE,
               predicate: Mapping[str, object] | None = None, *, fallback: bool = False,
               **options: Any) -> dict[str, Any]:
    """A cosign v3 attestation bundle as a referrer (the API sees it; ``fallback`` also lists it in the tag)."""
    options.setdefault("identity", SIGNER)
    options.setdefault("issuer", ISSUER)
    signed = attest_image_bundle(kit, digest, predicate_type=predicate_type,
                                 predicate=TAG_PROVENANCE if predicate is None else predicate, **options)
    descriptor = fake.put_referrer(REPO, digest, signed.to_json(), predicate=predicate_type)
    if fallback:
        fake.put_fallback_index(REPO, digest, [descriptor])
    return descriptor


def attesting_policy(attestations: str, *, subject: str = SIGNER, name: str = "release", extra: str = "",
                     authority_extra: str = "", glob: str = f"{HOST}/acme/**") -> str:
    """A keyless ClusterImagePolicy whose one authority requires ``attestations`` (YAML list items at 8 spaces)."""
    return (f"apiVersion: policy.signet.dev/v1alpha1\nkind: ClusterImagePolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  images: [{{glob: '{glob}'}}]\n{extra}  authorities:\n"
            f"    - name: signer\n      keyless:\n        identities:\n"
            f"          - {{issuer: '{ISSUER}', subject: '{subject}'}}\n{authority_extra}"
            f"      attestations:\n{attestations}")


def requirement(name: str = "provenance", predicate_type: str = "slsaprovenance1", policy: str | None = None,
                language: str = "cel") -> str:
    """One ``attestations`` entry; ``policy`` is inline CEL or Rego."""
    text = f"        - name: {name}\n          predicateType: {predicate_type}\n"
    if policy is not None:
        body = "\n".join(f"              {line}" for line in policy.splitlines())
        text += f"          policy:\n            type: {language}\n            data: |\n{body}\n"
    return text
