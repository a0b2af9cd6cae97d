"""Read the few fields the tls probe needs from a DER certificate, with no extra package.

`ssl.getpeercert()` returns a dict only for a *verified* peer; with verification off it
returns `{}` and only the DER bytes are available. Decoding those needs either the
`cryptography` package (not a runtime dependency), CPython's private
`ssl._ssl._test_decode_cert` (a test hook on a temp file, may vanish) or this: a small
reader for the fixed outer shape of an X.509 certificate (RFC 5280 section 4.1).
Only issuer, validity and subject are read; extensions are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

_SEQUENCE, _SET, _OID, _VERSION = 0x30, 0x31, 0x06, 0xA0
_UTC_TIME, _GENERALIZED_TIME = 0x17, 0x18
# Attribute type OIDs (2.5.4.x), DER-encoded, with their usual short names.
_NAMES = {
    bytes.fromhex("550403"): "CN",
    bytes.fromhex("550406"): "C",
    bytes.fromhex("550407"): "L",
    bytes.fromhex("550408"): "ST",
    bytes.fromhex("55040a"): "O",
    bytes.fromhex("55040b"): "OU",
}
_TEXT = {0x0C: "utf-8", 0x13: "latin-1", 0x14: "latin-1", 0x16: "latin-1", 0x1E: "utf-16-be"}


@dataclass(frozen=True)
class CertInfo:
    """What the tls probe reports about a certificate."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime


def parse_certificate(der: bytes) -> CertInfo:
    """Decode subject, issuer and validity; raises ValueError on anything malformed."""
    try:
        _, start, end = _element(der, 0, _SEQUENCE)  # Certificate
        _, start, end = _element(der, start, _SEQUENCE)  # TBSCertificate
        fields = _children(der, start, end)
        if fields and fields[0][0] == _VERSION:
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject, ...
        _, _, issuer, validity, subject = fields[:5]
        times = _children(der, validity[1], validity[2])
        return CertInfo(
            subject=_name(der, subject),
            issuer=_name(der, issuer),
            not_before=_time(der, times[0]),
            not_after=_time(der, times[1]),
        )
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed certificate: {exc}") from None


_Element = tuple[int, int, int]  # tag, content start, content end


def _element(der: bytes, pos: int, tag: int | None = None) -> _Element:
    """The tag and content span of the element at `pos` (definite lengths, as DER requires)."""
    found, length = der[pos], der[pos + 1]
    pos += 2
    if length & 0x80:
        size = length & 0x7F
        if size == 0 or size > 4 or pos + size > len(der):
            raise ValueError("malformed certificate: bad length")
        length = int.from_bytes(der[pos : pos + size], "big")
        pos += size
    if tag is not None and found != tag:
        raise ValueError(f"malformed certificate: expected tag {tag:#x}, found {found:#x}")
    if pos + length > len(der):
        raise ValueError("malformed certificate: truncated")
    return found, pos, pos + length


def _children(der: bytes, start: int, end: int) -> list[_Element]:
    out = []
    while start < end:
        element = _element(der, start)
        out.append(element)
        start = element[2]
    return out


def _name(der: bytes, name: _Element) -> str:
    """The CN when there is one, else the known attributes as `O=Acme, OU=Ops`."""
    parts: list[tuple[str, str]] = []
    for rdn in _children(der, name[1], name[2]):  # SET OF AttributeTypeAndValue
        for _, start, end in _children(der, rdn[1], rdn[2]):
            (_, o_start, o_end), (v_tag, v_start, v_end) = _children(der, start, end)[:2]
            label = _NAMES.get(der[o_start:o_end])
            if label is not None:
                parts.append((label, der[v_start:v_end].decode(_TEXT.get(v_tag, "latin-1"))))
    common = [value for label, value in parts if label == "CN"]
    if common:
        return common[-1]  # the most specific CN comes last in DER order
    return ", ".join(f"{label}={value}" for label, value in parts)


def _time(der: bytes, element: _Element) -> datetime:
    tag, start, end = element
    text = der[start:end].decode("ascii")
    if tag == _UTC_TIME:  # YYMMDDHHMMSSZ; RFC 5280: YY >= 50 is 19YY
        text = ("19" if int(text[:2]) >= 50 else "20") + text
    elif tag != _GENERALIZED_TIME:
        raise ValueError(f"malformed certificate: time has tag {tag:#x}")
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise ValueError(f"malformed certificate: bad time {text!r}") from None
