"""The SNMP collector against net-snmp's snmpd on loopback: v1, v2c, v3 authPriv, wrong credentials, and
concurrency (an agent that never answers does not hold back the others)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import time

import pytest
from pyasn1.type import univ
from pysnmp.proto import rfc1155, rfc1902

from pmaintd.collect import CollectError
from pmaintd.collect.snmp_client import convert
from tests import services
from tests.collect.snmp.helpers import collector, poll_twice
from tests.conftest import unavailable

pytestmark = pytest.mark.service


def _secret(tmp_path, name: str, value: str):
    p = tmp_path / name
    p.write_text(value + "\n")
    return str(p)


def _v3(tmp_path, snmpd, user, *, auth_password=None, priv_password=None, priv_protocol=None, name="v3"):
    return {
        "name": name, "address": snmpd.address, "version": "3", "user": user.name,
        "auth_protocol": user.auth_protocol,
        "auth_password_file": _secret(tmp_path, f"{name}.auth", auth_password or user.auth_password),
        "priv_protocol": priv_protocol or user.priv_protocol,
        "priv_password_file": _secret(tmp_path, f"{name}.priv", priv_password or user.priv_password),
    }


def _snmpwalk_ifdescr(snmpd) -> dict[str, str]:
    """The reference: net-snmp's own snmpwalk of ifDescr, {ifIndex: ifDescr}."""
    out = subprocess.run(["snmpwalk", "-v2c", "-c", "public", "-On", "-Oq", "-Ov", "-OX", snmpd.address,
                          "1.3.6.1.2.1.2.2.1.1"], capture_output=True, text=True, check=True, env={"MIBS": ""})
    idx = [line.strip() for line in out.stdout.splitlines() if line.strip()]
    descr = subprocess.run(["snmpwalk", "-v2c", "-c", "public", "-Oqv", snmpd.address, "1.3.6.1.2.1.2.2.1.2"],
                           capture_output=True, text=True, check=True, env={"MIBS": ""}).stdout.splitlines()
    return dict(zip(idx, [d.strip().strip('"') for d in descr], strict=True))


def _interfaces(points):
    return {p.tags["ifIndex"]: p for p in points if p.measurement == "interface"}


@pytest.mark.parametrize("version", ["1", "2c"])
def test_community_versions(snmpd, version):
    coll = collector([{"name": "lo", "address": snmpd.address, "version": version, "community": "public"}])
    points = coll.collect(coll.targets()[0])
    ifs = _interfaces(points)
    assert {k: p.tags["ifDescr"] for k, p in ifs.items()} == _snmpwalk_ifdescr(snmpd)
    assert "$(id)" in snmpd.sys_name and '"' in snmpd.sys_name  # the fixture's sysName is hostile on purpose
    assert all(p.tags["sysName"] == snmpd.sys_name and p.tags["source"] == "lo" for p in points)
    lo = next(p for p in ifs.values() if p.tags["ifDescr"] == "lo")
    assert lo.fields["ifType"] == 24  # softwareLoopback
    assert lo.fields["ifOperStatus"] == 1
    # v1 has no Counter64: the 64-bit counters exist only over v2c.
    assert ("ifHCInOctets" in lo.fields) == (version == "2c")
    assert coll.status["lo"].profile == "net-snmp"
    assert any(p.measurement == "snmp_storage" for p in points)
    assert any(p.measurement == "snmp_diskio" for p in points)  # UCD-DISKIO-MIB, net-snmp profile only


@pytest.mark.parametrize("user_index", [0, 1, 2], ids=["SHA-AES128", "SHA256-AES256", "SHA-AES256-keyext"])
def test_v3_authpriv(snmpd, tmp_path, user_index):
    user = snmpd.users[user_index]
    coll = collector([_v3(tmp_path, snmpd, user)])
    points = coll.collect(coll.targets()[0])
    assert {p.tags["sysName"] for p in points} == {snmpd.sys_name}
    assert {k: p.tags["ifDescr"] for k, p in _interfaces(points).items()} == _snmpwalk_ifdescr(snmpd)


