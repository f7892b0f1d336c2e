"""A small SNMP client over pysnmp 7 (asyncio): credentials, GET, and multi-column table walks.

Why not pysnmp's own bulk_walk_cmd: it walks one column per request stream. A profile needs 20-40 columns, and
walking them together in one GETBULK (one varbind per column, rows arrive aligned) cuts the requests - and
therefore the round trips and the time a slow agent holds a poll slot - by the number of columns.

Errors become SnmpError with an operator-facing message that names the target and the likely cause; secrets
are never part of a message.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pyasn1.type import univ
from pysnmp.entity.rfc3413 import cmdgen
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    usmAesBlumenthalCfb192Protocol,
    usmAesBlumenthalCfb256Protocol,
    usmAesCfb128Protocol,
    usmAesCfb192Protocol,
    usmAesCfb256Protocol,
    usmHMAC128SHA224AuthProtocol,
    usmHMAC192SHA256AuthProtocol,
    usmHMAC256SHA384AuthProtocol,
    usmHMAC384SHA512AuthProtocol,
    usmHMACMD5AuthProtocol,
    usmHMACSHAAuthProtocol,
    usmNoAuthProtocol,
    usmNoPrivProtocol,
)
from pysnmp.hlapi.v3arch.asyncio.lcd import CommandGeneratorLcdConfigurator
from pysnmp.proto import errind, rfc1155, rfc1902, rfc1905

AUTH_PROTOCOLS = {
    "SHA": usmHMACSHAAuthProtocol,
    "SHA-224": usmHMAC128SHA224AuthProtocol,
    "SHA-256": usmHMAC192SHA256AuthProtocol,
    "SHA-384": usmHMAC256SHA384AuthProtocol,
    "SHA-512": usmHMAC384SHA512AuthProtocol,
    "MD5": usmHMACMD5AuthProtocol,
}
PRIV_PROTOCOLS = {
    "AES": usmAesCfb128Protocol,
    "AES-128": usmAesCfb128Protocol,
    "AES-192": usmAesBlumenthalCfb192Protocol,
    "AES-256": usmAesBlumenthalCfb256Protocol,
    "AES-192-C": usmAesCfb192Protocol,
    "AES-256-C": usmAesCfb256Protocol,
}

MAX_VARBINDS_PER_REQUEST = 500
"""columns x repetitions per GETBULK; agents truncate larger answers anyway, and this keeps a response
well inside one UDP datagram on loopback and typical jumbo-less paths."""

Oid = tuple[int, ...]
_LCD = CommandGeneratorLcdConfigurator()
_NULL = rfc1902.Null("")
Value = int | str


class SnmpError(Exception):
    """A target could not be polled; the message names the target and the probable cause."""


@dataclass(frozen=True)
class Credentials:
    """How to authenticate to one agent. Secrets are held only in memory, never in repr or messages."""

    version: str
    community: str | None = None
    user: str | None = None
    auth_protocol: str | None = None
    auth_password: str | None = None
    priv_protocol: str | None = None
    priv_password: str | None = None

    def __repr__(self) -> str:
        return f"Credentials(version={self.version!r}, user={self.user!r})"

    def auth_data(self) -> CommunityData | UsmUserData:
        if self.version in ("1", "2c"):
            return CommunityData(self.community or "", mpModel=0 if self.version == "1" else 1)
        return UsmUserData(
            self.user or "",
            authKey=self.auth_password,
            privKey=self.priv_password,
            authProtocol=AUTH_PROTOCOLS[self.auth_protocol] if self.auth_protocol else usmNoAuthProtocol,
            privProtocol=PRIV_PROTOCOLS[self.priv_protocol] if self.priv_protocol else usmNoPrivProtocol,
        )

    def engine_key(self) -> str:
        """Targets with the same key can share one SnmpEngine.

        pysnmp keeps one USM entry per user name in an engine, so two agents with the same v3 user but
        different keys must not share an engine (one's keys would replace the other's mid-poll).
        """
        if self.version != "3":
            return "community"
        h = hashlib.sha256()
        for part in (self.user, self.auth_protocol, self.auth_password, self.priv_protocol, self.priv_password):
            h.update((part or "").encode() + b"\0")
        return "v3:" + h.hexdigest()


@dataclass(frozen=True)
class Endpoint:
    """Where and how patiently to ask: per-request timeout and retries, as net-snmp's -t and -r."""

    name: str
    host: str
    port: int
    credentials: Credentials
    timeout: float
    retries: int
    max_repetitions: int


