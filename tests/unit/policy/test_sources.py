"""An authority's ``source``: the signature repository, its pull secrets and cosign's tag prefix."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from webhook.policy.sources import SignatureSource, signature_repository, signature_tag

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("oci", "repository"),
    [
        ("ghcr.io/acme/signatures", "ghcr.io/acme/signatures"),
        ("registry.local:5000/sigs", "registry.local:5000/sigs"),
        ("docker.io/acme/sigs", "index.docker.io/acme/sigs"),  # normalised like image references
    ],
)
def test_a_repository_with_its_registry(oci: str, repository: str) -> None:
    assert signature_repository(oci) == repository
    assert SignatureSource(oci=oci).repository == repository


@pytest.mark.parametrize(
    ("oci", "words"),
    [
        ("acme/signatures", "must start with a registry host"),  # policy-controller: not a valid registry either
        ("localhost/sigs", "must start with a registry host"),
        ("ghcr.io/acme/sigs:latest", "without tag or digest"),
        ("ghcr.io/acme/sigs@" + DIGEST, "without tag or digest"),
        ("ghcr.io/Acme/sigs", "lower case"),
        ("ghcr.io", "names a registry, not a repository"),  # Signet's deliberate refusal
    ],
)
def test_what_cannot_hold_signatures_is_refused(oci: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        signature_repository(oci)


def test_cosign_tags_with_and_without_a_prefix() -> None:
    assert signature_tag(DIGEST) == "sha256-" + "ab" * 32 + ".sig"
    assert signature_tag(DIGEST, "team-", "att") == "team-sha256-" + "ab" * 32 + ".att"


def test_a_source_without_oci_keeps_the_image_repository() -> None:
    source = SignatureSource.model_validate({"oci": "", "signaturePullSecrets": [{"name": "examplePullSecret"}]})
    assert source.repository is None and source.oci is None
    assert [s.name for s in source.signature_pull_secrets] == ["examplePullSecret"]


@pytest.mark.parametrize(
    ("fields", "location", "words"),
    [
        ({"signaturePullSecrets": [{"name": ""}]}, ("signaturePullSecrets", 0, "name"), "needs a name"),
        ({"signaturePullSecrets": [{"name": "a/b"}]}, ("signaturePullSecrets", 0, "name"), "cannot name a Secret"),
        ({"oci": "not a repo"}, ("oci",), "is not a repository"),
        ({"tagPrefix": "-x"}, ("tagPrefix",), "pattern"),
        ({"tagPrefix": "x" * 54}, ("tagPrefix",), "at most 53"),
    ],
)
def test_invalid_sources_name_the_field(fields: dict[str, Any], location: tuple[Any, ...], words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SignatureSource.model_validate(fields)
    (error,) = caught.value.errors()
    assert error["loc"] == location and words in error["msg"], error
