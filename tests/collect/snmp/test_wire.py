"""snmp_wire, the v1/v2c codec and socket that replaced pysnmp's message pipeline for community polls.

Its reference is pysnmp itself: messages built and encoded by pysnmp/pyasn1 must decode to what
snmp_client.convert makes of pysnmp's objects, requests it encodes must decode in pyasn1 to what was asked,
and a poll of every recorded device must give the same points through both paths.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyasn1.codec.ber import decoder, encoder
from pysnmp.hlapi.v3arch.asyncio import SnmpEngine
from pysnmp.proto.api import v1, v2c

from pmaintd.collect.snmp import load_profiles, poll
from pmaintd.collect.snmp_client import Credentials, Endpoint, Session, WalkMemory, convert
from pmaintd.collect.snmp_wire import (
    END_OF_MIB_VIEW,
    GETBULK,
    GETNEXT,
    WireError,
    decode_response,
    encode_request,
)
from tests.collect.snmp.test_snmpsim import DEVICES

IF_DESCR = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2)
VALUES = [
    v2c.Integer(-2147483648), v2c.Integer(0), v2c.Integer32(2147483647),
    v2c.OctetString("Ethernet1/1 \u00e9t\u00e9"), v2c.OctetString(b"\x00\x1b\x21\xff\xfe\x80"), v2c.OctetString(b""),
    v2c.ObjectIdentifier((1, 3, 6, 1, 4, 1, 9, 12, 3, 1, 3, 798)), v2c.ObjectIdentifier((2, 999, 3)),
    v2c.IpAddress("10.255.0.1"), v2c.Counter32(0), v2c.Counter32(4294967295), v2c.Gauge32(2147483648),
    v2c.Unsigned32(4000000000), v2c.TimeTicks(4294967295), v2c.Counter64(18446744073709551615),
    v2c.Counter64(128), v2c.Opaque(b"\x9f\x78\x04\x3f\x80\x00\x00"), v2c.null,
    v2c.NoSuchObject(""), v2c.NoSuchInstance(""),
]


def _response(values, community="public", request_id=4242, status=0, index=0, api=v2c) -> bytes:
    pdu = api.GetResponsePDU()
    api.apiPDU.set_defaults(pdu)
    api.apiPDU.set_request_id(pdu, request_id)
    api.apiPDU.set_error_status(pdu, status)
    api.apiPDU.set_error_index(pdu, index)
    api.apiPDU.set_varbinds(pdu, [((*IF_DESCR, 2**32 - 1 - i, 0, 128), v) for i, v in enumerate(values)])
    msg = api.Message()
    api.apiMessage.set_defaults(msg)
    api.apiMessage.set_community(msg, community)
    api.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


def test_response_values_decode_as_convert_makes_them():
    resp = decode_response(_response([*VALUES, v2c.EndOfMibView("")]), 1, b"public")
    assert (resp.request_id, resp.error_status, resp.error_index) == (4242, 0, 0)
    assert [name for name, _ in resp.varbinds] == [(*IF_DESCR, 2**32 - 1 - i, 0, 128) for i in range(len(VALUES) + 1)]
    assert [v for _, v in resp.varbinds] == [convert(v) for v in VALUES] + [END_OF_MIB_VIEW]
    assert resp.varbinds[4][1] == "00:1b:21:ff:fe:80"  # binary strings are hex, as convert shows them


def test_v1_response_and_error_status():
    """SNMPv1 values read like v2c's. (pysnmp's v1 types are no rfc1902 types, so convert used to show v1
    strings and IpAddresses as latin-1 text: 'Ã©' for 'é', 'À\\x00\\x02\\x01' for 192.0.2.1.)"""
    values = [v1.Integer(-7), v1.OctetString("\u00e9t\u00e9".encode()), v1.OctetString(b"\x00\x1b\xfe"),
              v1.Counter(4294967295), v1.Gauge(5), v1.TimeTicks(9), v1.IpAddress("192.0.2.1"),
              v1.ObjectIdentifier((1, 3, 6)), v1.Null("")]
    resp = decode_response(_response(values, status=2, index=3, api=v1), 0, b"public")
    assert (resp.error_status, resp.error_index) == (2, 3)
    assert [v for _, v in resp.varbinds] == [-7, "\u00e9t\u00e9", "00:1b:fe", 4294967295, 5, 9, "192.0.2.1",
                                             "1.3.6", None]


def test_answers_for_another_version_or_community_are_refused():
    good = _response([v2c.Integer(1)])
    with pytest.raises(WireError, match="community"):
        decode_response(good, 1, b"private")
    with pytest.raises(WireError, match="version"):
        decode_response(good, 0, b"public")


@given(cut=st.integers(min_value=0, max_value=400), flip=st.integers(min_value=0, max_value=400),
       byte=st.integers(min_value=0, max_value=255))
def test_truncated_or_garbled_answers_are_wire_errors(cut, flip, byte):
    """Whatever a datagram holds, decoding returns a Response or raises WireError (which drops the datagram),
    never another exception that would escape into the event loop."""
    data = bytearray(_response(VALUES))
    data[flip % len(data)] = byte
    with contextlib.suppress(WireError):
        decode_response(bytes(data[: len(data) - cut % len(data)]), 1, b"public")


@pytest.mark.parametrize("pdu", [GETBULK, GETNEXT])
def test_requests_decode_in_pyasn1_as_asked(pdu):
    oids = [(1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6), (1, 3, 6, 1, 4, 1, 2636, 3, 1, 13, 1, 7, 2**32 - 1, 0, 127, 128),
            (2, 999, 1), (0, 0)]
    data = encode_request(1, "c\u00e9".encode(), pdu, 2**31 - 1, 0, 25 if pdu == GETBULK else 0, oids)
    msg, rest = decoder.decode(data, asn1Spec=v2c.Message())
    assert rest == b""
    assert (int(msg["version"]), bytes(msg["community"])) == (1, "c\u00e9".encode())
    body = v2c.apiMessage.get_pdu(msg)
    assert body.isSameTypeWith(v2c.GetBulkRequestPDU() if pdu == GETBULK else v2c.GetNextRequestPDU())
    assert int(v2c.apiPDU.get_request_id(body)) == 2**31 - 1
    if pdu == GETBULK:
        assert (int(v2c.apiBulkPDU.get_non_repeaters(body)), int(v2c.apiBulkPDU.get_max_repetitions(body))) == (0, 25)
    assert [(tuple(n), v.prettyPrint()) for n, v in v2c.apiPDU.get_varbinds(body)] == [(o, "") for o in oids]


@pytest.mark.service
@pytest.mark.parametrize("device", DEVICES)
def test_wire_and_pysnmp_poll_the_same_points(snmpsim, device):
    """Every recorded device polled through snmp_wire and through pysnmp (the reference): same discovery, same
    requests and varbinds, same points."""
    host, port = snmpsim.address.rsplit(":", 1)
    ep = Endpoint(device, host, int(port), Credentials("2c", community=device), 10.0, 1, 25)
    profiles = load_profiles()

    async def run(use_pysnmp):
        engine = await asyncio.to_thread(SnmpEngine) if use_pysnmp else None
        session = Session(engine, ep, use_pysnmp=use_pysnmp)
        try:
            return await poll(session, profiles, None, WalkMemory())
        finally:
            session.close()
            if engine is not None:
                engine.close_dispatcher()

    ref, new = asyncio.run(run(True)), asyncio.run(run(False))

    def shape(result):
        return sorted((p.measurement, sorted(p.tags.items()), sorted(p.fields.items())) for p in result.points)

    assert new.discovery == ref.discovery
    assert (new.requests, new.varbinds) == (ref.requests, ref.varbinds)
    assert len(new.points) > 10
    assert shape(new) == shape(ref)
