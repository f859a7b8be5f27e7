"""Log-entry body consistency: the entry must describe this very signature, key and artifact.

A valid entry for some *other* signature proves nothing about this one; skipping this check is
the CVE-2022-36056 class of bug. One checker per (kind, version) of Rekor body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives import serialization

from webhook.errors import VerificationError
from webhook.verify._fields import _PEM, STEP_ENTRY, _b64, _fail, _hex, _obj
from webhook.verify.dsse import DsseEnvelope
from webhook.verify.keys import spki_der
from webhook.verify.material import HASH_NAMES, SignedContent

if TYPE_CHECKING:
    from webhook.verify.tlog import TlogEntry

def _mismatch(what: str, found: str = "", expected: str = "") -> VerificationError:
    detail = f" (entry: {found}, signature: {expected})" if found or expected else ""
    return VerificationError(f"log entry is for a different {what}{detail}", step=STEP_ENTRY)


def _check_digest(algorithm: object, value: bytes, content: SignedContent, what: str) -> None:
    name = HASH_NAMES.get(algorithm) if isinstance(algorithm, str) else None
    if name != content.digest.algorithm or value != content.digest.value:
        raise _mismatch(what, f"{algorithm}:{value.hex()}", str(content.digest))


def _check_der_verifier(label: str, der: bytes, content: SignedContent) -> None:
    """``label`` is CERTIFICATE (``der`` a certificate) or PUBLIC KEY (``der`` an SPKI)."""
    if content.certificate is not None:
        if label != "CERTIFICATE" or der != content.certificate.public_bytes(serialization.Encoding.DER):
            raise _mismatch("certificate")
        return
    if label == "PUBLIC KEY" and der == spki_der(content.public_key):
        return
    raise _mismatch("public key")


def _check_pem_verifier(value: object, content: SignedContent) -> None:
    blocks = _PEM.findall(_b64(value, "log entry verifier"))
    if len(blocks) != 1:
        raise _fail("log entry verifier is not exactly one PEM block")
    label, text = blocks[0]
    try:
        der = base64.b64decode(b"".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _fail("log entry verifier PEM is not valid base64") from exc
    _check_der_verifier(label.decode(), der, content)


def _check_hashedrekord_v001(spec: Mapping[str, Any], content: SignedContent) -> None:
    data_hash = _obj(_obj(spec.get("data"), "spec.data").get("hash"), "spec.data.hash")
    _check_digest(data_hash.get("algorithm"), _hex(data_hash.get("value"), "spec.data.hash.value"), content,
                  "artifact digest")
    signature = _obj(spec.get("signature"), "spec.signature")
    if _b64(signature.get("content"), "spec.signature.content") != content.signature:
        raise _mismatch("signature")
    _check_pem_verifier(_obj(signature.get("publicKey"), "spec.signature.publicKey").get("content"), content)


def _dsse_envelope(content: SignedContent) -> DsseEnvelope:
    if content.envelope is None:
        raise _fail("log entry records a DSSE envelope but the signature is not one")
    return content.envelope


def _check_payload_hash(value: object, payload: bytes) -> None:
    payload_hash = _obj(value, "spec.payloadHash")
    logged = _hex(payload_hash.get("value"), "spec.payloadHash.value")
    if payload_hash.get("algorithm") != "sha256" or logged != hashlib.sha256(payload).digest():
        raise _mismatch("DSSE payload", f"{payload_hash.get('algorithm')}:{logged.hex()}",
                        f"sha256:{hashlib.sha256(payload).hexdigest()}")


def _check_listed_signature(
    signatures: object, sig_field: str, key_field: str, wanted: tuple[bytes, ...], content: SignedContent
) -> None:
    """DSSE-style entries list signatures; ours must be among them, logged with our signer."""
    if not isinstance(signatures, list):
        raise _fail("log entry signatures are not a list")
    for index, raw in enumerate(signatures):
        item = _obj(raw, f"log entry signature {index}")
        if _b64(item.get(sig_field), f"log entry signature {index}") in wanted:
            _check_pem_verifier(item.get(key_field), content)
            return
    raise _mismatch("signature")


def _check_envelope_hash(value: object, content: SignedContent, what: str) -> None:
    """A hash of the envelope as submitted: checkable only against the stored bytes of a ``.att`` layer."""
    if content.envelope_bytes is None:
        return
    envelope_hash = _obj(value, what)
    logged = _hex(envelope_hash.get("value"), f"{what}.value")
    expected = hashlib.sha256(content.envelope_bytes).digest()
    if envelope_hash.get("algorithm") != "sha256" or logged != expected:
        raise _mismatch("DSSE envelope", f"{envelope_hash.get('algorithm')}:{logged.hex()}",
                        f"sha256:{expected.hex()}")


def _check_dsse_v001(spec: Mapping[str, Any], content: SignedContent) -> None:
    _check_envelope_hash(spec.get("envelopeHash"), content, "spec.envelopeHash")
    _check_payload_hash(spec.get("payloadHash"), _dsse_envelope(content).payload)
    _check_listed_signature(spec.get("signatures"), "signature", "verifier", (content.signature,), content)


def _check_intoto_v001(spec: Mapping[str, Any], content: SignedContent) -> None:
    # The body keeps no signature, only hashes of the submitted envelope and of its payload, and the
    # signer: the envelope hash is what ties the entry to this signature, so without the stored
    # envelope bytes the entry cannot be bound at all.
    envelope = _dsse_envelope(content)
    if content.envelope_bytes is None:
        raise _fail("an intoto 0.0.1 entry records only a hash of the envelope as stored; it can vouch "
                    "only for a cosign .att layer, not for a re-serialized bundle envelope")
    spec_content = _obj(spec.get("content"), "spec.content")
    _check_envelope_hash(spec_content.get("hash"), content, "spec.content.hash")
    _check_payload_hash(spec_content.get("payloadHash"), envelope.payload)
    _check_pem_verifier(spec.get("publicKey"), content)


def _check_intoto_v002(spec: Mapping[str, Any], content: SignedContent) -> None:
    envelope = _dsse_envelope(content)
    spec_content = _obj(spec.get("content"), "spec.content")
    logged = _obj(spec_content.get("envelope"), "spec.content.envelope")
    if logged.get("payloadType") != envelope.payload_type:
        raise _mismatch("DSSE payload type", str(logged.get("payloadType")), envelope.payload_type)
    # Rekor drops the payload from the canonical body; a body that keeps it (base64 of the envelope's
    # base64 string) must still agree.
    if logged.get("payload") is not None and _b64(logged.get("payload"), "envelope.payload") not in (
        envelope.payload, base64.b64encode(envelope.payload)
    ):
        raise _mismatch("DSSE payload")
    _check_envelope_hash(spec_content.get("hash"), content, "spec.content.hash")
    _check_payload_hash(spec_content.get("payloadHash"), envelope.payload)
    # Signatures are stored as base64 of the envelope's base64 text; the raw form is accepted too.
    wanted = (content.signature, base64.b64encode(content.signature))
    _check_listed_signature(logged.get("signatures"), "sig", "publicKey", wanted, content)


def _check_hashedrekord_v002(spec: Mapping[str, Any], content: SignedContent) -> None:
    # The proto JSON name is hashedRekordV002; an early rekor-tiles example used hashedRekordV0_0_2.
    inner = _obj(spec.get("hashedRekordV002", spec.get("hashedRekordV0_0_2")), "spec.hashedRekordV002")
    data = _obj(inner.get("data"), "hashedRekordV002.data")
    _check_digest(data.get("algorithm"), _b64(data.get("digest"), "data.digest"), content, "artifact digest")
    signature = _obj(inner.get("signature"), "hashedRekordV002.signature")
    if _b64(signature.get("content"), "signature.content") != content.signature:
        raise _mismatch("signature")
    _check_v002_verifier(signature.get("verifier"), content)


def _check_v002_verifier(value: object, content: SignedContent) -> None:
    verifier = _obj(value, "signature.verifier")
    if verifier.get("x509Certificate") is not None:
        raw = _obj(verifier["x509Certificate"], "verifier.x509Certificate").get("rawBytes")
        _check_der_verifier("CERTIFICATE", _b64(raw, "x509Certificate.rawBytes"), content)
    else:
        raw = _obj(verifier.get("publicKey"), "verifier.publicKey").get("rawBytes")
        _check_der_verifier("PUBLIC KEY", _b64(raw, "publicKey.rawBytes"), content)


def _check_dsse_v002(spec: Mapping[str, Any], content: SignedContent) -> None:
    # Rekor v2 (rekor-tiles) logs a DSSE request as the payload's hash and the signatures with their
    # verifiers; sigstore-js sends attestations this way, sigstore-go as a hashedrekord over PAE.
    inner = _obj(spec.get("dsseV002", spec.get("dsseV0_0_2")), "spec.dsseV002")
    payload = _dsse_envelope(content).payload
    payload_hash = _obj(inner.get("payloadHash"), "dsseV002.payloadHash")
    algorithm = payload_hash.get("algorithm")
    name = HASH_NAMES.get(algorithm) if isinstance(algorithm, str) else None
    logged = _b64(payload_hash.get("digest"), "dsseV002.payloadHash.digest")
    if name is None or logged != hashlib.new(name, payload).digest():
        raise _mismatch("DSSE payload", f"{algorithm}:{logged.hex()}", f"sha256:{hashlib.sha256(payload).hexdigest()}")
    signatures = inner.get("signatures")
    if not isinstance(signatures, list):
        raise _fail("log entry signatures are not a list")
    for index, raw in enumerate(signatures):
        item = _obj(raw, f"log entry signature {index}")
        if _b64(item.get("content"), f"log entry signature {index}") == content.signature:
            _check_v002_verifier(item.get("verifier"), content)
            return
    raise _mismatch("signature")


_BODY_CHECKS: dict[tuple[str, str], Callable[[Mapping[str, Any], SignedContent], None]] = {
    ("hashedrekord", "0.0.1"): _check_hashedrekord_v001,
    ("hashedrekord", "0.0.2"): _check_hashedrekord_v002,
    ("dsse", "0.0.1"): _check_dsse_v001,
    ("dsse", "0.0.2"): _check_dsse_v002,
    ("intoto", "0.0.1"): _check_intoto_v001,
    ("intoto", "0.0.2"): _check_intoto_v002,
}


def check_body(entry: TlogEntry, content: SignedContent) -> None:
    """The log entry must record exactly this signature, signer and signed digest."""
    body = entry.body_json
    kind, version = body.get("kind"), body.get("apiVersion")
    if entry.kind is not None and (entry.kind, entry.version) != (kind, version):
        raise _fail(f"log entry declares {entry.kind} {entry.version} but its body is {kind} {version}")
    check = _BODY_CHECKS.get((kind, version)) if isinstance(kind, str) and isinstance(version, str) else None
    if check is None:
        raise _fail(f"unsupported log entry kind {kind!r} version {version!r}")
    check(_obj(body.get("spec"), "log entry spec"), content)
