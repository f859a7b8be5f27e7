"""The API groups whose policy objects Signet reads: its own, and sigstore/policy-controller's."""

from __future__ import annotations

from typing import Final

from webhook.policy._base import GROUP

POLICY_CONTROLLER_GROUP: Final = "policy.sigstore.dev"
POLICY_CONTROLLER_API_VERSIONS: Final = frozenset({f"{POLICY_CONTROLLER_GROUP}/v1alpha1",
                                                   f"{POLICY_CONTROLLER_GROUP}/v1beta1"})
POLICY_CONTROLLER_KINDS: Final = frozenset({"ClusterImagePolicy", "TrustRoot"})


def qualified_key(kind: str, api_group: str, name: str) -> str:
    """``Kind/name`` for Signet's own group, ``Kind.<group>/name`` (kubectl's spelling) for another one.

    Keys identify objects in a policy set: policy-controller's object never replaces Signet's
    object of the same kind and name.
    """
    return f"{kind}/{name}" if api_group == GROUP else f"{kind}.{api_group}/{name}"
