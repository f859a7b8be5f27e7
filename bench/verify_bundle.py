"""Benchmark: time to verify one Sigstore v0.3 bundle, Signet beside sigstore-python, same run.

    .venv/bin/python bench/verify_bundle.py [--case happy-path-v0.3] [--iterations 2000]

sigstore-python (4.5.1) is installed in its own environment, bench/.venv-sigstore, created on
first use. Both sides parse the trust root once and verify the same bundle bytes, including
parsing the bundle on every iteration, as an admission webhook would for a signature it has not
seen. The figure that matters is the ratio, measured in one run (these machines are noisy).

Two figures: the same bundle verified repeatedly (what the goal is stated on; Signet then reuses
the time-independent checks of a leaf it has seen: issuer signature, profile, SCT), and distinct
bundles each verified once (first sight, nothing reused beyond the trust root).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIGSTORE_VENV = ROOT / "bench" / ".venv-sigstore"
ASSETS = ROOT.parent / "shared" / "fixtures" / "sigstore-conformance" / "test" / "assets" / "bundle-verify"
IDENTITY = ("https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/"
            ".github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main")
ISSUER = "https://token.actions.githubusercontent.com"

SIGSTORE_COLD = textwrap.dedent("""
    import hashlib, json, sys, time
    from pathlib import Path
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy
    from sigstore.hashes import Hashed, HashAlgorithm
    folder, identity, issuer = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    verifier = Verifier(trusted_root=TrustedRoot.from_file(str(folder / "trusted_root.json")))
    pol = policy.Identity(identity=identity, issuer=issuer)
    paths = [b for b in sorted(folder.glob("*.json")) if b.name != "trusted_root.json"]
    items = [(b.read_bytes(), b.with_suffix(".artifact").read_bytes()) for b in paths]
    hashed = [Hashed(algorithm=HashAlgorithm.SHA2_256, digest=hashlib.sha256(a).digest()) for _, a in items]
    start = time.perf_counter()
    for (raw, _), h in zip(items, hashed):
        verifier.verify_artifact(h, Bundle.from_json(raw), pol)
    print(json.dumps({"seconds_per_verify": (time.perf_counter() - start) / len(items)}))
""")

SIGSTORE_SIDE = textwrap.dedent("""
    import hashlib, json, sys, time
    from pathlib import Path
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier, policy
    from sigstore.hashes import Hashed, HashAlgorithm
    case, trusted_root, artifact, identity, issuer, n = sys.argv[1:7]
    raw = Path(case).read_bytes()
    verifier = Verifier(trusted_root=TrustedRoot.from_file(trusted_root))
    hashed = Hashed(algorithm=HashAlgorithm.SHA2_256, digest=hashlib.sha256(Path(artifact).read_bytes()).digest())
    pol = policy.Identity(identity=identity, issuer=issuer)
    for _ in range(50):
        verifier.verify_artifact(hashed, Bundle.from_json(raw), pol)
    start = time.perf_counter()
    for _ in range(int(n)):
        verifier.verify_artifact(hashed, Bundle.from_json(raw), pol)
    print(json.dumps({"seconds_per_verify": (time.perf_counter() - start) / int(n)}))
