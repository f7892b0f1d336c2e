"""Read .snmprec recordings the way snmpsim serves them, to compute expected values independently of pmaintd."""

from __future__ import annotations

import bz2
import ipaddress
from pathlib import Path

Value = int | str


def _decode_octets(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex(":")


def parse_value(tag: str, text: str) -> Value | None:
    """snmprec type tags: 2 Integer, 4 OctetString, 5 Null, 6 OID, 64 IpAddress, 65 Counter32, 66 Gauge32,
    67 TimeTicks, 68 Opaque, 70 Counter64; an 'x' suffix means the value is hex."""
    hexed = tag.endswith("x")
    base = tag.rstrip("x")
    if base in ("2", "65", "66", "67", "70"):
        return int(text)
    if base in ("4", "68"):
        return _decode_octets(bytes.fromhex(text) if hexed else text.encode())
    if base == "6":
        return text
    if base == "64":
        return str(ipaddress.IPv4Address(bytes.fromhex(text))) if hexed else text
    return None


def load(path: Path) -> dict[str, Value]:
    """{OID: value} for every record (comments and variation-module records skipped)."""
    raw = path.read_bytes()
    text = bz2.decompress(raw) if path.name.endswith(".bz2") else raw
    out: dict[str, Value] = {}
    for line in text.decode("utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        oid, tag, value = line.split("|", 2)
        if ":" in tag:
            continue
        v = parse_value(tag, value)
        if v is not None:
            out[oid] = v
    return out


def column(rec: dict[str, Value], col: str) -> dict[str, Value]:
    """{row index: value} of one table column."""
    prefix = col + "."
    return {oid[len(prefix):]: v for oid, v in rec.items() if oid.startswith(prefix)}
