"""Fixtures shared by the verifier tests: the test signing kit and a verifier for its trust root."""

from __future__ import annotations

import pytest

from tests.sigstore_kit import SigstoreKit, default_kit
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Verifier


@pytest.fixture(scope="module")
def kit() -> SigstoreKit:
    return default_kit()


@pytest.fixture(scope="module")
def verifier(kit: SigstoreKit) -> Verifier:
    return Verifier(TrustedRoot.from_json(kit.trusted_root_json()))
