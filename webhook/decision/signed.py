"""One authority's signatures judged: which verified signatures it accepts and why it accepts none.

An accepted signature verified (``webhook.images``), was made by one of the authority's
identities (or with its key), is in the authority's ``signatureFormat`` when it names one, and is
recorded in a transparency log when the authority's log rule asks for it.
"""

from __future__ import annotations

from dataclasses import replace

from webhook.decision.verdicts import Result
from webhook.images import LAYOUT_BUNDLE, LAYOUT_LEGACY, ImageSignatures, ImageVerification, SignatureOutcome
from webhook.policy.policy_result import AuthorityMatch, MatchedSignature
from webhook.verify.identity import Policy as IdentityPolicy
from webhook.verify.result import VerifiedSignature


def logged_as_required(verified: VerifiedSignature, required: bool, url: str | None) -> bool:
    """No log required, or the signature has a verified entry in the required log (any of the root's, or ``url``)."""
    if not required:
        return True
    return any(url is None or proof.log_url.rstrip("/") == url for proof in verified.log_proofs)


def verdict(name: str, signatures: ImageSignatures, policy: IdentityPolicy | None, log_required: bool = False,
            log_url: str | None = None, *, signature_format: str | None = None) -> Result:
    """The authority named ``name`` against the verified signatures: the first accepted one, or why none is."""
    verification = in_format(signatures.evaluate(policy), signature_format)
    if signature_format is not None and not verification.signatures and signatures.checked:
        return Result(False, f"no signatures in the {signature_format} format (signatureFormat) found for "
                      f"{verification.image}; {len(signatures.checked)} of the other format not counted", name)
    accepted = [v for v in verification.satisfied if logged_as_required(v, log_required, log_url)]
    if verification.ok and not accepted:
        signer = verification.satisfied[0].signer
        where = f"in the Rekor log {log_url}" if log_url else "in a transparency log"
        return Result(False, f"signed as required but not recorded {where}", name,
                      signer=signer.subject if signer else None, issuer=signer.issuer if signer else None)
    if accepted:
        verified = accepted[0]
        signer = verified.signer
        matched = [matched_signature(o) for o in verification.signatures
                   if o.satisfied and o.verified is not None and logged_as_required(o.verified, log_required, log_url)]
        return Result(True, "verified", name, signer=signer.subject if signer else "(public key)",
                      issuer=signer.issuer if signer else None, log_index=verified.log_index,
                      match=AuthorityMatch(matched))
    closest = next((o for o in verification.signatures if o.signer is not None), None)
    return Result(False, verification.explain().replace("\n", "; "), name,
                  infrastructure=verification.infrastructure_failure,
                  signer=closest.signer.subject if closest and closest.signer else None,
                  issuer=closest.signer.issuer if closest and closest.signer else None,
                  log_index=closest.log_index if closest else None)


def in_format(verification: ImageVerification, signature_format: str | None) -> ImageVerification:
    """Only the signatures ``signatureFormat`` counts: cosign's ``.sig`` layers (legacy) or bundles."""
    if signature_format is None:
        return verification
    wanted = LAYOUT_BUNDLE if signature_format == "bundle" else LAYOUT_LEGACY
    kept = [o for o in verification.signatures if o.layout == wanted]
    notes = list(verification.notes)
    if len(kept) < len(verification.signatures):
        notes.append(f"{len(verification.signatures) - len(kept)} signature(s) not counted: signatureFormat "
                     f"{signature_format} counts {wanted} signatures only")
    return replace(verification, signatures=kept, notes=notes)


def matched_signature(outcome: SignatureOutcome) -> MatchedSignature:
    """The ``authorityMatches`` entry of one signature: its layer digest and who signed it."""
    signer = outcome.signer
    return MatchedSignature(id=outcome.checked.layer_digest.partition(":")[2], subject=signer.subject if signer else "",
                            issuer=signer.issuer if signer else "", claims=dict(signer.extensions) if signer else {})
