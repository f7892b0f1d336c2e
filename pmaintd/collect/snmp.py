"""The SNMP collector: one poll per [[snmp.targets]] agent, many agents concurrently on one event loop.

A poll is: GET sysDescr/sysObjectID/sysUpTime/sysName (discovery, and the cheapest way to learn that an
agent is down), pick the device profile (the target's `profile`, else the best sysObjectID match), walk the
profile's table columns, and turn rows into points. Values are the raw values the agent returned: counters
become rates at feature time, not here, so a missed poll never fakes a rate.

Measurements (tags `source` = the target's name and `sysName` on all of them):
- `interface`: tags ifIndex, ifName, ifDescr, ifAlias; fields named after IF-MIB objects (ifHCInOctets,
  ifInErrors, ifOperStatus, ifSpeed, ifHighSpeed, ...), 64-bit ifHC* when the agent has ifXTable.
- `snmp_sensor`: one point per sensor; tags sensor (entPhysicalName, else the table's description),
  sensor_index, sensor_type (celsius, dBm, watts, amperes, voltsDC, rpm, ...), mib, and ifName for a
  transceiver's sensors where the profile ties them to an interface; fields value (raw), scale/precision
  (ENTITY-SENSOR codes, where the MIB has them), reading (float, the value in the sensor_type's unit),
  threshold (CISCO-ENVMON), and the sensor's state under its MIB's own name, because the codes differ:
  entPhySensorOperStatus / entSensorStatus (1 ok), ciscoEnvMonTemperatureState (1 normal, 2 warning,
  3 critical), jnxOperatingState (2 running).
  Optical Tx/Rx power is always sensor_type dBm, whatever the MIB's unit: Cisco and Juniper report dBm, while
  ENTITY-SENSOR-MIB devices (Arista EOS) report watts, which `is_optical_watts` recognises and `watts_to_dbm`
  converts (no light: DBM_FLOOR, -40 dBm). Their `value`/`scale`/`precision` stay the MIB's raw watts, so
  nothing is lost; `reading` is dBm. One unit means the network model's rx_dbm input, the Grafana optics
  panel and any query compare links across vendors without each converting (and each choosing a floor for
  log10(0)). Other watts sensors (power supplies) stay in watts.
- `snmp_storage` / `snmp_processor`: HOST-RESOURCES-MIB hrStorageTable / hrProcessorLoad.
- `snmp_component`: Juniper jnxOperatingTable CPU and buffer use per component.
- `snmp_diskio`: net-snmp hosts' UCD-DISKIO-MIB per-disk counters (tags diskIODevice, diskIOIndex).
- `snmp_system`: tags profile; field sysUpTime (TimeTicks; a drop means the device rebooted).

Every poll has a deadline (the target's interval): an agent that does not answer costs its own
timeout x (retries + 1) and never delays another agent, because each poll is its own task.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

from pmaintd.collect import CollectError, Target, register
from pmaintd.collect.snmp_client import Credentials, Endpoint, Oid, Session, SnmpError, Value, WalkMemory
from pmaintd.collect.snmp_profiles import Match, MetricTable, ProfileError, ProfileSet
from pmaintd.config import Config, ConfigError, SnmpConfig, SnmpTargetConfig, parse_snmp_address, read_secret
from pmaintd.resources import shipped
from pmaintd.telemetry import Point, now_ns

log = logging.getLogger(__name__)

SYS_DESCR: Oid = (1, 3, 6, 1, 2, 1, 1, 1, 0)
SYS_OBJECT_ID: Oid = (1, 3, 6, 1, 2, 1, 1, 2, 0)
SYS_UPTIME: Oid = (1, 3, 6, 1, 2, 1, 1, 3, 0)
SYS_NAME: Oid = (1, 3, 6, 1, 2, 1, 1, 5, 0)

SNMP_SENSOR = "snmp_sensor"
SNMP_SYSTEM = "snmp_system"


def load_profiles(extra_dirs: Iterable[object] = ()) -> ProfileSet:
    """The shipped profiles, then the operator's folders (which replace shipped profiles of the same name)."""
    return ProfileSet([shipped("collectors", "snmp"), *extra_dirs])  # type: ignore[list-item]


@dataclass(frozen=True)
class SnmpTarget:
    """What a Target's `options` holds for this collector."""

    endpoint: Endpoint
    profile: str | None


@dataclass(frozen=True)
class Discovery:
    sys_name: str
    sys_descr: str
    sys_object_id: str
    sys_uptime: int | None


