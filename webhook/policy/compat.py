"""sigstore/policy-controller documents (``policy.sigstore.dev/v1alpha1|v1beta1``) → Signet's schema.

Users migrating from policy-controller keep their ClusterImagePolicy and TrustRoot files. A feature
is translated when Signet enforces the same thing, ignored (with a warning) only when ignoring it
cannot admit anything policy-controller would deny, and otherwise rejected with a message: a
requirement Signet cannot enforce (attestations, CUE/Rego policies, KMS keys, a TSA requirement)
must make the policy invalid, never silently absent.

| policy-controller                          | Signet                                                     |
|--------------------------------------------|------------------------------------------------------------|
| images[].glob, mode                        | same                                                       |
| authorities[].name (optional)              | name, default ``authority-<index>`` (as policy-controller) |
| keyless.identities, keyless.trustRootRef   | same                                                       |
| keyless.url (Fulcio URL)                   | dropped: verification does not contact Fulcio              |
| keyless.insecureIgnoreSCT: true            | warning: Signet checks the SCT anyway (stricter)           |
| keyless.ca-cert                            | rejected: put the CA in a TrustRoot                        |
| key.data, key.secretRef, key.hashAlgorithm | same                                                       |
| key.kms                                    | rejected                                                   |
| ctlog {url, trustRootRef}                  | keyless.rekor / key.rekor                                  |
| source (signature repository, secrets)     | warning: signatures are looked up next to the image        |
| attestations, spec.policy, spec.match,     | rejected                                                   |
| rfc3161timestamp, images[].regex           |                                                            |
| TrustRoot remote, repository               | same                                                       |
| TrustRoot sigstoreKeys                     | rejected: use spec.trustedRoot (a trusted_root.json)       |

``spec.match`` is rejected rather than ignored: applying a ``static: pass`` policy meant for one
resource kind to every kind could admit images that policy-controller would have denied.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from webhook.policy.models import API_VERSION

POLICY_CONTROLLER_API_VERSIONS = frozenset({"policy.sigstore.dev/v1alpha1", "policy.sigstore.dev/v1beta1"})
POLICY_CONTROLLER_KINDS = frozenset({"ClusterImagePolicy", "TrustRoot"})


@dataclass
class Translation:
    """The translated document, plus what could not be translated (path, message)."""

    document: dict[str, Any]
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


def translate(document: Mapping[str, Any]) -> Translation:
    """Translate one policy-controller ClusterImagePolicy or TrustRoot (kind already checked)."""
    out: dict[str, Any] = {k: v for k, v in document.items() if k not in ("apiVersion", "status")}
    out["apiVersion"] = API_VERSION
    result = Translation(out)
    spec = document.get("spec")
    if not isinstance(spec, Mapping):
        return result  # the schema reports the missing/invalid spec with its usual message
    if document.get("kind") == "TrustRoot":
        out["spec"] = _trust_root_spec(spec, result)
    else:
        out["spec"] = _policy_spec(spec, result)
    return result


def _policy_spec(spec: Mapping[str, Any], result: Translation) -> dict[str, Any]:
    out = dict(spec)
    for key, why in (
        ("policy", "CUE/Rego policies are not supported by Signet"),
        ("match", "per-resource selection is not supported: Signet applies every policy to every "
                  "workload kind; split the images by glob instead"),
    ):
        if key in out:
            result.errors.append((f"spec.{key}", why))
            del out[key]
    images = out.get("images")
    if isinstance(images, list):
        out["images"] = [_image(image, f"spec.images[{i}]", result) for i, image in enumerate(images)]
    authorities = out.get("authorities")
    if isinstance(authorities, list):
        out["authorities"] = [
            _authority(a, f"spec.authorities[{i}]", i, result) if isinstance(a, Mapping) else a
            for i, a in enumerate(authorities)
        ]
    return out


def _image(image: Any, path: str, result: Translation) -> Any:
    if isinstance(image, Mapping) and "regex" in image:
        result.errors.append((f"{path}.regex", "regex image matching is not supported; use glob"))
        return {k: v for k, v in image.items() if k != "regex"}
    return image


def _authority(authority: Mapping[str, Any], path: str, index: int, result: Translation) -> dict[str, Any]:
    out = dict(authority)
    out.setdefault("name", f"authority-{index}")
    for unsupported, why in (
        ("attestations", "attestation requirements are not supported by Signet; this policy cannot be "
                         "enforced as written"),
        ("rfc3161timestamp", "requiring a timestamp from a specific TSA trust root is not supported"),
    ):
        if unsupported in out:
            result.errors.append((f"{path}.{unsupported}", why))
            del out[unsupported]
    if "source" in out:
        # Ignoring an alternative signature location cannot admit more: signatures found next to
        # the image still have to verify against the same authority.
        result.warnings.append((f"{path}.source", "ignored: signatures are looked up in the image's "
                                "own repository, with the workload's pull secrets"))
        del out["source"]
    ctlog = out.pop("ctlog", None)
    if isinstance(out.get("keyless"), Mapping):
        out["keyless"] = _keyless(out["keyless"], f"{path}.keyless", result)
        if ctlog is not None:
            out["keyless"]["rekor"] = ctlog
    if isinstance(out.get("key"), Mapping):
        key: dict[str, Any] = dict(out["key"])
        if "kms" in key:
            result.errors.append((f"{path}.key.kms", "KMS keys are not supported; put the PEM public key "
                                  "in key.data"))
            del key["kms"]
        if ctlog is not None:
            key["rekor"] = ctlog
        out["key"] = key
    if out.get("keyless", 0) is None:  # `keyless:` with no value means absent in policy-controller
        del out["keyless"]
    return out


def _keyless(keyless: Mapping[str, Any], path: str, result: Translation) -> dict[str, Any]:
    out = dict(keyless)
    out.pop("url", None)  # the Fulcio URL matters for signing, not for verification
    if "ca-cert" in out:
        result.errors.append((f"{path}.ca-cert", "custom CA certificates are not supported here; put the "
                              "CA in a TrustRoot and name it in keyless.trustRootRef"))
        del out["ca-cert"]
    if out.pop("insecureIgnoreSCT", None) is True:
        result.warnings.append((f"{path}.insecureIgnoreSCT", "ignored: Signet always verifies the "
                                "certificate's SCT (stricter than asked)"))
    return out


def _trust_root_spec(spec: Mapping[str, Any], result: Translation) -> dict[str, Any]:
    out = dict(spec)
    if "sigstoreKeys" in out:
        result.errors.append(("spec.sigstoreKeys", "not supported; convert the keys to a trusted_root.json "
                              "and put it in spec.trustedRoot"))
        del out["sigstoreKeys"]
    return out