def test_wrong_community_is_a_clear_error(snmpd):
    coll = collector([{"name": "edge-1", "address": snmpd.address, "community": "not-the-community"}],
                     timeout="300ms", retries=1)
    with pytest.raises(CollectError) as exc:
        coll.collect(coll.targets()[0])
    assert str(exc.value) == "target edge-1: no response within 0.3s x 2 tries (wrong community or unreachable)"
    assert coll.status["edge-1"].up is False
    assert coll.status["edge-1"].error == str(exc.value)


def test_wrong_v3_auth_password_is_a_clear_error(snmpd, tmp_path):
    coll = collector([_v3(tmp_path, snmpd, snmpd.users[0], auth_password="not-the-password", name="core-2")])
    with pytest.raises(CollectError) as exc:
        coll.collect(coll.targets()[0])
    assert str(exc.value) == ("target core-2: SNMPv3 authentication failed (wrongDigest) — "
                              "check auth_protocol/auth_password_file")
    assert "not-the-password" not in str(exc.value)


def test_wrong_v3_priv_password_and_unknown_user(snmpd, tmp_path):
    coll = collector([_v3(tmp_path, snmpd, snmpd.users[0], priv_password="wrong-priv-pass", name="p")],
                     timeout="300ms", retries=0)
    with pytest.raises(CollectError, match=r"^target p: no response within 0.3s x 1 try \(wrong "
                                           r"priv_password_file/priv_protocol"):
        coll.collect(coll.targets()[0])
    ghost = {**_v3(tmp_path, snmpd, snmpd.users[0], name="g"), "user": "nobody"}
    coll = collector([ghost])
    with pytest.raises(CollectError, match=r"^target g: SNMPv3 user 'nobody' is unknown to the agent"):
        coll.collect(coll.targets()[0])


def test_black_holed_agent_does_not_delay_the_others(snmpd):
    """One agent is a UDP socket that never answers (bound, so nothing else can take the port). Polled
    together, the good agent finishes long before the dead one's own timeout x tries, and the dead one fails
    after about that budget, marked down."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    try:
        targets = [
            {"name": "dead", "address": f"127.0.0.1:{hole.getsockname()[1]}", "community": "public",
             "timeout": "1s", "retries": 1},
            {"name": "good", "address": snmpd.address, "community": "public", "timeout": "1s"},
        ]
        coll = collector(targets)
        done: dict[str, float] = {}

        async def timed(t, start):
            try:
                return await coll.acollect(t)
            finally:
                done[t.name] = time.monotonic() - start

        async def run():
            start = time.monotonic()
            try:
                return await asyncio.gather(*(timed(t, start) for t in coll.targets()), return_exceptions=True)
            finally:
                await coll.aclose()

        dead, good = asyncio.run(run())
    finally:
        hole.close()
    assert isinstance(dead, CollectError)
    assert str(dead) == "target dead: no response within 1s x 2 tries (wrong community or unreachable)"
    assert isinstance(good, list) and good
    assert done["good"] < 1.5, done  # far below the dead agent's 2 s budget
    assert 1.9 <= done["dead"] < 6, done
    assert coll.status["dead"].up is False and coll.status["good"].up is True


def test_acollect_many_returns_failures_per_target(snmpd):
    coll = collector([
        {"name": "a", "address": snmpd.address, "community": "public"},
        {"name": "b", "address": snmpd.address, "community": "wrong", "timeout": "200ms", "retries": 0},
    ])

    async def run():
        try:
            return await coll.acollect_many()
        finally:
            await coll.aclose()

    out = asyncio.run(run())
    assert isinstance(out["a"], list) and any(p.measurement == "interface" for p in out["a"])
    assert isinstance(out["b"], CollectError) and "target b: no response" in str(out["b"])


def test_targets_carry_interval_and_deadline(snmpd):
    coll = collector([
        {"name": "a", "address": snmpd.address, "community": "public"},
        {"name": "b", "address": snmpd.address, "community": "public", "interval": "15s"},
    ], interval="2m")
    got = {t.name: (t.interval, t.timeout) for t in coll.targets()}
    assert got == {"a": (120.0, 120.0), "b": (15.0, 15.0)}


def test_poll_deadline_is_the_interval():
    """An agent that never answers, with more retries than its interval allows: the poll is cut at the
    interval (its deadline), with an error that says so, instead of running into the next poll."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    try:
        coll = collector([{"name": "slow", "address": f"127.0.0.1:{hole.getsockname()[1]}", "community": "c",
                           "timeout": "1s", "retries": 5, "interval": "1500ms"}])
        start = time.monotonic()
        with pytest.raises(CollectError) as exc:
            coll.collect(coll.targets()[0])
        took = time.monotonic() - start
    finally:
        hole.close()
    assert str(exc.value) == "target slow: poll did not finish within its deadline of 1.5s (the interval)"
    assert 1.4 <= took < 4, took


