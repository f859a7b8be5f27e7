"""sigstore/policy-controller documents (``policy.sigstore.dev/v1alpha1|v1beta1``) → Signet's schema.

Users migrating from policy-controller keep their ClusterImagePolicy and TrustRoot objects, and
each must mean here exactly what it means there: its defaults and spellings are applied, the
rules its webhook validates with are checked (at the path it names), and a feature Signet cannot
enforce makes the document invalid (its images are then denied, see ``loader.fail_closed_policy``),
never silently absent. The field-by-field table is in the README ("policy-controller compatibility").

| policy-controller                          | Signet                                                     |
|--------------------------------------------|------------------------------------------------------------|
| images[].glob, mode ("" = enforce), match  | same                                                       |
| authorities[].name ("" = authority-<i>)    | name                                                       |
| signatureFormat (absent = legacy)          | signatureFormat                                            |
| keyless.identities, trustRootRef,          | same (identity regexps search, as Go's MatchString)        |
| insecureIgnoreSCT                          |                                                            |
| keyless.url (Fulcio URL)                   | dropped: verification does not contact Fulcio             |
| keyless.ca-cert {data, secretRef}          | keyless.caCert                                             |
| key.data, key.secretRef, key.hashAlgorithm | same (hashAlgorithm in any case, "" = sha256)              |
| key.kms, ca-cert.kms                       | refused: needs cloud credentials and network access        |
| ctlog {url, trustRootRef}                  | keyless.rekor / key.rekor                                  |
| source [{oci, signaturePullSecrets,        | source                                                     |
| tagPrefix}], rfc3161timestamp              | rfc3161timestamp                                           |
| attestations (predicateType short names)   | same; judged on the attestations alone                     |
|                                            | (requireSignature: false), as policy-controller does       |
| spec.policy, attestations[].policy         | same for rego (cel too); cue refused: no Python runtime;   |
|                                            | remote pinned by sha256sum; a bare url refused (no pin)    |
| policy.configMapRef.namespace              | warning: ignored, read from Signet's namespace             |
| images[].regex                             | refused: not part of policy-controller's API any more      |
| TrustRoot remote, repository (targets,     | same                                                       |
| trustedRootTarget)                         |                                                            |
| TrustRoot sigstoreKeys                     | trustedRoot (converted, :mod:`webhook.policy.sigstore_keys`) |

``secretRef.namespace`` must be empty or Signet's own namespace, as policy-controller requires
its own: the namespace is given by the caller (:func:`default_system_namespace` otherwise).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from webhook.policy import sigstore_keys
from webhook.policy.authorities import Authority
from webhook.policy.groups import POLICY_CONTROLLER_API_VERSIONS, POLICY_CONTROLLER_KINDS
from webhook.policy.models import API_VERSION, PolicySpec

__all__ = ["POLICY_CONTROLLER_API_VERSIONS", "POLICY_CONTROLLER_KINDS", "Translation", "default_system_namespace",
           "document_path", "translate"]

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
DEFAULT_SYSTEM_NAMESPACE = "signet-system"
# policy-controller's schema, object by object: any other field is not part of its API (its CRD would
# drop it), so a document that has one does not mean there what it would mean here.
_FIELDS = {
    "spec": {"images", "authorities", "policy", "mode", "match"},
    "image": {"glob", "regex"},
    "authority": {"name", "key", "keyless", "static", "source", "ctlog", "attestations", "rfc3161timestamp",
                  "signatureFormat"},
    "keyless": {"url", "identities", "ca-cert", "insecureIgnoreSCT", "trustRootRef"},
    "key": {"data", "secretRef", "kms", "hashAlgorithm"},
    "ctlog": {"url", "trustRootRef"},
    "static": {"action", "message"},
    "trust root": {"remote", "repository", "sigstoreKeys"},
    "remote": {"mirror", "root", "targets", "trustedRootTarget"},
    "repository": {"root", "mirrorFS", "targets", "trustedRootTarget"},
}
_KMS = "KMS keys are not supported: they need cloud credentials and network access at admission; put the PEM " \
       "public key in data (or in a Secret named by secretRef)"


@cache
def default_system_namespace() -> str:
    """The namespace Signet runs in: the pod's service-account namespace file, else ``signet-system``."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_SYSTEM_NAMESPACE
    except OSError:
        return DEFAULT_SYSTEM_NAMESPACE


