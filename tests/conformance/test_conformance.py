"""The sigstore-conformance bundle-verify suite, run through tests/conformance/entrypoint.

Every case runs twice (artifact path and ``sha256:<hex>`` digest), as the suite itself does;
``_fail`` cases must be rejected, all others must verify.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures_path import SHARED_FIXTURES, shared_fixture

ENTRYPOINT = Path(__file__).with_name("entrypoint")
DEFAULT_IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
                    ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
DEFAULT_ISSUER = "https://token.actions.githubusercontent.com"
ASSETS = SHARED_FIXTURES / "sigstore-conformance" / "test" / "assets" / "bundle-verify"
CASES = sorted(p.name for p in ASSETS.iterdir() if p.is_dir()) if ASSETS.is_dir() else ["(fixtures absent)"]


def _command(case: Path, target: str) -> list[str]:
    args = [str(ENTRYPOINT), "verify-bundle", "--bundle", str(case / "bundle.sigstore.json")]
    if (case / "key.pub").exists():
        args += ["--key", str(case / "key.pub")]
    else:
        identity = (case / "identity").read_text().strip() if (case / "identity").exists() else DEFAULT_IDENTITY
        issuer = (case / "issuer").read_text().strip() if (case / "issuer").exists() else DEFAULT_ISSUER
        args += ["--certificate-identity", identity, "--certificate-oidc-issuer", issuer]
    trusted_root = case / "trusted_root.json"
    if not trusted_root.exists():
        trusted_root = SHARED_FIXTURES / "trust" / "prod" / "trusted_root.json"
    return [*args, "--trusted-root", str(trusted_root), target]


@pytest.mark.parametrize("name", CASES)
def test_conformance_case(name: str) -> None:
    case = shared_fixture("sigstore-conformance", "test", "assets", "bundle-verify", name)
    artifact = case / "artifact" if (case / "artifact").exists() else ASSETS / "a.txt"
    digest = "sha256:" + hashlib.sha256(artifact.read_bytes()).hexdigest()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for mode, target in (("path", str(artifact)), ("digest", digest)):
        proc = subprocess.run(_command(case, target), check=False, capture_output=True, text=True, timeout=60, env=env)
        if name.endswith("_fail"):
            assert proc.returncode != 0, f"{name} [{mode}] verified but must be rejected"
            assert "Traceback" not in proc.stderr, f"{name} [{mode}] crashed: {proc.stderr}"
            assert proc.stderr.strip(), f"{name} [{mode}] rejected without saying why"
        else:
            assert proc.returncode == 0, f"{name} [{mode}] rejected: {proc.stderr.strip()}"
