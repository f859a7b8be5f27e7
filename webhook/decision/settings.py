"""What the engine is told (settings) and what it answers (one decision per image)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Final, Literal

from webhook.admission.outcome import ImageOutcome

OnError = Literal["deny", "warn", "allow"]
NOT_IN_TIME: Final = "not verified in time"


@dataclass(frozen=True)
class EngineSettings:
    on_error: OnError = "deny"
    deadline: float = 8.0
    include_index_signatures: bool = False
    digest_ttl: float = 60.0
    signatures_ttl: float = 300.0
    allow_ttl: float = 3600.0
    deny_ttl: float = 30.0
    key_ttl: float = 30.0
    """How long a public key read from a Secret (``key.secretRef``) is used before it is read again."""
    images_in_flight: int = 32
    """Images of one review verified at once: a large review waits for its own share, not everyone's."""


@dataclass(frozen=True)
class ImageDecision:
    image: str
    """The image exactly as the workload wrote it."""
    outcome: ImageOutcome
    pin_digest: bool = False
    """A matching policy asks for the tag to be pinned to the verified digest."""
    infrastructure: bool = False
    """Decided by onError because something we depend on failed: never cached, always retried."""

    def for_image(self, image: str) -> ImageDecision:
        """The same decision, reported for ``image`` as written (a cached verdict serves every spelling)."""
        if image == self.image:
            return self
        return replace(self, image=image, outcome=replace(self.outcome, reference=image))
