"""Fuzz-ish: whatever the bytes, only MalformedReviewError (400) or UnreadableWorkloadError (deny) escape.

hypothesis is not installed; a seeded ``random`` gives the same cases on every run.
"""

from __future__ import annotations

import copy
import random
from typing import Any

import orjson
import pytest

from tests.fixtures_path import SHARED_FIXTURES
from tests.unit.admission.reviews import DIGEST, KINDS, pod_spec, review_body, review_dict, workload
from webhook.admission.decision import changed_images, plan_verification, requires_verification
from webhook.admission.outcome import ImageOutcome
from webhook.admission.patch import pinning_patch
from webhook.admission.response import allowed, denied, respond, skipped, unreadable
from webhook.admission.review import MalformedReviewError, parse_review
from webhook.admission.workload import UnreadableWorkloadError

SEED = 20261122


def _seed_bodies() -> list[bytes]:
    bodies = [
        review_body(workload(kind, pod_spec("a:1", "b:2", init=("c",), ephemeral=("d",), volumes=("e",))), kind)
        for kind in KINDS
    ]
    bodies.append(
        review_body(
            workload("Pod", pod_spec("a")),
            operation="UPDATE",
            old=workload("Pod", pod_spec("a")),
            sub_resource="status",
        )
    )
    folder = SHARED_FIXTURES / "admission-review" / "connaisseur"
    if folder.is_dir():  # extra seeds when present; the test does not depend on them
        bodies += [p.read_bytes() for p in sorted(folder.glob("*.json"))]
    return bodies


def _random_value(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(10 if depth < 3 else 7)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 7, 2**63 - 1, -(2**63), 1.5, 1e308])
    if choice == 3:
        return rng.choice(["", "Pod", "CREATE", "UPDATE", "pods", "ephemeralcontainers", "admission.k8s.io/v1"])
    if choice == 4:
        return "".join(chr(rng.choice([rng.randrange(32, 127), rng.randrange(0x80, 0xD7FF)])) for _ in range(5))
    if choice in (5, 6):
        return rng.choice(["nginx", "a:1", f"a@{DIGEST}", "\n", "x" * 300])
    if choice in (7, 8):
        return {rng.choice(["spec", "containers", "image", "template", "kind", "x"]): _random_value(rng, depth + 1)}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(3))]


def _mutate_json(rng: random.Random, doc: Any) -> Any:
    """Replace one randomly chosen node of ``doc`` with a random value."""
    doc = copy.deepcopy(doc)
    if not isinstance(doc, dict | list) or rng.random() < 0.05:
        return _random_value(rng)
    node: Any = doc
    for _ in range(rng.randrange(1, 9)):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = rng.choice(keys)
        child = node[key]
        if not isinstance(child, dict | list) or rng.random() < 0.3:
            node[key] = _random_value(rng)
            return doc
        node = child
    if isinstance(node, dict):
        node[rng.choice(["image", "containers", "spec", "uid", "operation"])] = _random_value(rng)
    return doc


def _mutate_bytes(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randrange(1, 4)):
        action = rng.randrange(3)
        position = rng.randrange(len(data) + 1)
        if action == 0 and data:
            data[min(position, len(data) - 1)] = rng.randrange(256)
        elif action == 1:
            data[position:position] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4)))
        else:
            del data[position : position + rng.randrange(1, 20)]
    return bytes(data)


def _exercise(body: bytes | str) -> str:
    """Run the whole admission layer on ``body``; returns which channel it ended in."""
    try:
        review = parse_review(body)
    except MalformedReviewError:
        return "malformed"
    outcome = ImageOutcome("a:1", DIGEST, "deny", "p", "a", "r")
    assert orjson.loads(denied(review, "m"))["response"]["uid"] == review.uid
    assert orjson.loads(respond(review, [outcome]))["response"]["allowed"] is False
    try:
        plan = plan_verification(review)
        changed_images(review)
    except UnreadableWorkloadError as exc:
        assert requires_verification(review)
        assert orjson.loads(unreadable(review, exc))["response"]["allowed"] is False
        return "unreadable"
    assert requires_verification(review) == bool(plan.images)
    pinning_patch(plan.images, dict.fromkeys(plan.distinct, DIGEST))
    orjson.loads(skipped(review, plan.reason) if not plan.images else allowed(review))
    return "verify" if plan.images else "skip"


def test_random_bytes() -> None:
    rng = random.Random(SEED)
    for _ in range(3000):
        _exercise(bytes(rng.randrange(256) for _ in range(rng.randrange(64))))


def test_byte_mutations_of_real_reviews() -> None:
    rng = random.Random(SEED + 1)
    seeds = _seed_bodies()
    for _ in range(3000):
        _exercise(_mutate_bytes(rng, rng.choice(seeds)))


def test_json_shape_mutations_reach_every_channel() -> None:
    rng = random.Random(SEED + 2)
    docs = [orjson.loads(b) for b in _seed_bodies()]
    channels: set[str] = set()
    for _ in range(5000):
        doc = _mutate_json(rng, rng.choice(docs))
        channels.add(_exercise(orjson.dumps(doc)))
    # The mutations are strong enough to hit all four outcomes, so each was really exercised.
    assert channels == {"malformed", "unreadable", "verify", "skip"}


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"1" + b"0" * 400,
        b"1e999",
        b'"\\ud800"',
        b"\x00",
        b"\xef\xbb\xbf{}",
        "{\ud800}",
        orjson.dumps(review_dict(workload("Pod", {"containers": [{"image": "a"}] * 20_000}))),
    ],
)
def test_pathological_bodies(body: bytes | str) -> None:
    _exercise(body)