@dataclass
class PollResult:
    """Everything one poll learned; `pmaintd snmp probe` shows it, `acollect` keeps only the points."""

    target: str
    discovery: Discovery
    match: Match
    points: list[Point]
    requests: int
    varbinds: int
    seconds: float


@dataclass
class TargetStatus:
    """Up/down state of one agent, for logs (once per change), /metrics and `probe`."""

    up: bool | None = None
    error: str | None = None
    since: float = field(default_factory=time.time)
    profile: str | None = None


def endpoint_from_config(t: SnmpTargetConfig, defaults: SnmpConfig) -> Endpoint:
    """Resolve one [[snmp.targets]] entry against the [snmp] defaults; reads the secret files it names."""
    host, port = parse_snmp_address(t.address)
    creds = Credentials(
        version=t.version,
        community=t.community if t.community is not None else _secret(t, "community_file"),
        user=t.user,
        auth_protocol=t.auth_protocol,
        auth_password=_secret(t, "auth_password_file"),
        priv_protocol=t.priv_protocol,
        priv_password=_secret(t, "priv_password_file"),
    )
    return Endpoint(
        name=t.name,
        host=host,
        port=port,
        credentials=creds,
        timeout=t.timeout if t.timeout is not None else defaults.timeout,
        retries=t.retries if t.retries is not None else defaults.retries,
        max_repetitions=t.max_repetitions if t.max_repetitions is not None else defaults.max_repetitions,
    )


def _secret(t: SnmpTargetConfig, key: str) -> str | None:
    """Read a *_file secret; ValueError naming the key (never the content) when it cannot be read as text."""
    path = getattr(t, key)
    try:
        return read_secret(path)
    except OSError as exc:
        raise ValueError(f"{key}: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{key}: {path} is not UTF-8 text") from None


async def discover(session: Session) -> Discovery:
    got = await session.get([SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME, SYS_NAME])
    if SYS_OBJECT_ID not in got:
        raise SnmpError(f"target {session.ep.name}: the agent does not expose sysObjectID (SNMPv2-MIB system group)")
    up = got.get(SYS_UPTIME)
    return Discovery(
        sys_name=str(got.get(SYS_NAME, "")),
        sys_descr=str(got.get(SYS_DESCR, "")),
        sys_object_id=str(got[SYS_OBJECT_ID]),
        sys_uptime=up if isinstance(up, int) else None,
    )


async def poll(
    session: Session, profiles: ProfileSet, profile: str | None = None, memory: WalkMemory | None = None
) -> PollResult:
    """Discover the agent, walk its profile's tables and build the points of one poll.

    `memory` carries what this agent's previous polls learned about its tables (see Session.walk)."""
    start = time.monotonic()
    disc = await discover(session)
    if profile is not None:
        why = f"profile {profile!r} chosen for this target (config `profile` or --profile)"
        match = Match(profiles.get(profile), why)
    else:
        found = profiles.match(disc.sys_object_id)
        if found is None:
            raise SnmpError(f"target {session.ep.name}: no profile matches sysObjectID {disc.sys_object_id} "
                            "and there is no generic profile")
        match = found
    walked = await session.walk(match.profile.columns(), memory)
    ts = now_ns()
    base = {"source": session.ep.name, "sysName": disc.sys_name}
    points = rows_to_points(match.profile.metrics, walked, base, ts)
    if disc.sys_uptime is not None:
        points.append(Point(SNMP_SYSTEM, {**base, "profile": match.profile.name}, {"sysUpTime": disc.sys_uptime}, ts))
    return PollResult(session.ep.name, disc, match, points, session.requests, session.varbinds,
                      time.monotonic() - start)


def rows_to_points(
    metrics: Sequence[MetricTable], walked: Mapping[Oid, Mapping[Oid, Value]], base: Mapping[str, str], ts: int
) -> list[Point]:
    """Turn walked columns into points: one per (measurement, tags), merging tables that share an index."""
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], dict[str, Value | float]] = {}
    for m in metrics:
        indexes: dict[Oid, None] = {}
        for s in m.symbols:
            indexes.update(dict.fromkeys(walked.get(s.oid, {})))
        for idx in indexes:
            fields: dict[str, Value | float] = {}
            for s in m.symbols:
                v = walked.get(s.oid, {}).get(idx)
                if v is not None:
                    fields[s.name] = v
            if not fields:
                continue
            tags = {**base, **m.static_tags, **_row_tags(m, walked, idx)}
            if m.reading is not None and (r := _reading(m, fields)) is not None:
                if is_optical_watts(tags):
                    tags["sensor_type"], r = "dBm", watts_to_dbm(r)
                fields["reading"] = r
            key = (m.measurement, tuple(sorted(tags.items())))
            merged.setdefault(key, {}).update(fields)
    return [Point(meas, dict(tags), fields, ts) for (meas, tags), fields in merged.items()]


