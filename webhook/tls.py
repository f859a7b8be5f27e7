"""A server ``SSLContext`` that follows its certificate files (rotation without restart).

``load_cert_chain`` on an existing context replaces the certificate and key used by *new*
handshakes; connections already open keep theirs. ``CertificateReloader.check`` compares the
files' modification times (and sizes) with those last loaded and reloads when they differ; the
app's lifespan runs ``watch`` as a background task. A half-written rotation (cert and key not
matching yet) must not reach the live context: OpenSSL installs the new certificate before it
notices that the key does not match, leaving the context unable to complete a handshake. So
each reload is first tried on a scratch context; only a pair that loads there is loaded into the
live one, and a failure keeps the old pair and retries on the next poll.

With ``client_ca`` the context requires a client certificate chaining to that CA in the
handshake (``--client-ca``): a caller without one never reaches the HTTP layer. The CA file is
read once at start; rotating it means a restart (the pods roll when the chart's value changes).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from pathlib import Path

_logger = logging.getLogger(__name__)


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_mtime_ns, stat.st_size


class CertificateReloader:
    """Owns the server context; see the module docstring."""

    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.cert = cert
        self.key = key
        self.client_ca = client_ca
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        if client_ca is not None:
            # Raises OSError / ssl.SSLError for an unreadable file or one without a PEM certificate.
            self.context.load_verify_locations(cafile=str(client_ca))
            self.context.verify_mode = ssl.CERT_REQUIRED
        self._stamps: tuple[tuple[int, int], tuple[int, int]] | None = None
        self.reloads = 0
        self.load()

    def _current_stamps(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return _stamp(self.cert), _stamp(self.key)

    def load(self) -> None:
        """Load the pair now; raises OSError/ssl.SSLError when it is unreadable or mismatched."""
        stamps = self._current_stamps()
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile=str(self.cert), keyfile=str(self.key))
        try:
            self.context.load_cert_chain(certfile=str(self.cert), keyfile=str(self.key))
        except (OSError, ssl.SSLError):
            # The files changed between the trial and now: force a retry on the next poll.
            self._stamps = None
            raise
        self._stamps = stamps

    def check(self) -> bool:
        """Reload when the files changed since the last load; True when a new pair is in use."""
        try:
            stamps = self._current_stamps()
        except OSError as exc:
            _logger.warning("cannot stat TLS files %s / %s: %s; keeping the loaded certificate",
                            self.cert, self.key, exc)
            return False
        if stamps == self._stamps:
            return False
        try:
            self.load()
        except (OSError, ssl.SSLError) as exc:
            # Often a rotation caught between writing the cert and the key: retry next poll.
            _logger.warning("cannot reload TLS certificate %s: %s; keeping the previous one", self.cert, exc)
            return False
        self.reloads += 1
        _logger.info("reloaded TLS certificate from %s", self.cert)
        return True

    async def watch(self, interval: float) -> None:
        """Poll forever (cancel the task to stop)."""
        while True:
            await asyncio.sleep(interval)
            self.check()
