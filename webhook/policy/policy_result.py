"""The input of a policy-level ``spec.policy``: policy-controller's PolicyResult, built from plain data.

policy-controller evaluates ``spec.policy`` once at least one authority passed, over the JSON of
(pkg/webhook/validator_result.go; ``omitempty`` everywhere, so empty values are absent)::

    authorityMatches:             one entry per authority that passed, by authority name
      <name>:
        signatures: [Signature]   an authority without attestations
        attestations:             an authority with attestations, by attestation name
          <attestation>: [Signature + predicateType]
        static: true              a static pass authority
    config:    {"os/arch[/variant][:os.version]": image config}   fetchConfigFile: true
    spec:      the admitted object's spec                          includeSpec: true
    metadata:  the admitted object's metadata                      includeObjectMeta: true
    typemeta:  {apiVersion, kind} of the admitted object           includeTypeMeta: true

    Signature: {id, subject, issuer, githubWorkflowTrigger, githubWorkflowSha,
                githubWorkflowName, githubWorkflowRepo, githubWorkflowRef}

``id`` is the hex digest of the signature's layer (or bundle); ``subject`` / ``issuer`` and the five
GitHub claims (the raw 1.3.6.1.4.1.57264.1.2–.6 extensions) come from the Fulcio certificate, so a
key signature has only ``id``. policy-controller omits ``typemeta`` for a bare Pod; Signet
includes it whenever it is asked for, which is what its own allow-only-pods example expects.
The same document is Rego's ``input``; CEL sees its top-level keys as variables (cel.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AuthorityMatch", "MatchedAttestation", "MatchedSignature", "platform_key", "policy_result_document"]

# Signet's claim names (policy/authorities.py FULCIO_EXTENSION_OIDS) → policy-controller's JSON names.
_GITHUB_CLAIMS = {
    "githubWorkflowTrigger": "githubWorkflowTrigger",
    "githubWorkflowSHA": "githubWorkflowSha",
    "githubWorkflowName": "githubWorkflowName",
    "githubWorkflowRepository": "githubWorkflowRepo",
    "githubWorkflowRef": "githubWorkflowRef",
}


@dataclass(frozen=True)
class MatchedSignature:
    """A verified signature that satisfied an authority."""

    id: str
    subject: str = ""
    issuer: str = ""
    claims: Mapping[str, str] = field(default_factory=dict)  # Fulcio claims by Signet's names

    def document(self) -> dict[str, Any]:
        fields = {"id": self.id, "subject": self.subject, "issuer": self.issuer}
        fields.update({json_name: self.claims.get(name, "") for name, json_name in _GITHUB_CLAIMS.items()})
        return {key: value for key, value in fields.items() if value}


@dataclass(frozen=True)
class MatchedAttestation(MatchedSignature):
    """A verified attestation that satisfied an authority's attestation requirement."""

    predicate_type: str = ""

    def document(self) -> dict[str, Any]:
        fields = super().document()
        if self.predicate_type:
            fields["predicateType"] = self.predicate_type
        return fields


@dataclass(frozen=True)
class AuthorityMatch:
    """What made one authority pass: its signatures, its attestations by name, or a static pass."""

    signatures: Sequence[MatchedSignature] = ()
    attestations: Mapping[str, Sequence[MatchedAttestation]] = field(default_factory=dict)
    static: bool = False

    def document(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.signatures:
            fields["signatures"] = [s.document() for s in self.signatures]
        if self.attestations:
            fields["attestations"] = {name: [a.document() for a in found]
                                      for name, found in self.attestations.items()}
        if self.static:
            fields["static"] = True
        return fields


def policy_result_document(authority_matches: Mapping[str, AuthorityMatch], *,
                           workload: Mapping[str, Any] | None = None, include_spec: bool = False,
                           include_object_meta: bool = False, include_type_meta: bool = False,
                           config: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The document ``spec.policy`` is evaluated on; ``config`` only when ``fetchConfigFile`` asked for it.

    ``workload`` is the admitted object as the API server sent it (Pod, Deployment, CronJob...).
    """
    document: dict[str, Any] = {}
    matches = {name: match.document() for name, match in authority_matches.items()}
    if matches:
        document["authorityMatches"] = matches
    if config:
        document["config"] = dict(config)
    if workload is not None:
        if include_spec and workload.get("spec") is not None:
            document["spec"] = workload["spec"]
        if include_object_meta and workload.get("metadata") is not None:
            document["metadata"] = workload["metadata"]
        if include_type_meta:
            type_meta = {key: workload[key] for key in ("apiVersion", "kind") if workload.get(key)}
            if type_meta:
                document["typemeta"] = type_meta
    return document


def platform_key(image_config: Mapping[str, Any]) -> str:
    """The key of an image config in ``config``: go-containerregistry's ``os/arch[/variant][:os.version]``."""
    os_name = str(image_config.get("os") or "")
    if not os_name:
        return ""
    key = os_name
    for part in ("architecture", "variant"):
        if image_config.get(part):
            key += "/" + str(image_config[part])
    if image_config.get("os.version"):
        key += ":" + str(image_config["os.version"])
    return key