def test_later_polls_size_requests_to_the_tables(snmpd):
    """snmpd's tables here are short and it cuts GETBULK answers near 100 varbinds: from the second poll on,
    each short column is asked for exactly its rows + 1, in requests the agent answers whole."""
    coll = collector([{"name": "h", "address": snmpd.address, "community": "public"}])
    first, second = poll_twice(coll)
    assert {p.tags.get("ifDescr") for p in second.points} == {p.tags.get("ifDescr") for p in first.points}
    assert len(second.points) == len(first.points)
    assert second.varbinds < 0.85 * first.varbinds, (first.varbinds, second.varbinds)
    assert second.requests <= first.requests


def test_concurrency_bounds_polls_in_flight(snmpd):
    """[snmp] concurrency is a real bound: with one slot, a poll waits for the one ahead of it."""
    hole = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hole.bind(("127.0.0.1", 0))
    try:
        coll = collector([
            {"name": "dead", "address": f"127.0.0.1:{hole.getsockname()[1]}", "community": "c", "timeout": "1s",
             "retries": 0},
            {"name": "good", "address": snmpd.address, "community": "public"},
        ], concurrency=1)
        done: dict[str, float] = {}

        async def timed(t, start):
            with contextlib.suppress(CollectError):
                await coll.acollect(t)
            done[t.name] = time.monotonic() - start

        async def run():
            start = time.monotonic()
            try:
                await asyncio.gather(*(timed(t, start) for t in coll.targets()))
            finally:
                await coll.aclose()

        asyncio.run(run())
    finally:
        hole.close()
    assert done["good"] >= 0.95 and done["good"] >= done["dead"], done


def test_v1_strings_read_like_v2c(tmp_path):
    """A non-ASCII (and hostile) sysName comes out as the same text over v1 as over v2c, and every series is the
    same over both (v1 only lacks the 64-bit counter fields)."""
    name = 'sw-é-東京 "core" $(id)'
    try:
        agent = services.start_snmpd(tmp_path, sys_name=name)
    except services.ServiceUnavailable as exc:
        unavailable(str(exc))
    try:
        seen = {}
        for version in ("1", "2c"):
            coll = collector([{"name": "lo", "address": agent.address, "version": version, "community": "public"}])
            points = coll.collect(coll.targets()[0])
            assert {p.tags["sysName"] for p in points} == {name}
            seen[version] = {(p.measurement, tuple(sorted(p.tags.items()))) for p in points}
        assert seen["1"] == seen["2c"]
    finally:
        agent.stop()


@pytest.mark.parametrize("v1, v2", [
    (rfc1155.IpAddress(b"\xc0\x00\x02\x01"), rfc1902.IpAddress(b"\xc0\x00\x02\x01")),
    (univ.OctetString("é".encode()), rfc1902.OctetString("é".encode())),
    (univ.OctetString(b"\x00\x1b\xff"), rfc1902.OctetString(b"\x00\x1b\xff")),
    (univ.ObjectIdentifier((1, 3, 6, 1)), rfc1902.ObjectIdentifier((1, 3, 6, 1))),
])
def test_convert_reads_v1_types_like_v2c(v1, v2):
    assert convert(v1) == convert(v2) is not None and not isinstance(convert(v1), bytes)
