"""A minimal DER encoder: just enough ASN.1 to build RFC 3161 responses and X.509 extension values.

``cryptography`` parses these structures but offers no builder for CMS/TSP, so the kit writes the
bytes itself; every helper returns a complete TLV so callers compose values like ASN.1 text.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from cryptography import x509

SEQUENCE = 0x30
SET = 0x31
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
UTF8_STRING = 0x0C
GENERALIZED_TIME = 0x18


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    """One TLV with a single-byte tag."""
    return bytes([tag]) + _length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return tlv(SEQUENCE, b"".join(items))


def set_of(items: Iterable[bytes]) -> bytes:
    """A DER SET OF: elements sorted by their encodings, as DER requires."""
    return tlv(SET, b"".join(sorted(items)))


def integer(value: int) -> bytes:
    """A minimal two's-complement INTEGER."""
    size = max(1, (value.bit_length() + 8) // 8)
    return tlv(INTEGER, value.to_bytes(size, "big", signed=True))


def octet_string(value: bytes) -> bytes:
    return tlv(OCTET_STRING, value)


def null() -> bytes:
    return tlv(NULL, b"")


def utf8_string(value: str) -> bytes:
    return tlv(UTF8_STRING, value.encode())


def oid(value: x509.ObjectIdentifier | str) -> bytes:
    """An OBJECT IDENTIFIER from its dotted string."""
    dotted = value.dotted_string if isinstance(value, x509.ObjectIdentifier) else value
    arcs = [int(part) for part in dotted.split(".")]
    encoded = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        rest = arc >> 7
        while rest:
            chunk.append(0x80 | (rest & 0x7F))
            rest >>= 7
        encoded.extend(reversed(chunk))
    return tlv(OBJECT_IDENTIFIER, bytes(encoded))


def generalized_time(when: datetime) -> bytes:
    """GeneralizedTime ``YYYYMMDDHHMMSSZ`` (DER forbids a zero fraction, so whole seconds only)."""
    utc = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return tlv(GENERALIZED_TIME, utc.strftime("%Y%m%d%H%M%SZ").encode())


def explicit(number: int, content: bytes) -> bytes:
    """``[number] EXPLICIT``: a constructed context tag wrapping a whole TLV."""
    return tlv(0xA0 | number, content)


def implicit_constructed(number: int, inner_tlv: bytes) -> bytes:
    """``[number] IMPLICIT`` of a constructed type: keep the content, replace the tag."""
    return tlv(0xA0 | number, strip_tag(inner_tlv))


def strip_tag(value: bytes) -> bytes:
    """The content octets of one TLV."""
    first = value[1]
    if first < 0x80:
        return value[2 : 2 + first]
    size = first & 0x7F
    length = int.from_bytes(value[2 : 2 + size], "big")
    return value[2 + size : 2 + size + length]


def algorithm_identifier(algorithm: str, *, with_null: bool = False) -> bytes:
    """An AlgorithmIdentifier; digests conventionally carry NULL parameters, ECDSA none."""
    return sequence(oid(algorithm), null()) if with_null else sequence(oid(algorithm))
