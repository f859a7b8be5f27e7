"""How one authority's signatures are found and verified: its trust root, its evidence rules, where they live.

From the authority and the materials read for the decision (:mod:`webhook.decision.materials`):

- the trust root: the default one, or ``keyless.trustRootRef``'s; its transparency logs replaced by
  those of ``rekor.trustRootRef`` and its CT logs by ``ctlog.trustRootRef``'s (narrowed to
  ``ctlog.url``); its certificate authorities by ``keyless.caCert`` (each certificate a trust
  anchor, ``webhook.policy.custom_roots``); its timestamp authorities by ``rfc3161timestamp``'s;
- the evidence rules (``Requirements``): a transparency log unless a ``caCert`` or
  ``rfc3161timestamp`` authority names none (as policy-controller, which then ignores the log),
  the SCT unless ``insecureIgnoreSCT``, an RFC 3161 timestamp when ``rfc3161timestamp`` asks;
- where: ``source`` (another repository, its tag prefix, its pull secrets' credentials).

Each derived trust root has a fingerprint of its own, so caches keyed by trust root never mix them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from webhook.decision.materials import Materials, PullCredentials
from webhook.decision.plans import PullSecretsRef, secret_of
from webhook.errors import SignetError, VerificationError
from webhook.oci.discovery import SignatureLocation
from webhook.oci.reference import parse_reference
from webhook.policy.authorities import Authority
from webhook.policy.custom_roots import with_certificate_authorities, with_timestamp_authorities
from webhook.policy.matching import referring_group
from webhook.policy.models import Policy
from webhook.verify.keys import PublicKey, spki_sha256
from webhook.verify.trustroot import TrustedRoot
from webhook.verify.verifier import Requirements

KEY_UNAVAILABLE = ("the public key named by key.secretRef is not available, so nothing can be accepted as signed "
                   "by it (signet's log has the reason)")
_MAX_DERIVED = 256


@dataclass(frozen=True)
class Lookup:
    """Everything that decides which signatures of an image verify for one authority."""

    root: TrustedRoot
    key: PublicKey | None = None
    requirements: Requirements = field(default_factory=Requirements)
    location: SignatureLocation | None = None
    credentials: PullCredentials | None = None
    """The ``signaturePullSecrets``' credentials; None: the workload's own are used."""

    def cache_key(self) -> tuple[object, ...]:
        """What the verified signatures depend on besides the image digest."""
        key_id = spki_sha256(self.key).hex() if self.key is not None else None
        return (self.root.fingerprint, key_id, self.requirements, self.location,
                self.credentials.fingerprint if self.credentials is not None else None)


def log_rule(authority: Authority) -> tuple[bool, str | None]:
    """(a log entry is required, from this Rekor URL or any of the trust root's logs)."""
    rekor = authority.keyless.rekor if authority.keyless is not None else (
        authority.key.rekor if authority.key is not None else None)
    if rekor is not None:
        return True, rekor.url.rstrip("/") if rekor.url else None
    if authority.keyless is None:
        return False, None  # key signatures need no log unless key.rekor says so
    # Fulcio certificates are short-lived: a log (or a TSA) dates them. A caCert without rekor, or an
    # rfc3161timestamp authority, uses no log at all, as in policy-controller.
    return authority.keyless.requires_log_entry and authority.rfc3161timestamp is None, None


def requirements_of(authority: Authority) -> Requirements:
    """The evidence rules of the authority's verification (see the module docstring)."""
    required, _url = log_rule(authority)
    # Entries a signature carries are verified whenever a log is required, and for key authorities
    # as always, except that a caCert or rfc3161timestamp authority naming no log does not consult one.
    consulted = required or (authority.key is not None and authority.rfc3161timestamp is None)
    return Requirements(transparency_log=consulted,
                        sct=not (authority.keyless is not None and authority.keyless.insecure_ignore_sct),
                        timestamp=authority.rfc3161timestamp is not None)


class RootDeriver:
    """Derived trust roots, memoised (deriving parses certificates); bounded."""

    def __init__(self) -> None:
        self._memo: OrderedDict[tuple[object, ...], TrustedRoot] = OrderedDict()

    def derive(self, key: tuple[object, ...], make: Callable[[], TrustedRoot]) -> TrustedRoot:
        root = self._memo.get(key)
        if root is None:
            root = self._memo[key] = make()
            if len(self._memo) > _MAX_DERIVED:
                self._memo.popitem(last=False)
        self._memo.move_to_end(key)
        return root


def _fingerprint(*parts: str) -> str:
    return hashlib.sha256("+".join(parts).encode()).hexdigest()


def _named(materials: Materials, policy: Policy, name: str) -> TrustedRoot:
    named = materials.roots.get((referring_group(policy), name))
    if named is None:
        raise VerificationError(f"TrustRoot {name!r} does not exist", step="trust root")
    if isinstance(named, SignetError):
        raise named
    return named


def authority_root(authority: Authority, policy: Policy, materials: Materials, deriver: RootDeriver) -> TrustedRoot:
    """The trust root the authority's signatures are verified against; VerificationError when it cannot be had."""
    keyless = authority.keyless
    root = _named(materials, policy, keyless.trust_root_ref) if keyless and keyless.trust_root_ref else materials.root
    rekor = keyless.rekor if keyless is not None else (authority.key.rekor if authority.key is not None else None)
    if rekor is not None and rekor.trust_root_ref is not None:
        logs = _named(materials, policy, rekor.trust_root_ref)
        base = root
        root = deriver.derive(("tlogs", base.fingerprint, logs.fingerprint), lambda: replace(
            base, tlogs=logs.tlogs, fingerprint=_fingerprint(base.fingerprint, "tlogs", logs.fingerprint)))
    if keyless is not None and keyless.ctlog is not None:
        root = _ct_logs(root, keyless.ctlog.trust_root_ref, keyless.ctlog.url, policy=policy, materials=materials,
                        deriver=deriver)
    if keyless is not None and keyless.ca_cert is not None:
        root = _with_ca(root, authority, policy, materials, deriver)
    if authority.rfc3161timestamp is not None:
        tsa = _named(materials, policy, authority.rfc3161timestamp.trust_root_ref)
        if not tsa.timestamp_authorities:
            raise VerificationError(f"TrustRoot {authority.rfc3161timestamp.trust_root_ref!r} has no timestamp "
                                    "authorities, so no timestamp can satisfy rfc3161timestamp", step="trust root")
        base = root
        root = deriver.derive(("tsa", base.fingerprint, tsa.fingerprint),
                              lambda: with_timestamp_authorities(base, tsa))
    return root


def _ct_logs(root: TrustedRoot, ref: str | None, url: str | None, *, policy: Policy, materials: Materials,
             deriver: RootDeriver) -> TrustedRoot:
    source = _named(materials, policy, ref) if ref else root
    logs = source.ctlogs
    if url:
        wanted = url.rstrip("/")
        logs = tuple(log for log in logs if log.base_url.rstrip("/") == wanted)
        if not logs:
            raise VerificationError(f"the trust root has no CT log at {url}, so no certificate can satisfy "
                                    "keyless.ctlog", step="trust root")
    base = root
    return deriver.derive(("ctlogs", base.fingerprint, source.fingerprint, url), lambda: replace(
        base, ctlogs=logs, fingerprint=_fingerprint(base.fingerprint, "ctlogs", source.fingerprint, url or "")))


def _with_ca(root: TrustedRoot, authority: Authority, policy: Policy, materials: Materials,
             deriver: RootDeriver) -> TrustedRoot:
    assert authority.keyless is not None and authority.keyless.ca_cert is not None
    ca_cert = authority.keyless.ca_cert
    pem = ca_cert.data
    if pem is None:
        assert ca_cert.secret_ref is not None
        material = materials.ca_certs.get(secret_of(policy, ca_cert.secret_ref.namespace, ca_cert.secret_ref.name))
        if material is None or material.pem is None:
            raise VerificationError(material.shown if material is not None else
                                    "the CA certificates named by keyless.caCert.secretRef were not read")
        pem = material.pem
    text = pem
    return deriver.derive(("ca", root.fingerprint, hashlib.sha256(text.encode()).hexdigest()),
                          lambda: with_certificate_authorities(root, text))


def authority_lookup(authority: Authority, policy: Policy, materials: Materials, deriver: RootDeriver, *,
                     inline_key: Callable[[str], PublicKey], namespace: str | None) -> Lookup:
    """The lookup of a key or keyless authority; VerificationError (safe to show) when it cannot be made."""
    key: PublicKey | None = None
    if authority.key is not None:
        if authority.key.data is not None:
            key = inline_key(authority.key.data)
        else:
            assert authority.key.secret_ref is not None
            material = materials.keys.get(secret_of(policy, authority.key.secret_ref.namespace,
                                                    authority.key.secret_ref.name))
            if material is None or material.key is None:
                raise VerificationError((material.shown if material else None) or KEY_UNAVAILABLE)
            key = material.key
    root = authority_root(authority, policy, materials, deriver)
    location, credentials = None, None
    source = authority.signature_source
    if source is not None:
        if source.repository is not None or source.tag_prefix:
            ref = parse_reference(source.repository) if source.repository is not None else None
            location = SignatureLocation(ref.registry if ref else None, ref.repository if ref else None,
                                         source.tag_prefix)
        if source.signature_pull_secrets:
            wanted = PullSecretsRef(namespace, tuple(s.name for s in source.signature_pull_secrets))
            credentials = materials.credentials.get(wanted)
            if credentials is None or credentials.store is None:
                raise VerificationError(credentials.shown if credentials is not None else
                                        "source.signaturePullSecrets were not read")
    return Lookup(root, key, requirements_of(authority), location, credentials)