@dataclass
class WalkMemory:
    """What one agent's previous walks taught, kept by the caller between polls (see Session.walk)."""

    rows: dict[Oid, int] = field(default_factory=dict)
    """Each column's row count in the last walk."""
    max_varbinds: int = MAX_VARBINDS_PER_REQUEST
    """The most varbinds the agent put in one GETBULK answer (net-snmp's snmpd stops near 100)."""


def _timeout_hint(ep: Endpoint) -> str:
    if ep.credentials.version == "3":
        return "wrong priv_password_file/priv_protocol, unknown engine, or unreachable"
    return "wrong community or unreachable"


def _describe(ep: Endpoint, ei: object) -> str:
    """Turn pysnmp's error indication into the sentence an operator needs."""
    tries = ep.retries + 1
    if isinstance(ei, errind.RequestTimedOut):
        return (f"target {ep.name}: no response within {ep.timeout:g}s x {tries} "
                f"{'try' if tries == 1 else 'tries'} ({_timeout_hint(ep)})")
    if isinstance(ei, errind.WrongDigest):
        return (f"target {ep.name}: SNMPv3 authentication failed (wrongDigest) — "
                "check auth_protocol/auth_password_file")
    if isinstance(ei, errind.UnknownUserName):
        return f"target {ep.name}: SNMPv3 user {ep.credentials.user!r} is unknown to the agent (unknownUserName)"
    if isinstance(ei, errind.UnsupportedSecurityLevel):
        return (f"target {ep.name}: the agent does not accept this security level for user "
                f"{ep.credentials.user!r} (unsupportedSecLevel) — check auth_protocol/priv_protocol")
    if isinstance(ei, errind.DecryptionError):
        return f"target {ep.name}: SNMPv3 decryption failed — check priv_protocol/priv_password_file"
    if isinstance(ei, errind.NotInTimeWindow):
        return f"target {ep.name}: SNMPv3 message outside the agent's time window (notInTimeWindow)"
    return f"target {ep.name}: {ei}"


