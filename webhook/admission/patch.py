"""The digest-pinning JSONPatch of ``POST /mutate`` (opt-in per policy).

Form: the verified digest is *appended* to the image as written, ``name:tag@sha256:…`` (or
``name@sha256:…`` when no tag was written). Container runtimes pull by the digest and ignore the
tag; keeping the tag keeps ``kubectl get`` readable and tells a human which release it is. The
reference is otherwise left exactly as the user spelt it (no registry or ``:latest`` added), so
the patch changes nothing but what it must.

Safety: an image is only touched when the caller hands a verified digest for that exact image
string; images that already carry a digest are never touched (whatever digest was verified);
each ``replace`` is preceded by a ``test`` of the value we verified, so if the object at that
path is not what we checked, the API server rejects the patch instead of pinning something else.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from typing import Final

from webhook.admission.workload import ImageUse

_logger = logging.getLogger(__name__)

# fullmatch, not "^...$": "$" also matches before a trailing newline.
_DIGEST: Final = re.compile(r"sha256:[a-f0-9]{64}|sha384:[a-f0-9]{96}|sha512:[a-f0-9]{128}")


def has_digest(image: str) -> bool:
    """True when the reference already names a digest (``...@sha256:...``)."""
    return "@" in image


def pin_digest(image: str, digest: str) -> str:
    """``image`` pinned to ``digest``: ``name:tag@digest`` (the tag is kept for readers)."""
    if not _DIGEST.fullmatch(digest):
        raise ValueError(f"not an OCI digest: {digest!r}")
    if has_digest(image):
        raise ValueError(f"image {image!r} already names a digest")
    return f"{image}@{digest}"


def pinning_patch(uses: Iterable[ImageUse], verified: Mapping[str, str]) -> list[dict[str, str]]:
    """JSONPatch ops pinning each tag-referenced image of ``uses`` to its digest in ``verified``.

    ``verified`` maps an image string (as written in the object) to the digest it was verified
    at. Images without an entry, already pinned, or with an entry that is not a digest are left
    alone. Returns ``[]`` when nothing needs pinning.
    """
    ops: list[dict[str, str]] = []
    for use in uses:
        digest = verified.get(use.image)
        if digest is None or has_digest(use.image):
            continue
        if not _DIGEST.fullmatch(digest):
            _logger.warning("not pinning %s: verified digest %r is not an OCI digest", use.image, digest)
            continue
        ops.append({"op": "test", "path": use.path, "value": use.image})
        ops.append({"op": "replace", "path": use.path, "value": f"{use.image}@{digest}"})
    return ops
