"""Shared builders for policy tests: small valid documents that each test bends one way."""

from __future__ import annotations

import copy
from typing import Any

PEM_P256 = """-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEPOb8UorQRw/EdhMNYkswjRb9Ty9Q
HVz/elPZSKitTsE1mKR3Kk+e6Va0wyoSKlv5s6Vn11EyvnCY7g4mR/nidw==
-----END PUBLIC KEY-----
"""

_CIP: dict[str, Any] = {
    "apiVersion": "policy.signet.dev/v1alpha1",
    "kind": "ClusterImagePolicy",
    "metadata": {"name": "release"},
    "spec": {
        "images": [{"glob": "ghcr.io/acme/**"}],
        "authorities": [
            {
                "name": "release-workflow",
                "keyless": {
                    "identities": [
                        {
                            "issuer": "https://token.actions.githubusercontent.com",
                            "subjectRegExp": r"^https://github\.com/acme/.+$",
                        }
                    ]
                },
            }
        ],
    },
}


def make_cip(name: str = "release", globs: tuple[str, ...] = ("ghcr.io/acme/**",), **spec: Any) -> dict[str, Any]:
    """A valid ClusterImagePolicy document; ``spec`` keys replace the defaults."""
    doc = copy.deepcopy(_CIP)
    doc["metadata"]["name"] = name
    doc["spec"]["images"] = [{"glob": g} for g in globs]
    doc["spec"].update(spec)
    return doc


def make_ip(name: str, namespace: str, globs: tuple[str, ...] = ("**",), **spec: Any) -> dict[str, Any]:
    """A valid ImagePolicy document in ``namespace``."""
    doc = make_cip(name, globs, **spec)
    doc["kind"] = "ImagePolicy"
    doc["metadata"]["namespace"] = namespace
    return doc