class Session:
    """One agent, one engine: GET and table walks. Counts requests and varbinds for self-metrics/benchmarks."""

    def __init__(self, engine: SnmpEngine, ep: Endpoint) -> None:
        self.engine = engine
        self.ep = ep
        self.requests = 0
        self.varbinds = 0
        self._auth = ep.credentials.auth_data()
        self._transport: UdpTransportTarget | Udp6TransportTarget | None = None

    async def _target(self) -> UdpTransportTarget | Udp6TransportTarget:
        if self._transport is None:
            kind = Udp6TransportTarget if ":" in self.ep.host else UdpTransportTarget
            try:
                self._transport = await kind.create(
                    (self.ep.host, self.ep.port), timeout=self.ep.timeout, retries=self.ep.retries
                )
            except Exception as exc:  # pysnmp wraps the resolver's error in its own type
                m = re.search(r"\[Errno -?\d+\] (.*?)(?: caused by|$)", str(exc))
                reason = m.group(1) if m else str(exc)
                raise SnmpError(f"target {self.ep.name}: cannot resolve {self.ep.host} ({reason})") from None
        return self._transport

    async def _send(self, kind: str, oids: Sequence[Oid], reps: int = 0) -> tuple[Any, Any, Any, list[Any]]:
        """One request through pysnmp's command generators, with numeric OIDs only.

        pysnmp's hlapi helpers (get_cmd, bulk_cmd) resolve every varbind through the MIB view, and when pysmi
        is importable that builds a MIB compiler: ~3.5 s of CPU on the event loop for each new engine's first
        request. Sending ObjectName/Null pairs straight to the generator skips that entirely.
        """
        engine = self.engine
        addr_name, _ = _LCD.configure(engine, self._auth, await self._target(), b"")
        varbinds = [(rfc1902.ObjectName(o), _NULL) for o in oids]
        future: asyncio.Future[tuple[Any, Any, Any, list[Any]]] = asyncio.get_running_loop().create_future()

        def done(_engine: object, _handle: object, ei: Any, es: Any, eidx: Any, vbs: Any, _ctx: object) -> None:
            if not future.done():
                future.set_result((ei, es, eidx, list(vbs or ())))

        self.requests += 1
        if kind == "get":
            cmdgen.GetCommandGenerator().send_varbinds(engine, addr_name, None, b"", varbinds, done, None)
        elif kind == "next":
            cmdgen.NextCommandGenerator().send_varbinds(engine, addr_name, None, b"", varbinds, done, None)
        else:
            cmdgen.BulkCommandGenerator().send_varbinds(engine, addr_name, None, b"", 0, reps, varbinds, done, None)
        return await future

    async def get(self, oids: Sequence[Oid]) -> dict[Oid, Value]:
        """GET scalars; missing objects (noSuchObject/noSuchInstance) are left out of the result."""
        ei, es, eidx, vbs = await self._send("get", oids)
        if ei:
            raise SnmpError(_describe(self.ep, ei))
        if es:
            if int(es) == 2 and 0 < int(eidx) <= len(oids):  # v1 noSuchName: ask again without that object
                rest = [o for i, o in enumerate(oids) if i != int(eidx) - 1]
                return await self.get(rest) if rest else {}
            raise SnmpError(f"target {self.ep.name}: agent answered {es.prettyPrint()} to a GET")
        self.varbinds += len(vbs)
        out: dict[Oid, Value] = {}
        for name, val in vbs:
            v = convert(val)
            if v is not None:
                out[tuple(name)] = v
        return out

    async def walk(self, columns: Sequence[Oid], memory: WalkMemory | None = None) -> dict[Oid, dict[Oid, Value]]:
        """Walk table columns; returns {column: {row index: value}}. Columns the agent lacks come back empty.

        `memory` (the same object for every poll of one agent) makes later walks cheaper. Tables rarely change
        size, so asking for each column's last row count + 1 (to see its end) returns what is needed without
        the repetitions a GETBULK otherwise spends past a short column's end, and sizing requests to what the
        agent answers in one response avoids follow-ups. Decoding varbinds dominates the client's CPU.
        """
        mem = memory if memory is not None else WalkMemory()
        out: dict[Oid, dict[Oid, Value]] = {c: {} for c in columns}
        for group, reps in plan_requests(columns, mem, self.ep.max_repetitions):
            await self._walk_group(group, out, reps, mem)
        for c in columns:
            mem.rows[c] = len(out[c])
        return out

    async def _walk_group(
        self, columns: list[Oid], out: dict[Oid, dict[Oid, Value]], reps: int, mem: WalkMemory
    ) -> None:
        cursor: dict[Oid, Oid] = {c: c for c in columns}
        v1 = self.ep.credentials.version == "1"
        while cursor:
            active = list(cursor)
            request = [cursor[c] for c in active]
            ei, es, eidx, vbs = await (self._send("next", request) if v1 else self._send("bulk", request, reps))
            if ei:
                raise SnmpError(_describe(self.ep, ei))
            if es:
                status = int(es)
                if status == 2 and 0 < int(eidx) <= len(active):  # v1 end of MIB for that column
                    del cursor[active[int(eidx) - 1]]
                    continue
                if status == 1 and (reps > 1 or len(active) > 1):  # tooBig: ask for less
                    if reps > 1:
                        reps = max(1, reps // 2)
                    else:
                        for c in active[1:]:
                            await self._walk_group([c], out, 1, mem)
                            del cursor[c]
                    continue
                raise SnmpError(f"target {self.ep.name}: agent answered {es.prettyPrint()} while walking")
            if not vbs:
                raise SnmpError(f"target {self.ep.name}: agent sent an empty answer while walking")
            n = len(active)
            if not v1 and len(vbs) < n * reps:  # the agent cut its answer short: plan smaller requests next time
                mem.max_varbinds = max(n, min(mem.max_varbinds, len(vbs)))
            self.varbinds += len(vbs)
            for k, (name, val) in enumerate(vbs):
                col = active[k % n]
                if col not in cursor:
                    continue
                oid = tuple(name)
                if isinstance(val, rfc1905.EndOfMibView) or oid[: len(col)] != col:
                    del cursor[col]
                    continue
                if oid <= cursor[col]:
                    raise SnmpError(f"target {self.ep.name}: agent returned OIDs out of order in "
                                    f"{'.'.join(map(str, col))} (broken agent)")
                cursor[col] = oid
                v = convert(val)
                if v is not None:
                    out[col][oid[len(col):]] = v


def plan_requests(columns: Sequence[Oid], mem: WalkMemory, max_reps: int) -> list[tuple[list[Oid], int]]:
    """Group columns into GETBULK requests: (columns, repetitions per request).

    Long columns (never walked, or more rows than max_reps) are asked for generously, max_reps each and up
    to MAX_VARBINDS_PER_REQUEST in all: the agent fills its answer to its own limit, so each answer is full.
    Short columns whose size is known get their row count + 1 repetitions (the last one shows the end), so
    each finishes in one request; they are grouped by similar size (the largest at most about twice the
    smallest) and in groups no larger than the agent's observed answer size, so nothing is cut off.
    """
    budget = max(1, mem.max_varbinds)
    short = sorted((c for c in columns if c in mem.rows and mem.rows[c] + 1 <= max_reps), key=lambda c: mem.rows[c])
    chosen = set(short)
    long = [c for c in columns if c not in chosen]
    groups: list[tuple[list[Oid], int]] = []
    per_request = max(1, MAX_VARBINDS_PER_REQUEST // max_reps)
    long.sort(key=lambda c: mem.rows.get(c, max_reps))
    for i in range(0, len(long), per_request):
        groups.append((long[i : i + per_request], max_reps))
    current: list[Oid] = []
    smallest = reps = 1
    for c in short:
        want = mem.rows[c] + 1
        if current and ((len(current) + 1) * want > budget or want > 2 * smallest):
            groups.append((current, reps))
            current = []
        if not current:
            smallest = want
        current.append(c)
        reps = want
    if current:
        groups.append((current, reps))
    return groups


def convert(val: object) -> Value | None:
    """A pysnmp value as a plain Python value: integers stay integers (Counter64 included), strings are text.

    Octet strings are decoded as UTF-8 when they are, else shown as hex (MAC addresses, binary blobs). None for
    the exception values (noSuchObject, noSuchInstance, endOfMibView) and Null.
    """
    if isinstance(val, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView | univ.Null):
        return None
    # Checked on the base types, so RFC 1155 (SNMPv1) and plain pyasn1 values read like RFC 1902's: pysnmp's
    # command generator hands v1 answers over as v2 types today, but a str() fallback would turn a v1 string
    # into Latin-1 text and an IpAddress into its raw bytes.
    if isinstance(val, rfc1902.IpAddress | rfc1155.IpAddress):
        return ".".join(str(b) for b in bytes(val))
    if isinstance(val, univ.ObjectIdentifier):
        return ".".join(map(str, val))
    if isinstance(val, univ.OctetString):
        raw = bytes(val)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.hex(":")
    try:
        return int(val)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return str(val)
