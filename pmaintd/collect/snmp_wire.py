"""SNMP v1/v2c requests without pysnmp's message pipeline: a small BER codec and one UDP socket per session.

Why: profiling one poll of a big device (snmpsim serving the Cisco Nexus 5000 recording: 46 GETBULKs, 2,500
varbinds, ~270 ms of client CPU) put ~70% of the CPU in pyasn1 decoding the responses into ASN.1 objects and
~15% more in pysnmp's message processing and request encoding; pmaintd's own code was ~5%. A community
message is a handful of nested TLVs, so this module decodes a response straight into the plain values the
collector keeps (the same values `snmp_client.convert` makes of pysnmp's objects). SNMPv3 (USM
authentication and privacy) stays with pysnmp.

Only what a manager needs: GET, GETNEXT and GETBULK requests, Response PDUs in, request-id matching,
per-try timeout and retries as net-snmp's -t/-r. Answers that do not parse, come from another address (the
socket is connected) or carry another request-id or community are dropped, as pysnmp drops them.
"""

from __future__ import annotations

import asyncio
import random
import socket
from dataclasses import dataclass

Oid = tuple[int, ...]
Value = int | str

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5


class _EndOfMibView:
    def __repr__(self) -> str:
        return "END_OF_MIB_VIEW"


END_OF_MIB_VIEW = _EndOfMibView()
"""The value of a varbind past the end of the agent's MIB (v2c endOfMibView)."""


class WireError(ValueError):
    """A datagram that is not a well-formed SNMP v1/v2c Response."""


@dataclass(frozen=True)
class Response:
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[Oid, Value | _EndOfMibView | None]]


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv_bytes(tag: int, body: bytes) -> bytes:
    return bytes((tag,)) + _length(len(body)) + body


def _int(n: int) -> bytes:
    return _tlv_bytes(0x02, n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True))


def encode_oid(oid: Oid) -> bytes:
    """BER content octets of an OBJECT IDENTIFIER (at least two arcs, as SNMP names always have)."""
    if len(oid) < 2 or oid[0] > 2 or (oid[0] < 2 and oid[1] >= 40) or min(oid) < 0:
        raise ValueError(f"not an SNMP object name: {'.'.join(map(str, oid))}")
    out = bytearray()
    for arc in (oid[0] * 40 + oid[1], *oid[2:]):
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


def encode_request(version: int, community: bytes, pdu: int, request_id: int, a: int, b: int,
                   oids: list[Oid]) -> bytes:
    """A request message; `a`, `b` are error-status/index (0, 0) for GET/GETNEXT, non-repeaters/max-repetitions
    for GETBULK. Every varbind's value is NULL."""
    null = b"\x05\x00"
    vbs = b"".join(_tlv_bytes(0x30, _tlv_bytes(0x06, encode_oid(o)) + null) for o in oids)
    body = _int(request_id) + _int(a) + _int(b) + _tlv_bytes(0x30, vbs)
    return _tlv_bytes(0x30, _int(version) + _tlv_bytes(0x04, community) + _tlv_bytes(pdu, body))


