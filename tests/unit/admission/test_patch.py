"""Digest pinning: only verified tag references change, at the right JSON pointer, guarded by a test op."""

from __future__ import annotations

import pytest

from tests.unit.admission.reviews import DIGEST, OTHER_DIGEST, pod_spec, workload
from webhook.admission.patch import has_digest, pin_digest, pinning_patch
from webhook.admission.review import GroupVersionKind
from webhook.admission.workload import ImageUse, workload_images

DEPLOYMENT = GroupVersionKind("apps", "v1", "Deployment")


def test_pins_verified_tags_keeping_the_tag() -> None:
    obj = workload("Deployment", pod_spec("ghcr.io/acme/app:v1", "nginx", init=("busybox:1.36",)))
    uses = workload_images(DEPLOYMENT, obj)
    ops = pinning_patch(uses, {"ghcr.io/acme/app:v1": DIGEST, "nginx": OTHER_DIGEST})
    assert ops == [
        {"op": "test", "path": "/spec/template/spec/containers/0/image", "value": "ghcr.io/acme/app:v1"},
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": f"ghcr.io/acme/app:v1@{DIGEST}"},
        {"op": "test", "path": "/spec/template/spec/containers/1/image", "value": "nginx"},
        {"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": f"nginx@{OTHER_DIGEST}"},
    ]  # busybox had no verified digest: untouched


def test_image_volumes_are_pinned_at_their_reference() -> None:
    uses = [ImageUse("model:2", "v0", "volume", "/spec/volumes/1/image/reference")]
    assert pinning_patch(uses, {"model:2": DIGEST})[1] == {
        "op": "replace",
        "path": "/spec/volumes/1/image/reference",
        "value": f"model:2@{DIGEST}",
    }


def test_every_use_of_a_repeated_image_is_pinned() -> None:
    uses = workload_images(DEPLOYMENT, workload("Deployment", pod_spec("a:1", "a:1")))
    assert [op["path"] for op in pinning_patch(uses, {"a:1": DIGEST}) if op["op"] == "replace"] == [
        "/spec/template/spec/containers/0/image",
        "/spec/template/spec/containers/1/image",
    ]


def test_digest_references_are_never_touched() -> None:
    image = f"ghcr.io/acme/app:v1@{DIGEST}"
    uses = [ImageUse(image, "c", "container", "/spec/containers/0/image")]
    assert pinning_patch(uses, {image: OTHER_DIGEST}) == []


def test_bogus_digests_are_never_written() -> None:
    uses = [ImageUse("a:1", "c", "container", "/spec/containers/0/image")]
    for bogus in ("sha256:abc", "latest", "sha256:" + "AB" * 32, f"{DIGEST}\n", "md5:" + "a" * 32):
        assert pinning_patch(uses, {"a:1": bogus}) == []


def test_no_verified_digests_no_patch() -> None:
    uses = [ImageUse("a:1", "c", "container", "/spec/containers/0/image")]
    assert pinning_patch(uses, {}) == []


def test_pointer_escaping_is_carried_from_the_use() -> None:
    uses = [ImageUse("a:1", "c", "container", "/weird~1key~0/0/image")]
    assert pinning_patch(uses, {"a:1": DIGEST})[1]["path"] == "/weird~1key~0/0/image"


def test_pin_digest() -> None:
    assert pin_digest("nginx:1.27", DIGEST) == f"nginx:1.27@{DIGEST}"
    assert pin_digest("localhost:5000/app", DIGEST) == f"localhost:5000/app@{DIGEST}"
    assert has_digest(f"a@{DIGEST}") and not has_digest("localhost:5000/a:1")
    with pytest.raises(ValueError, match=r"not an OCI digest"):
        pin_digest("a", "sha256:xyz")
    with pytest.raises(ValueError, match=r"already names a digest"):
        pin_digest(f"a@{DIGEST}", DIGEST)