@dataclass
class Translation:
    """The translated document, plus what could not be translated (path, message)."""

    document: dict[str, Any]
    errors: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)


def document_path(path: str) -> str:
    """A path in the translated document as the policy-controller document spells it (``ca-cert``, ``ctlog``)."""
    path = path.replace(".keyless.caCert", ".keyless.ca-cert")
    for moved in (".keyless.rekor", ".key.rekor"):
        path = path.replace(moved, ".ctlog")
    return path


def translate(document: Mapping[str, Any], system_namespace: str | None = None) -> Translation:
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
        out["spec"] = _PolicyTranslator(result, system_namespace or default_system_namespace()).spec(spec)
    return result


def _known_fields(value: Mapping[str, Any], what: str, path: str, errors: list[tuple[str, str]]) -> dict[str, Any]:
    """``value`` without the fields policy-controller's ``what`` does not have, each one an error."""
    allowed = _FIELDS[what]
    errors.extend((f"{path}.{unknown}", "unknown field (not part of policy-controller's schema)")
                  for unknown in value if unknown not in allowed)
    return {k: v for k, v in value.items() if k in allowed}


@dataclass
class _PolicyTranslator:
    result: Translation
    system_namespace: str

    def error(self, path: str, message: str) -> None:
        self.result.errors.append((path, message))

    def known(self, value: Any, what: str, path: str) -> Any:
        """``value`` without unknown fields, when it is an object (anything else: the schema says why)."""
        return self.fields(value, what, path) if isinstance(value, Mapping) else value

    def fields(self, value: Mapping[str, Any], what: str, path: str) -> dict[str, Any]:
        return _known_fields(value, what, path, self.result.errors)

    def spec(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        out = self.fields(spec, "spec", "spec")
        if out.get("mode") in ("", None):
            out.pop("mode", None)  # policy-controller's default: enforce
        self._attestation_feature(out, "policy", PolicySpec, "spec.policy",
                                  "policy-level CUE/Rego policies (spec.policy) are not supported")
        if isinstance(out.get("policy"), Mapping):
            out["policy"] = self._content_policy(out["policy"], "spec.policy", policy_level=True)
        images = out.get("images")
        if isinstance(images, list):
            out["images"] = [self._image(image, f"spec.images[{i}]") for i, image in enumerate(images)]
        authorities = out.get("authorities")
        if isinstance(authorities, list):
            out["authorities"] = [self._authority(a, f"spec.authorities[{i}]", i) if isinstance(a, Mapping) else a
                                  for i, a in enumerate(authorities)]
        return out

    def _attestation_feature(self, out: dict[str, Any], key: str, model: type[Any], path: str, why: str) -> None:
        # Attestations have their own schema (webhook.policy.attestations); until Signet's models
        # carry it, a document that relies on them cannot be enforced as written.
        if key in out and key not in model.model_fields:
            self.error(path, why)
            del out[key]

    def _image(self, image: Any, path: str) -> Any:
        image = self.known(image, "image", path)
        if isinstance(image, Mapping) and "regex" in image:
            self.error(f"{path}.regex", "regex image matching is not supported; use glob")
            return {k: v for k, v in image.items() if k != "regex"}
        return image

    def _authority(self, authority: Mapping[str, Any], path: str, index: int) -> dict[str, Any]:
        out = self.fields(authority, "authority", path)
        for what in ("ctlog", "static"):
            if out.get(what) is not None:
                out[what] = self.known(out[what], what, f"{path}.{what}")
        if not out.get("name"):
            out["name"] = f"authority-{index}"  # policy-controller's default, also for name: ""
        if out.get("static") is not None:
            # policy-controller: a static authority verifies nothing, so these would be ignored.
            for conflicting in ("ctlog", "attestations"):
                if out.get(conflicting):
                    self.error(f"{path}.{conflicting}", f"expected exactly one, got both: static, {conflicting}")
                    del out[conflicting]
        elif not out.get("signatureFormat"):
            out["signatureFormat"] = "legacy"  # policy-controller reads only cosign's .sig signatures by default
        self._attestation_feature(out, "attestations", Authority, f"{path}.attestations",
                                  "attestation requirements are not supported; this policy cannot be enforced "
                                  "as written")
        self._attestations(out, path)
        self._sources(out, path)
        ctlog = out.pop("ctlog", None)
        if isinstance(out.get("keyless"), Mapping):
            out["keyless"] = self._keyless(out["keyless"], f"{path}.keyless")
            if ctlog is not None:
                out["keyless"]["rekor"] = ctlog
        if isinstance(out.get("key"), Mapping):
            out["key"] = self._key(out["key"], f"{path}.key")
            if ctlog is not None:
                out["key"]["rekor"] = ctlog
        if out.get("keyless", 0) is None:  # `keyless:` with no value means absent in policy-controller
            del out["keyless"]
        return out

    def _attestations(self, out: dict[str, Any], path: str) -> None:
        attestations = out.get("attestations")
        if not isinstance(attestations, list) or not attestations or out.get("static") is not None:
            return
        translated = []
        for number, attestation in enumerate(attestations):
            entry = dict(attestation) if isinstance(attestation, Mapping) else attestation
            if isinstance(entry, dict) and isinstance(entry.get("policy"), Mapping):
                entry["policy"] = self._content_policy(entry["policy"], f"{path}.attestations[{number}].policy",
                                                       policy_level=False)
            translated.append(entry)
        out["attestations"] = translated
        # policy-controller judges an authority with attestations by its attestations alone (the
        # .att path of its validator), without looking for a signature of the image.
        out.setdefault("requireSignature", False)

    def _content_policy(self, policy: Mapping[str, Any], path: str, *, policy_level: bool) -> dict[str, Any]:
        """A ``policy`` block; ``type: cue`` is refused by the schema, with its reason."""
        out = dict(policy)
        if "url" in out:  # older policy-controller releases fetched a bare URL, unpinned
            self.error(f"{path}.url", "a policy URL without sha256sum cannot be pinned; use remote: {url, sha256sum}")
            del out["url"]
        ref = out.get("configMapRef")
        if isinstance(ref, Mapping) and "namespace" in ref:
            self.result.warnings.append((f"{path}.configMapRef.namespace", "ignored: as policy-controller does, "
                                         "the ConfigMap is read from Signet's own namespace"))
            out["configMapRef"] = {k: v for k, v in ref.items() if k != "namespace"}
        if not policy_level:
            for name in ("fetchConfigFile", "includeSpec", "includeObjectMeta", "includeTypeMeta"):
                if name in out:
                    # policy-controller reads these for spec.policy only; on an attestation they do nothing.
                    self.result.warnings.append((f"{path}.{name}", "ignored: it applies to spec.policy only"))
                    del out[name]
        return out

    def _sources(self, out: dict[str, Any], path: str) -> None:
        sources = out.get("source")
        if sources is None:
            out.pop("source", None)
        elif isinstance(sources, list) and len(sources) > 1:
            self.error(f"{path}.source", "only single source is supported")
            del out["source"]

    def _key(self, key: Mapping[str, Any], path: str) -> dict[str, Any]:
        out = self.fields(key, "key", path)
        if "kms" in out:
            if out["kms"]:
                self.error(f"{path}.kms", _KMS)
            del out["kms"]
        algorithm = out.get("hashAlgorithm")
        if isinstance(algorithm, str):
            # policy-controller's signaturealgo: case and surrounding blanks do not matter; "" is sha256.
            normalised = algorithm.strip().lower()
            if normalised:
                out["hashAlgorithm"] = normalised
            else:
                del out["hashAlgorithm"]
        if out.get("data") == "":
            del out["data"]  # Go's omitempty: an empty key is no key
        self._secret_namespace(out, path)
        return out

    def _keyless(self, keyless: Mapping[str, Any], path: str) -> dict[str, Any]:
        out = self.fields(keyless, "keyless", path)
        url = out.pop("url", None)  # the Fulcio URL matters for signing, not for verification
        ca_cert = out.pop("ca-cert", None)
        if ca_cert is not None:
            if url:
                self.error(path, "expected exactly one, got both: url, ca-cert")
            elif isinstance(ca_cert, Mapping):
                out["caCert"] = self._ca_cert(ca_cert, f"{path}.ca-cert")
            else:
                out["caCert"] = ca_cert  # the schema reports its type
        return out

    def _ca_cert(self, ca_cert: Mapping[str, Any], path: str) -> dict[str, Any]:
        out = self.fields(ca_cert, "key", path)  # policy-controller's ca-cert is a key reference
        out.pop("hashAlgorithm", None)  # a digest means nothing for a CA
        if "kms" in out:
            if out["kms"]:
                self.error(f"{path}.kms", _KMS)
            del out["kms"]
        if out.get("data") == "":
            del out["data"]
        self._secret_namespace(out, path)
        return out

    def _secret_namespace(self, ref_holder: dict[str, Any], path: str) -> None:
        ref = ref_holder.get("secretRef")
        if not isinstance(ref, Mapping):
            return
        namespace = ref.get("namespace")
        if namespace in ("", None):
            ref_holder["secretRef"] = {k: v for k, v in ref.items() if k != "namespace"}
        elif namespace != self.system_namespace:
            # policy-controller only reads Secrets of its own namespace, and refuses any other.
            self.error(f"{path}.secretRef.namespace",
                       f"a Secret in namespace {namespace!r} cannot be used: keys are read only from Signet's own "
                       f"namespace ({self.system_namespace!r}), as policy-controller reads them only from its own")


def _unsigned_root(value: Any) -> bool:
    """policy-controller's ValidateRoot: a root.json without signatures (undecodable ones: the schema says why)."""
    try:
        root = json.loads(base64.b64decode("".join(value.split()), validate=True)) if isinstance(value, str) else None
    except (binascii.Error, ValueError):
        return False
    return isinstance(root, dict) and root.get("signatures") is None


def _trust_root_spec(spec: Mapping[str, Any], result: Translation) -> dict[str, Any]:
    out = _known_fields(spec, "trust root", "spec", result.errors)
    for kind in ("remote", "repository"):
        if isinstance(out.get(kind), Mapping):
            out[kind] = _known_fields(out[kind], kind, f"spec.{kind}", result.errors)
        source = out.get(kind)
        if isinstance(source, Mapping) and _unsigned_root(source.get("root")):
            result.errors.append((f"spec.{kind}.root", "missing signatures in root.json: not a signed TUF root"))
    if "sigstoreKeys" in out:
        conversion = sigstore_keys.convert(out.pop("sigstoreKeys"))
        result.errors.extend((f"spec.sigstoreKeys.{p}".rstrip("."), m) for p, m in conversion.errors)
        if not conversion.errors:
            if any(k in out for k in ("trustedRoot", "remote", "repository")):
                result.errors.append(("spec", "expected exactly one, got both: sigstoreKeys and "
                                      + ", ".join(k for k in ("trustedRoot", "remote", "repository") if k in out)))
            else:
                out["trustedRoot"] = conversion.document
    return out
