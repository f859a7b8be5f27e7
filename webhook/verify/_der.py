"""Tiny DER helpers for the few values Sigstore wraps in DER inside otherwise opaque bytes.

Fulcio encodes most of its certificate extensions (OIDs ``1.3.6.1.4.1.57264.1.8`` and up) and the
OtherName SAN as a DER string; ``cryptography`` hands them back as raw bytes. Only a single,
complete, definite-length TLV is accepted: trailing bytes or a truncated value mean the input was
not what Fulcio writes, and guessing would let two different encodings compare equal.
"""

from __future__ import annotations

# Universal tags of the ASN.1 string types Fulcio or Go's asn1 package may emit for these values.
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
_STRING_TAGS = frozenset({UTF8_STRING, PRINTABLE_STRING, IA5_STRING})


class DERError(ValueError):
    """The bytes are not the single DER value expected."""


def read_tlv(data: bytes) -> tuple[int, bytes]:
    """Split ``data`` holding exactly one DER TLV into (tag, value)."""
    if len(data) < 2:
        raise DERError("truncated DER value")
    tag, first = data[0], data[1]
    if tag & 0x1F == 0x1F:
        # High tag numbers never occur in the values we read; refusing them keeps the parser tiny.
        raise DERError("multi-byte DER tags are not supported")
    offset = 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0:
            raise DERError("indefinite length is not DER")
        if count > 4:
            raise DERError("DER length is implausibly large")
        if len(data) < offset + count:
            raise DERError("truncated DER length")
        length = int.from_bytes(data[offset:offset + count], "big")
        if length < 0x80 or data[offset] == 0:
            raise DERError("DER length is not minimally encoded")
        offset += count
    if len(data) != offset + length:
        raise DERError("DER value length does not match its content")
    return tag, data[offset:]


def decode_string(data: bytes) -> str:
    """Decode one DER UTF8String (or Printable/IA5String) into text."""
    tag, value = read_tlv(data)
    if tag not in _STRING_TAGS:
        raise DERError(f"expected a DER string, found tag 0x{tag:02x}")
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DERError("DER string is not valid UTF-8") from exc