""")


def ensure_sigstore() -> Path:
    python = SIGSTORE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SIGSTORE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "sigstore==4.5.1"], check=True)
    return python


def signet_time(case: Path, trusted_root: Path, artifact: Path, n: int) -> float:
    sys.path.insert(0, str(ROOT))
    from webhook.verify.bundle import Bundle
    from webhook.verify.identity import Identity
    from webhook.verify.trustroot import TrustedRoot
    from webhook.verify.verifier import Artifact, Verifier

    raw = (case / "bundle.sigstore.json").read_bytes()
    verifier = Verifier(TrustedRoot.from_file(trusted_root))
    target = Artifact.from_bytes(artifact.read_bytes())
    target = Artifact(target.digest)  # digest only, like the sigstore-python side
    policy = Identity(subject=IDENTITY, issuer=ISSUER)
    for _ in range(50):
        verifier.verify_bundle(Bundle.from_json(raw), target, policy=policy)
    start = time.perf_counter()
    for _ in range(n):
        verifier.verify_bundle(Bundle.from_json(raw), target, policy=policy)
    return (time.perf_counter() - start) / n


def cold_bundles(folder: Path, count: int) -> tuple[str, str]:
    """Distinct v0.3 bundles from the test signing kit: every leaf is new, nothing is memoised."""
    sys.path.insert(0, str(ROOT))
    from tests.sigstore_kit import SigstoreKit

    kit = SigstoreKit.create()
    identity, issuer = "release@example.com", "https://accounts.example.com"
    (folder / "trusted_root.json").write_bytes(kit.trusted_root_json())
    for index in range(count):
        data = f"artifact {index}".encode()
        signed = kit.sign_blob(data, identity=identity, issuer=issuer, bundle_version="0.3")
        (folder / f"{index:05d}.json").write_bytes(signed.to_json())
        (folder / f"{index:05d}.artifact").write_bytes(data)
    return identity, issuer


def signet_cold(folder: Path, identity: str, issuer: str) -> float:
    from webhook.verify.bundle import Bundle
    from webhook.verify.identity import Identity
    from webhook.verify.trustroot import TrustedRoot
    from webhook.verify.verifier import Artifact, Verifier

    verifier = Verifier(TrustedRoot.from_file(folder / "trusted_root.json"))
    policy = Identity(subject=identity, issuer=issuer)
    items = [(b.read_bytes(), Artifact(Artifact.from_bytes(b.with_suffix(".artifact").read_bytes()).digest))
             for b in sorted(folder.glob("*.json")) if b.name != "trusted_root.json"]
    start = time.perf_counter()
    for raw, artifact in items:
        verifier.verify_bundle(Bundle.from_json(raw), artifact, policy=policy)
    return (time.perf_counter() - start) / len(items)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--case", default="happy-path-v0.3")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--cold", type=int, default=300, help="distinct kit bundles for the first-sight figure")
    args = parser.parse_args()
    case = ASSETS / args.case
    if not case.is_dir():
        print(f"conformance case {case} not found (needs ../shared/fixtures)", file=sys.stderr)
        return 2
    trusted_root = case / "trusted_root.json"
    if not trusted_root.exists():
        trusted_root = ROOT.parent / "shared" / "fixtures" / "trust" / "prod" / "trusted_root.json"
    artifact = case / "artifact" if (case / "artifact").exists() else ASSETS / "a.txt"

    python = ensure_sigstore()
    theirs_out = subprocess.run(
        [str(python), "-c", SIGSTORE_SIDE, str(case / "bundle.sigstore.json"), str(trusted_root), str(artifact),
         IDENTITY, ISSUER, str(args.iterations)], check=True, capture_output=True, text=True)
    theirs = float(json.loads(theirs_out.stdout)["seconds_per_verify"])
    ours = signet_time(case, trusted_root, artifact, args.iterations)
    print(f"case {args.case}, {args.iterations} verifications each")
    print(f"  sigstore-python 4.5.1: {theirs * 1e3:.3f} ms per bundle")
    print(f"  signet:                {ours * 1e3:.3f} ms per bundle")
    print(f"  ratio (sigstore-python / signet): {theirs / ours:.2f}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        identity, issuer = cold_bundles(folder, args.cold)
        cold_out = subprocess.run([str(python), "-c", SIGSTORE_COLD, str(folder), identity, issuer],
                                  check=True, capture_output=True, text=True)
        theirs_cold = float(json.loads(cold_out.stdout)["seconds_per_verify"])
        ours_cold = signet_cold(folder, identity, issuer)
    print(f"first sight: {args.cold} distinct bundles (test-kit CA), each verified once")
    print(f"  sigstore-python 4.5.1: {theirs_cold * 1e3:.3f} ms per bundle")
    print(f"  signet:                {ours_cold * 1e3:.3f} ms per bundle")
    print(f"  ratio (sigstore-python / signet): {theirs_cold / ours_cold:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
