"""Registry credentials by host, as Kubernetes pull secrets and Docker config files carry them."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.errors import InputError
from webhook.oci.reference import normalise_registry

_logger = logging.getLogger(__name__)

_MAX_LOOKED_UP = 1024  # hosts asked about come from image references


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and password (or registry token used as a password)."""

    username: str
    password: str = field(repr=False)

    def basic_header(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def normalise_auth_host(key: str) -> str:
    """Auth entry key to host: ``https://index.docker.io/v1/`` → ``index.docker.io`` (no scheme/path/case)."""
    host = key.strip()
    for prefix in ("https://", "http://"):
        if host.lower().startswith(prefix):
            host = host[len(prefix) :]
            break
    # The same canonical form as image references: `GHCR.IO` and `ghcr.io:443` are `ghcr.io`.
    return normalise_registry(host.split("/", 1)[0])


class CredentialStore:
    """Credentials by registry host, as read from Docker config JSON (Kubernetes pull secrets)."""

    def __init__(self, entries: Mapping[str, Credentials] | None = None) -> None:
        self._by_host: dict[str, Credentials] = {}
        # Every registry request asks: normalising the host each time costs more than the request's auth.
        self._looked_up: dict[str, Credentials | None] = {}
        for host, creds in (entries or {}).items():
            self.add(host, creds)

    def add(self, host: str, credentials: Credentials) -> None:
        self._by_host[normalise_auth_host(host)] = credentials
        self._looked_up.clear()

    def lookup(self, host: str) -> Credentials | None:
        """Credentials for a registry host (with or without scheme/port as configured)."""
        try:
            return self._looked_up[host]
        except KeyError:
            pass
        if len(self._looked_up) >= _MAX_LOOKED_UP:
            self._looked_up.clear()
        found = self._looked_up[host] = self._by_host.get(normalise_auth_host(host))
        return found

    def hosts(self) -> list[str]:
        return sorted(self._by_host)

    def merged(self, other: CredentialStore) -> CredentialStore:
        """A new store with ``other``'s entries winning on conflicts."""
        store = CredentialStore()
        store._by_host = {**self._by_host, **other._by_host}
        return store

    @classmethod
    def from_docker_config(cls, document: bytes | str | Mapping[str, Any]) -> CredentialStore:
        """Parse ``{"auths": {host: {"auth": b64(user:pass)} | {"username", "password"}}}``.

        Also accepts the older ``.dockercfg`` shape (the host map at the top level). Entries
        with only an ``identitytoken`` (OAuth refresh tokens) are skipped with a log line.
        """
        if isinstance(document, bytes | str):
            try:
                document = json.loads(document)
            except ValueError as exc:
                raise InputError(f"docker config is not valid JSON: {exc}") from exc
        if not isinstance(document, Mapping):
            raise InputError("docker config must be a JSON object")
        auths = document.get("auths", document)
        if not isinstance(auths, Mapping):
            raise InputError('docker config "auths" must be an object')
        store = cls()
        for host, entry in auths.items():
            if not isinstance(entry, Mapping):
                raise InputError(f"docker config entry for {host!r} must be an object")
            creds = _entry_credentials(str(host), entry)
            if creds is not None:
                store.add(str(host), creds)
        return store


def _entry_credentials(host: str, entry: Mapping[str, Any]) -> Credentials | None:
    encoded = entry.get("auth")
    if isinstance(encoded, str) and encoded:
        try:
            decoded = base64.b64decode(encoded, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise InputError(
                f"docker config entry for {host!r}: 'auth' is not base64 of user:password"
            ) from exc
        username, sep, password = decoded.partition(":")
        if not sep:
            raise InputError(f"docker config entry for {host!r}: 'auth' has no ':' between user and password")
        return Credentials(username, password)
    user, secret = entry.get("username"), entry.get("password")
    if isinstance(user, str) and isinstance(secret, str) and user:
        return Credentials(user, secret)
    if entry.get("identitytoken"):
        _logger.warning("docker config entry for %s has only an identitytoken; not supported, ignored", host)
        return None
    raise InputError(f"docker config entry for {host!r} has neither 'auth' nor 'username'/'password'")
