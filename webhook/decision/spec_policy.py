"""Step 6c of a decision: a policy's ``spec.policy`` over what its authorities matched (policy-controller's).

Once at least one authority passed, the policy-level policy judges the PolicyResult document
(``webhook.policy.policy_result``): every authority that passed, with the signatures and the
attestations (by name) that satisfied it, plus, as the policy asks, the admitted object's spec,
metadata and type (``include*``) and the image's config file per platform (``fetchConfigFile``).
It runs in the sandbox like attestation policies. A refusal denies with the policy's message; the
authorities' own results stand otherwise (the first that passed is reported).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from webhook.decision.attested import PolicyContext
from webhook.decision.policy_sources import resolve
from webhook.decision.verdicts import Result
from webhook.errors import VerificationError
from webhook.policy.attestations import SpecPolicy
from webhook.policy.policy_result import AuthorityMatch, policy_result_document

ConfigFiles = Callable[[], Awaitable[dict[str, Any]]]
"""The image's config file(s) keyed by platform (``os/arch[/variant]``), fetched on demand."""


async def judge(spec_policy: SpecPolicy, passed: Sequence[Result], policies: PolicyContext, *,
                workload: Mapping[str, Any] | None, config_files: ConfigFiles | None) -> Result:
    """``passed`` (at least one authority's success) judged by ``spec_policy``; the first success when it agrees."""
    first = passed[0]
    matches = {r.authority or f"authority-{i}": r.match or AuthorityMatch() for i, r in enumerate(passed)}
    config = None
    if spec_policy.fetch_config_file:
        if config_files is None:
            return _refused(first, "spec.policy needs the image's config file, which cannot be fetched here")
        config = await config_files()
    document = policy_result_document(
        matches, workload=workload, include_spec=spec_policy.include_spec,
        include_object_meta=spec_policy.include_object_meta, include_type_meta=spec_policy.include_type_meta,
        config=config)
    try:
        policy = await resolve(spec_policy, policies.owner, remote=policies.remote, config_maps=policies.config_maps)
    except VerificationError as exc:
        return _refused(first, exc.reason)
    verdict = await policies.runner.evaluate(policy, document)
    if not verdict.ok:
        return _refused(first, verdict.message)
    return first


def _refused(first: Result, message: str) -> Result:
    authorities = first.authority or "an authority"
    return Result(False, f"authority \"{authorities}\" passed, but spec.policy denied the image: {message}",
                  None, signer=first.signer, issuer=first.issuer, log_index=first.log_index)
