"""Registry failures, finer than ``RegistryError`` so callers and audits can tell them apart.

    RegistryError                   (webhook.errors) any registry failure; infrastructure, not a verdict
    ├── RegistryStatusError         the registry answered an unexpected HTTP status (``status``)
    │   ├── RegistryAuthError       401/403: credentials missing or refused
    │   └── ManifestNotFoundError   404 for the image itself (a tag or digest that does not exist)
    ├── RegistryTimeoutError        no answer within the configured time
    ├── DigestMismatchError         content does not hash to the digest it was fetched by (tampering)
    ├── SizeLimitError              a manifest, blob or list is larger than the configured bound
    │   └── ImageBudgetError        one image's signature discovery would fetch more than its byte budget
    ├── EgressRefusedError          a URL or address we refuse to contact (SSRF guard); names host and rule
    └── ManifestFormatError         a manifest or index that is not the JSON shape the OCI spec defines

    ImageNotFoundError              (a SignetError, not infrastructure) the registry says the image
                                    does not exist: a verdict about the reference, not an outage

Every message names the registry host and the operation, e.g.
``registry 127.0.0.1:5000 answered 500 to GET manifest sha256-….sig of acme/app``.
"""

from __future__ import annotations

from webhook.errors import RegistryError, SignetError


class RegistryStatusError(RegistryError):
    """The registry answered with an HTTP status we cannot use."""

    def __init__(self, reason: str, *, registry: str, operation: str, status: int) -> None:
        super().__init__(reason)
        self.registry = registry
        self.operation = operation
        self.status = status


class RegistryAuthError(RegistryStatusError):
    """401/403: anonymous access refused, or the configured credentials were rejected."""


class ManifestNotFoundError(RegistryStatusError):
    """The image (tag or digest) does not exist in the repository."""


class RegistryTimeoutError(RegistryError):
    """The registry accepted the connection (or not) but did not answer in time."""

    def __init__(self, reason: str, *, registry: str, operation: str) -> None:
        super().__init__(reason)
        self.registry = registry
        self.operation = operation


class DigestMismatchError(RegistryError):
    """Content fetched by digest hashes to something else: never use it."""

    def __init__(self, reason: str, *, expected: str, actual: str) -> None:
        super().__init__(reason)
        self.expected = expected
        self.actual = actual


class SizeLimitError(RegistryError):
    """Content exceeds a configured bound (``RegistryLimits``); it was not read further."""

    def __init__(self, reason: str, *, limit: int) -> None:
        super().__init__(reason)
        self.limit = limit


class ImageBudgetError(SizeLimitError):
    """One image's signature discovery needs more bytes than its budget; discovery stops."""

    def __init__(self, reason: str, *, image: str, limit: int) -> None:
        super().__init__(reason, limit=limit)
        self.image = image


class EgressRefusedError(RegistryError):
    """A request we refuse to send: a redirect, token realm or address outside the egress rules."""

    def __init__(self, reason: str, *, host: str, rule: str, context: str | None = None) -> None:
        super().__init__(f"{context}: refused, {reason}" if context else reason)
        self.host = host
        self.rule = rule
        self.context = context

    def within(self, context: str) -> EgressRefusedError:
        """This refusal, saying which registry request it stopped (once: the innermost context wins)."""
        if self.context is not None:
            return self
        return EgressRefusedError(self.reason, host=self.host, rule=self.rule, context=context)


class ImageNotFoundError(SignetError):
    """The registry answered 404 for the image's own tag or digest: the reference names nothing."""

    def __init__(self, reason: str, *, image: str, registry: str, status: int = 404) -> None:
        super().__init__(reason)
        self.image = image
        self.registry = registry
        self.status = status


class ManifestFormatError(RegistryError):
    """A manifest, index or referrers list is not valid OCI/Docker JSON."""