def _tlv(buf: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at pos; single-octet tags and definite lengths only."""
    if pos + 2 > end:
        raise WireError("truncated")
    tag, n = buf[pos], buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if not 0 < k <= 4 or pos + k > end:
            raise WireError("bad length")
        n = int.from_bytes(buf[pos : pos + k], "big")
        pos += k
    if pos + n > end:
        raise WireError("truncated")
    return tag, pos, pos + n


def _expect(buf: bytes, pos: int, end: int, tag: int) -> tuple[int, int]:
    t, s, e = _tlv(buf, pos, end)
    if t != tag:
        raise WireError(f"expected tag 0x{tag:02x}, got 0x{t:02x}")
    return s, e


def _signed(buf: bytes, s: int, e: int) -> int:
    if s == e:
        raise WireError("empty integer")
    return int.from_bytes(buf[s:e], "big", signed=True)


def decode_oid(buf: bytes, s: int, e: int) -> Oid:
    if s == e or buf[e - 1] & 0x80:
        raise WireError("bad object identifier")
    arcs: list[int] = []
    v = 0
    for octet in buf[s:e]:
        v = (v << 7) | (octet & 0x7F)
        if not octet & 0x80:
            arcs.append(v)
            v = 0
    first = arcs[0]
    head = (0, first) if first < 40 else (1, first - 40) if first < 80 else (2, first - 80)
    return (*head, *arcs[1:])


def _text(raw: bytes) -> str:
    """An OCTET STRING as `snmp_client.convert` shows it: UTF-8 text when it is, else colon-separated hex."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.hex(":")


def _value(buf: bytes, tag: int, s: int, e: int) -> Value | _EndOfMibView | None:
    if tag == 0x02:  # INTEGER / Integer32
        return _signed(buf, s, e)
    if tag == 0x04:  # OCTET STRING
        return _text(buf[s:e])
    if tag == 0x44:  # Opaque: pysnmp's is no rfc1902.OctetString, so convert shows it as str() does (latin-1)
        return buf[s:e].decode("iso-8859-1")
    if tag in (0x41, 0x42, 0x43, 0x46):  # Counter32, Gauge32/Unsigned32, TimeTicks, Counter64: unsigned
        if s == e:
            raise WireError("empty integer")
        return int.from_bytes(buf[s:e], "big")
    if tag == 0x06:
        return ".".join(map(str, decode_oid(buf, s, e)))
    if tag == 0x40:  # IpAddress (v1 NetworkAddress has the same encoding)
        if e - s != 4:
            raise WireError("IpAddress is not 4 octets")
        return ".".join(str(b) for b in buf[s:e])
    if tag in (0x05, 0x80, 0x81):  # NULL, noSuchObject, noSuchInstance
        return None
    if tag == 0x82:
        return END_OF_MIB_VIEW
    raise WireError(f"unknown value type 0x{tag:02x}")


def decode_response(buf: bytes, version: int, community: bytes) -> Response:
    """Parse a Response message of this version and community; WireError for anything else."""
    s, e = _expect(buf, 0, len(buf), 0x30)
    vs, ve = _expect(buf, s, e, 0x02)
    if _signed(buf, vs, ve) != version:
        raise WireError("another SNMP version")
    cs, ce = _expect(buf, ve, e, 0x04)
    if buf[cs:ce] != community:
        raise WireError("another community")
    ps, pe = _expect(buf, ce, e, RESPONSE)
    rs, re_ = _expect(buf, ps, pe, 0x02)
    es, ee = _expect(buf, re_, pe, 0x02)
    xs, xe = _expect(buf, ee, pe, 0x02)
    ls, le = _expect(buf, xe, pe, 0x30)
    varbinds: list[tuple[Oid, Value | _EndOfMibView | None]] = []
    pos = ls
    while pos < le:
        bs, be = _expect(buf, pos, le, 0x30)
        ns, ne = _expect(buf, bs, be, 0x06)
        tag, s2, e2 = _tlv(buf, ne, be)
        varbinds.append((decode_oid(buf, ns, ne), _value(buf, tag, s2, e2)))
        pos = be
    return Response(_signed(buf, rs, re_), _signed(buf, es, ee), _signed(buf, xs, xe), varbinds)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, version: int, community: bytes) -> None:
        self.version = version
        self.community = community
        self.waiting: dict[int, asyncio.Future[Response]] = {}
        self.last_error: str | None = None

    def datagram_received(self, data: bytes, addr: object) -> None:
        try:
            resp = decode_response(data, self.version, self.community)
        except WireError as exc:
            self.last_error = str(exc)
            return
        fut = self.waiting.get(resp.request_id)
        if fut is not None and not fut.done():
            fut.set_result(resp)

    def error_received(self, exc: Exception) -> None:
        """ICMP port unreachable and the like: the request times out, as it does with pysnmp."""


class CommunityChannel:
    """One agent, one connected UDP socket: requests with per-try timeout and retries. Close it when done."""

    def __init__(self, transport: asyncio.DatagramTransport, proto: _Protocol) -> None:
        self._transport = transport
        self._proto = proto
        self._next_id = random.randrange(1, 1 << 30)

    @classmethod
    async def open(cls, host: str, port: int, version: int, community: str) -> CommunityChannel:
        """Resolve and connect (IPv6 when the host has a colon, as pysnmp's Udp6TransportTarget); socket.gaierror
        when the name does not resolve."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        infos = await loop.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
        proto = _Protocol(version, community.encode())
        transport, _ = await loop.create_datagram_endpoint(lambda: proto, remote_addr=infos[0][4], family=family)
        return cls(transport, proto)

    @property
    def parse_error(self) -> str | None:
        """Why the last datagram that could not be parsed was dropped (for a timeout's message)."""
        return self._proto.last_error

    async def request(self, pdu: int, oids: list[Oid], a: int, b: int, timeout: float,
                      retries: int) -> Response | None:
        """Send one request, resending it up to `retries` times; None when no try got an answer in `timeout`."""
        request_id = self._next_id
        self._next_id = self._next_id % 0x7FFFFFFF + 1
        msg = encode_request(self._proto.version, self._proto.community, pdu, request_id, a, b, oids)
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._proto.waiting[request_id] = fut
        try:
            for _ in range(retries + 1):
                self._transport.sendto(msg)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
                except TimeoutError:
                    continue
            return None
        finally:
            del self._proto.waiting[request_id]
            fut.cancel()

    def close(self) -> None:
        self._transport.close()