class _Missing(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _row_tags(m: MetricTable, walked: Mapping[Oid, Mapping[Oid, Value]], idx: Oid) -> dict[str, str]:
    tags: dict[str, str] = {}
    for spec in m.tags:
        if tags.get(spec.tag):
            continue  # a repeated tag is a fallback: the first non-empty value wins
        if spec.column is not None:
            raw = walked.get(spec.column, {}).get(idx)
            value = "" if raw is None else str(raw)
            if spec.match is not None:
                found = spec.match.search(value)
                value = found.expand(spec.expand).strip() if found else ""
        elif spec.index is not None:
            if spec.index == 0:
                value = ".".join(map(str, idx))
            else:
                value = str(idx[spec.index - 1]) if len(idx) >= spec.index else ""
        else:
            # The template comes from the profile (trusted); device strings are only substituted values.
            value = (spec.template or "").format_map(_Missing(tags)).strip()
        tags[spec.tag] = spec.mapping.get(value, value)
    return {k: v for k, v in tags.items() if v != ""}


DBM_FLOOR = -40.0
"""The dBm reported for no light (zero or negative optical power): -40 dBm = 0.1 uW, the least significant
bit of the optical power a transceiver's DOM reports (SFF-8472 and SFF-8636 give Tx/Rx power as an unsigned
16-bit count of 0.1 uW), so nothing a module measures lies below it. It is what Cisco IOS and NX-OS print for
a dark receiver, and Arista's ENTITY-SENSOR rows carry the same resolution (milli-watts with 4 decimals, so
raw 1 = 0.1 uW = -40 dBm). A higher floor (-30 dBm, which some tools use) would hide real readings: the
recorded DCS-7150S has an Rx at 0.0004 mW = -34 dBm. log10(0) = -inf must never reach the store."""

_OPTICAL_NAME = re.compile(r"(?<![a-z])(rx|tx|receive|transmit)(?![a-z])", re.IGNORECASE)


def is_optical_watts(tags: Mapping[str, str]) -> bool:
    """Is this sensor row a transceiver's Tx/Rx optical power reported in watts (ENTITY-SENSOR-MIB style)?

    All of: the MIB's type is watts, the profile ties the row to an interface (an `ifName` tag: the sensor
    belongs to a port's transceiver, not to a power supply or the chassis), and the sensor's own name says
    receive or transmit (so a per-port PoE or module power draw in watts stays in watts). Arista EOS reports
    its DOM Tx/Rx power this way ("DOM RX Power Sensor for Ethernet5", watts at milli scale); every CLI,
    Cisco's and Juniper's MIBs and pmaintd's network model speak dBm, so such readings are stored in dBm."""
    return (tags.get("sensor_type") == "watts" and bool(tags.get("ifName"))
            and _OPTICAL_NAME.search(tags.get("sensor", "")) is not None)


def watts_to_dbm(watts: float) -> float:
    """Optical power in dBm (10 log10 of milliwatts), DBM_FLOOR for no light; see DBM_FLOOR for why."""
    if watts <= 0:
        return DBM_FLOOR
    return max(DBM_FLOOR, 10.0 * math.log10(watts * 1000.0))


def _reading(m: MetricTable, fields: Mapping[str, Value | float]) -> float | None:
    r = m.reading
    assert r is not None
    raw = fields.get(r.value)
    if not isinstance(raw, int):
        return None
    value = raw * r.factor
    if r.scale is not None:
        scale = fields.get(r.scale)
        if not isinstance(scale, int) or not 1 <= scale <= 17:
            return None
        value *= 1000.0 ** (scale - 9)
    if r.precision is not None:
        precision = fields.get(r.precision)
        if not isinstance(precision, int) or not -8 <= precision <= 9:
            return None
        value /= 10.0**precision
    return value


@dataclass
class _LoopState:
    engines: dict[str, SnmpEngine] = field(default_factory=dict)
    semaphore: asyncio.Semaphore | None = None
    lock: asyncio.Lock | None = None


class SnmpCollector:
    """Polls every configured agent. Async first (`acollect`, `acollect_many`); `collect` for callers without a loop.

    The daemon schedules one job per `targets()` entry (its interval; its timeout is the poll deadline) and
    awaits `acollect(target)` on its event loop; at most `concurrency` polls run at once.
    """

    name = "snmp"

    def __init__(self, cfg: SnmpConfig, profiles: ProfileSet | None = None) -> None:
        try:
            self.profiles = profiles or load_profiles(cfg.profile_dirs)
        except ProfileError as exc:
            raise ConfigError([f"snmp profiles: {exc}"]) from None
        problems = []
        for i, t in enumerate(cfg.targets):
            if t.profile is not None and t.profile not in self.profiles.names():
                problems.append(f"snmp.targets[{i}].profile: {t.profile!r} is not allowed: "
                                f"one of {', '.join(self.profiles.names())}")
        if problems:
            raise ConfigError(problems)
        self.concurrency = cfg.concurrency
        self._targets = []
        for i, t in enumerate(cfg.targets):
            try:
                endpoint = endpoint_from_config(t, cfg)
            except ValueError as exc:  # a secret file that exists but cannot be read
                problems.append(f"snmp.targets[{i}].{exc}")
                continue
            interval = t.interval if t.interval is not None else cfg.interval
            self._targets.append(Target(t.name, interval, interval, options=SnmpTarget(endpoint, t.profile)))
        if problems:
            raise ConfigError(problems)
        self.status: dict[str, TargetStatus] = {t.name: TargetStatus() for t in self._targets}
        self._memory: dict[str, WalkMemory] = {}
        self._loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = weakref.WeakKeyDictionary()

    def targets(self) -> list[Target]:
        """One Target per [[snmp.targets]]: `interval` is its poll interval, `timeout` the poll's deadline."""
        return list(self._targets)

    def target(self, name: str) -> Target:
        for t in self._targets:
            if t.name == name:
                return t
        raise KeyError(f"no SNMP target named {name!r}; configured: {', '.join(t.name for t in self._targets)}")

    def with_profile(self, target: Target, profile: str) -> Target:
        """The same target polled with another profile (probe --profile); KeyError for an unknown profile."""
        self.profiles.get(profile)
        return replace(target, options=replace(_options(target), profile=profile))

    def probe(self, target: Target) -> PollResult:
        """Synchronous `aprobe` on a private loop (for the CLI)."""

        async def run() -> PollResult:
            try:
                return await self.aprobe(target)
            finally:
                await self.aclose()

        return asyncio.run(run())

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        st = self._loops.get(loop)
        if st is None:
            st = self._loops[loop] = _LoopState(semaphore=asyncio.Semaphore(self.concurrency), lock=asyncio.Lock())
        return st

    async def _engine(self, key: str) -> SnmpEngine:
        # Building an engine loads pysnmp's core MIB modules (~0.3 s of CPU): do it off the event loop.
        st = self._state()
        assert st.lock is not None
        async with st.lock:
            if key not in st.engines:
                st.engines[key] = await asyncio.to_thread(SnmpEngine)
        return st.engines[key]

    async def aprobe(self, target: Target) -> PollResult:
        """One poll with everything it learned (discovery, profile and why, points, request counts)."""
        opts = _options(target)
        st = self._state()
        assert st.semaphore is not None
        async with st.semaphore:
            session = Session(await self._engine(opts.endpoint.credentials.engine_key()), opts.endpoint)
            try:
                async with asyncio.timeout(target.timeout):
                    memory = self._memory.setdefault(target.name, WalkMemory())
                    result = await poll(session, self.profiles, opts.profile, memory)
            except TimeoutError:
                self._mark(target.name, f"target {target.name}: poll did not finish within its deadline of "
                                        f"{target.timeout:g}s (the interval)")
                raise CollectError(self.status[target.name].error) from None
            except SnmpError as exc:
                self._mark(target.name, str(exc))
                raise CollectError(str(exc)) from None
        self._mark(target.name, None, result.match.profile.name)
        return result

    async def acollect(self, target: Target) -> list[Point]:
        """One poll of one agent on the running loop. Raises CollectError naming the target and the cause."""
        return (await self.aprobe(target)).points

    async def acollect_many(self, targets: Sequence[Target] | None = None) -> dict[str, list[Point] | CollectError]:
        """Poll many agents at once (bounded by `concurrency`); a failure is returned, never raised."""
        chosen = list(targets if targets is not None else self._targets)
        results = await asyncio.gather(*(self.acollect(t) for t in chosen), return_exceptions=True)
        out: dict[str, list[Point] | CollectError] = {}
        for t, r in zip(chosen, results, strict=True):
            if isinstance(r, CollectError | list):
                out[t.name] = r
            else:
                raise r  # a bug, not an agent problem: let it surface
        return out

    def collect(self, target: Target) -> list[Point]:
        """Synchronous poll (for `pmaintd collect --once` and the Collector protocol), on a private loop."""
        return asyncio.run(self._once(target))

    async def _once(self, target: Target) -> list[Point]:
        try:
            return await self.acollect(target)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the sockets of the engines bound to the running loop (call before the loop ends)."""
        st = self._loops.pop(asyncio.get_running_loop(), None)
        for engine in (st.engines.values() if st else ()):
            engine.close_dispatcher()

    def _mark(self, name: str, error: str | None, profile: str | None = None) -> None:
        st = self.status.setdefault(name, TargetStatus())
        up = error is None
        if st.up is not up:
            if not up:
                log.warning("%s; marked down", error, extra={"target": name})
            elif st.up is False:
                log.info("target %s: answering again; marked up", name, extra={"target": name})
            st.since = time.time()
        st.up, st.error = up, error
        if profile is not None:
            st.profile = profile


def _options(target: Target) -> SnmpTarget:
    if not isinstance(target.options, SnmpTarget):
        raise TypeError(f"{target.name} is not an SNMP target")
    return target.options


def adhoc_target(address: str, community: str, version: str, timeout: float, retries: int,
                 max_repetitions: int, profile: str | None = None, name: str | None = None) -> Target:
    """A target that is not in the config (for `pmaintd snmp probe ADDRESS --community ...`)."""
    host, port = parse_snmp_address(address)
    ep = Endpoint(name or address, host, port, Credentials(version, community=community), timeout, retries,
                  max_repetitions)
    deadline = max(30.0, timeout * (retries + 1) * 4)
    return Target(name=ep.name, interval=deadline, timeout=deadline, options=SnmpTarget(ep, profile))


def probe_report(result: PollResult) -> dict[str, object]:
    """What `pmaintd snmp probe` shows: the device, the profile and why, interfaces, sensors, and all points."""
    interfaces = []
    sensors = []
    counts: dict[str, int] = {}
    for p in result.points:
        counts[p.measurement] = counts.get(p.measurement, 0) + 1
        if p.measurement == "interface":
            f, t = p.fields, p.tags
            speed = f.get("ifHighSpeed")
            if speed is None and isinstance(f.get("ifSpeed"), int):
                speed = int(f["ifSpeed"]) // 1_000_000
            interfaces.append({
                "ifIndex": t.get("ifIndex"), "ifName": t.get("ifName", ""), "ifDescr": t.get("ifDescr", ""),
                "ifAlias": t.get("ifAlias", ""), "ifOperStatus": f.get("ifOperStatus"),
                "ifAdminStatus": f.get("ifAdminStatus"), "speed_mbps": speed, "ifInErrors": f.get("ifInErrors"),
                "hc": "ifHCInOctets" in f,
            })
        elif p.measurement == SNMP_SENSOR:
            sensors.append({
                "sensor": p.tags.get("sensor", ""), "sensor_index": p.tags.get("sensor_index", ""),
                "sensor_type": p.tags.get("sensor_type", ""), "mib": p.tags.get("mib", ""),
                "value": p.fields.get("value"), "reading": p.fields.get("reading"),
                "status": next((v for k, v in p.fields.items() if k.endswith(("Status", "State"))), None),
            })
    interfaces.sort(key=lambda i: int(i["ifIndex"]) if str(i["ifIndex"]).isdigit() else 0)
    d = result.discovery
    return {
        "target": result.target,
        "device": {"sysName": d.sys_name, "sysDescr": d.sys_descr, "sysObjectID": d.sys_object_id,
                   "sysUpTime": d.sys_uptime},
        "profile": result.match.profile.name,
        "reason": result.match.reason,
        "requests": result.requests,
        "varbinds": result.varbinds,
        "seconds": round(result.seconds, 3),
        "measurements": counts,
        "interfaces": interfaces,
        "sensors": sensors,
        "points": [p.to_json() for p in result.points],
    }


@register("snmp")
def _factory(cfg: Config) -> SnmpCollector | None:
    return SnmpCollector(cfg.snmp) if cfg.snmp.targets else None
