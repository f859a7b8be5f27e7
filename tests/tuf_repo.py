"""A small TUF repository for tests, built with python-tuf's metadata API.

It keeps every version it ever signed, so a test can publish the current state, a rollback
(an old timestamp), a tampered target or an expired timestamp. ``publish(dir)`` writes the
consistent-snapshot served layout Sigstore uses (``N.root.json``, ``timestamp.json``,
``V.snapshot.json``, ``V.targets.json``, ``targets/<sha256>.<name>``); :func:`serve` serves a
folder on 127.0.0.1 with the standard library's threaded HTTP server.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

# The public modules re-export these only implicitly, which mypy --strict rejects.
from securesystemslib.signer._crypto_signer import CryptoSigner
from tuf.api._payload import MetaFile, Root, Snapshot, TargetFile, Targets, Timestamp
from tuf.api.metadata import Metadata

TOP_ROLES = ("root", "targets", "snapshot", "timestamp")


def _in(delta: timedelta) -> datetime:
    return (datetime.now(UTC) + delta).replace(microsecond=0)


@dataclass
class TufTestRepository:
    """A consistent-snapshot repository with one ed25519 key per role (threshold 1)."""

    expires_in: timedelta = timedelta(days=7)
    signers: dict[str, list[CryptoSigner]] = field(default_factory=dict)
    roots: dict[int, bytes] = field(default_factory=dict)
    targets_versions: dict[int, bytes] = field(default_factory=dict)
    snapshot_versions: dict[int, bytes] = field(default_factory=dict)
    timestamp_versions: dict[int, bytes] = field(default_factory=dict)
    target_files: dict[str, bytes] = field(default_factory=dict)
    targets_dirty: bool = True

    def __post_init__(self) -> None:
        self.root = Root(expires=_in(timedelta(days=365)), consistent_snapshot=True)
        for role in TOP_ROLES:
            signer = CryptoSigner.generate_ed25519()
            self.signers[role] = [signer]
            self.root.add_key(signer.public_key, role)
        self.targets = Targets(expires=_in(timedelta(days=365)))
        self.snapshot = Snapshot(expires=_in(self.expires_in))
        self.timestamp = Timestamp(expires=_in(self.expires_in))
        self.roots[1] = self._sign(self.root, self.signers["root"])

    # -- content -----------------------------------------------------------------------------

    @property
    def root_version(self) -> int:
        return max(self.roots)

    def root_json(self, version: int | None = None) -> bytes:
        return self.roots[version or self.root_version]

    def add_target(self, name: str, data: bytes) -> None:
        """Add or replace a target; call :meth:`commit` to sign new metadata."""
        self.target_files[name] = data
        self.targets.targets[name] = TargetFile.from_data(name, data, ["sha256"])
        self.targets_dirty = True

    def rotate_keys(self, role: str, *, signed_by_old_root: bool = True) -> None:
        """New root version in which ``role`` has a new key (a root key change when role="root").

        The new root is signed by the new root keys and, unless told otherwise, the previous
        root keys: the cross-signature a client needs to trust the rotation.
        """
        old_root_signers = list(self.signers["root"])
        for key in [s.public_key for s in self.signers[role]]:
            self.root.revoke_key(key.keyid, role)
        signer = CryptoSigner.generate_ed25519()
        self.signers[role] = [signer]
        self.root.add_key(signer.public_key, role)
        self.root.version += 1
        self.root.expires = _in(timedelta(days=365))
        signing = list(self.signers["root"])
        if signed_by_old_root:
            signing += [s for s in old_root_signers if s not in signing]
        self.roots[self.root.version] = self._sign(self.root, signing)

    def commit(self, *, timestamp_expires: datetime | None = None) -> None:
        """Sign new targets (if changed), snapshot and timestamp versions."""
        if self.targets_dirty:
            self.targets.version = max(self.targets_versions, default=0) + 1
            self.targets_versions[self.targets.version] = self._sign(self.targets, self.signers["targets"])
            self.targets_dirty = False
        self.snapshot.version = max(self.snapshot_versions, default=0) + 1
        self.snapshot.expires = _in(self.expires_in)
        self.snapshot.meta["targets.json"] = MetaFile(version=self.targets.version)
        self.snapshot_versions[self.snapshot.version] = self._sign(self.snapshot, self.signers["snapshot"])
        self.timestamp_versions[self._next_timestamp_version()] = self.make_timestamp(
            snapshot_version=self.snapshot.version, expires=timestamp_expires
        )

    def make_timestamp(
        self, *, snapshot_version: int, version: int | None = None, expires: datetime | None = None
    ) -> bytes:
        """A signed timestamp (for rollback tests: any version, pointing at any snapshot)."""
        self.timestamp.version = version or self._next_timestamp_version()
        self.timestamp.expires = expires or _in(self.expires_in)
        self.timestamp.snapshot_meta = MetaFile(version=snapshot_version)
        return self._sign(self.timestamp, self.signers["timestamp"])

    # -- serving -----------------------------------------------------------------------------

    def publish(self, directory: Path, *, timestamp: bytes | None = None) -> Path:
        """Write the served layout to ``directory`` (the newest timestamp unless one is given)."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.files(timestamp=timestamp).items():
            path = directory / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        return directory

    def files(self, *, timestamp: bytes | None = None) -> dict[str, bytes]:
        files = {f"{v}.root.json": data for v, data in self.roots.items()}
        files.update({f"{v}.targets.json": data for v, data in self.targets_versions.items()})
        files.update({f"{v}.snapshot.json": data for v, data in self.snapshot_versions.items()})
        files["timestamp.json"] = timestamp or self.timestamp_versions[max(self.timestamp_versions)]
        for name, data in self.target_files.items():
            files[f"targets/{self.target_hash(name)}.{name}"] = data
        return files

    def target_hash(self, name: str) -> str:
        return hashlib.sha256(self.target_files[name]).hexdigest()

    def tarball(self, *, prefix: str = "repository") -> bytes:
        """A tar.gz of the served layout (air-gapped TrustRoot ``repository.tarball``)."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for name, data in sorted(self.files().items()):
                info = tarfile.TarInfo(f"{prefix}/{name}" if prefix else name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    # -- internals ---------------------------------------------------------------------------

    def _next_timestamp_version(self) -> int:
        return max(self.timestamp_versions, default=0) + 1

    @staticmethod
    def _sign(signed: Any, signers: list[CryptoSigner]) -> bytes:
        metadata = Metadata(signed)
        for signer in signers:
            metadata.sign(signer, append=True)
        data: bytes = metadata.to_bytes()
        return data


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class LocalServer:
    """A folder served on 127.0.0.1; :meth:`stop` makes the port refuse connections."""

    def __init__(self, directory: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self._stopped = False

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()


@contextmanager
def serve(directory: Path) -> Iterator[LocalServer]:
    server = LocalServer(directory)
    try:
        yield server
    finally:
        server.stop()
