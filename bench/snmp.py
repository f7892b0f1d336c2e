"""SNMP benchmark: polls/s and varbinds/s of pmaintd's SNMP collector against net-snmp's snmpbulkwalk.

Agents: net-snmp's snmpd (this machine, v2c) and snmpsim serving real recordings (Cisco C3560, Juniper MX960,
Arista 7150S from tests/collect/snmp/testdata), all on loopback, started here with tests/services.py.

One "poll" is what the collector does for one agent: discovery (GET sysDescr/sysObjectID/sysUpTime/sysName),
then every table column of the agent's profile. The reference, measured in the same run on the same agents,
is what a script using net-snmp does for the same data: one `snmpget` of the four scalars, then one
`snmpbulkwalk -Cr<max_repetitions>` per table the profile reads (whole tables: snmpbulkwalk walks one subtree,
so it also fetches columns pmaintd skips; varbinds/s counts what each tool actually received).

Client CPU is the manager side only: this process's CPU time for pmaintd, the snmpget/snmpbulkwalk child
processes' for the reference (the agents run in their own processes and are not counted).
Two modes per agent: `sequential` (one poll after another: latency) and `concurrent` (N polls of the agent at
once: pmaintd's acollect_many on one event loop vs N reference scripts as parallel processes). Each figure is
the median of --rounds rounds; the ratio is pmaintd's polls/s over the reference's.
Usage: .venv/bin/python bench/snmp.py [--rounds 3] [--polls 3] [--concurrent 8]   (about 7 minutes)
Not a test: it prints figures and never fails on them. The machine is shared: expect noise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pmaintd.collect.snmp import SnmpCollector
from pmaintd.collect.snmp_profiles import Profile, oid_str
from pmaintd.config import validate
from tests.services import start_snmpd, start_snmpsim

RECORDINGS = Path(__file__).resolve().parent.parent / "tests" / "collect" / "snmp" / "testdata"
SYSTEM = ["1.3.6.1.2.1.1.1.0", "1.3.6.1.2.1.1.2.0", "1.3.6.1.2.1.1.3.0", "1.3.6.1.2.1.1.5.0"]
ENV = {**os.environ, "MIBS": ""}


def reference_tables(profile: Profile) -> list[str]:
    """The table subtrees a net-snmp script walks for the same data: every column's table (its entry's parent)."""
    tables = {oid_str(col[:-2]) for col in profile.columns()}
    return sorted(tables, key=lambda t: tuple(map(int, t.split("."))))


async def reference_poll(address: str, community: str, tables: list[str], reps: int, timeout: float) -> int:
    """snmpget of the system scalars, then snmpbulkwalk per table; returns the varbinds received."""
    common = ["-v2c", "-c", community, "-t", str(timeout), "-r", "1", "-On", "-Oq"]
    varbinds = 0
    cmds = [["snmpget", *common, address, *SYSTEM]] + [
        ["snmpbulkwalk", *common, f"-Cr{reps}", address, t] for t in tables
    ]
    for cmd in cmds:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=ENV
        )
        out, err = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {err.decode().strip()}")
        varbinds += sum(1 for line in out.splitlines() if line.startswith(b"."))
    return varbinds


def make_collector(address: str, community: str, n: int, reps: int, timeout: float) -> SnmpCollector:
    targets = [{"name": f"t{i}", "address": address, "community": community} for i in range(n)]
    cfg = validate({"snmp": {"timeout": f"{timeout}s", "max_repetitions": reps, "concurrency": max(n, 1),
                             "targets": targets}})
    return SnmpCollector(cfg.snmp)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


async def pmaintd_round(coll: SnmpCollector, polls: int, concurrent: int) -> tuple[float, float, int, float]:
    """(seconds, varbinds, polls, client CPU seconds) for `polls` sequential polls, or `concurrent` at once."""
    targets = coll.targets()
    varbinds = 0
    cpu = time.process_time()
    start = time.perf_counter()
    if concurrent <= 1:
        for _ in range(polls):
            varbinds += (await coll.aprobe(targets[0])).varbinds
        n = polls
    else:
        results = await asyncio.gather(*(coll.aprobe(t) for t in targets[:concurrent]))
        varbinds = sum(r.varbinds for r in results)
        n = concurrent
    return time.perf_counter() - start, varbinds, n, time.process_time() - cpu


async def reference_round(address: str, community: str, tables: list[str], reps: int, timeout: float,
                          polls: int, concurrent: int) -> tuple[float, float, int, float]:
    cpu = _children_cpu()
    start = time.perf_counter()
    if concurrent <= 1:
        varbinds = 0
        for _ in range(polls):
            varbinds += await reference_poll(address, community, tables, reps, timeout)
        n = polls
    else:
        got = await asyncio.gather(*(reference_poll(address, community, tables, reps, timeout)
                                     for _ in range(concurrent)))
        varbinds, n = sum(got), concurrent
    return time.perf_counter() - start, varbinds, n, _children_cpu() - cpu


async def bench_agent(label: str, address: str, community: str, args: argparse.Namespace) -> list[list[object]]:
    rows: list[list[object]] = []
    coll = make_collector(address, community, max(args.concurrent, 1), args.max_repetitions, args.timeout)
    # Engine build, profile match and the first walk (which learns table sizes) are not a steady poll.
    warm = await coll.aprobe(coll.targets()[0])
    await asyncio.gather(*(coll.aprobe(t) for t in coll.targets()[1:]))
    tables = reference_tables(warm.match.profile)
    await reference_poll(address, community, tables, args.max_repetitions, args.timeout)
    for mode, conc in (("sequential", 1), (f"concurrent x{args.concurrent}", args.concurrent)):
        figures: dict[str, tuple[float, float, float, float]] = {}
        for tool in ("pmaintd", "snmpbulkwalk"):
            pps, vps, per, cpu = [], [], [], []
            for _ in range(args.rounds):
                if tool == "pmaintd":
                    secs, vb, n, c = await pmaintd_round(coll, args.polls, conc)
                else:
                    secs, vb, n, c = await reference_round(address, community, tables, args.max_repetitions,
                                                        args.timeout, args.polls, conc)
                pps.append(n / secs)
                vps.append(vb / secs)
                per.append(vb / n)
                cpu.append(1000 * c / n)
            figures[tool] = (statistics.median(pps), statistics.median(vps), statistics.median(per),
                             statistics.median(cpu))
        ratio = figures["pmaintd"][0] / figures["snmpbulkwalk"][0]
        for tool, (pps_m, vps_m, per_m, cpu_m) in figures.items():
            rows.append([label if tool == "pmaintd" else "", mode if tool == "pmaintd" else "", tool,
                         f"{pps_m:.1f}", f"{vps_m:,.0f}", f"{per_m:,.0f}", f"{cpu_m:.0f}",
                         f"{ratio:.2f}x" if tool == "pmaintd" else ""])
    await coll.aclose()
    rows.append(["", "", f"(profile {warm.match.profile.name}: {len(warm.match.profile.columns())} columns, "
                 f"reference walks {len(tables)} tables)", "", "", "", "", ""])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--polls", type=int, default=3, help="Polls per sequential round.")
    ap.add_argument("--concurrent", type=int, default=8, help="Polls at once in a concurrent round.")
    ap.add_argument("--max-repetitions", type=int, default=25)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--devices", default="cisco-c3560,juniper-mx960,arista-dcs-7150s",
                    help="Recordings (tests/collect/snmp/testdata) served by snmpsim.")
    args = ap.parse_args()
    devices = [d for d in args.devices.split(",") if d]
    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="pmaintd-bench-snmp-") as tmp:
        snmpd_dir, sim_dir = Path(tmp) / "snmpd", Path(tmp) / "snmpsim"
        snmpd_dir.mkdir()
        sim_dir.mkdir()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the agents on `kill` too
        agents = []
        try:
            snmpd = start_snmpd(snmpd_dir)
            agents.append(snmpd)
            t0 = time.perf_counter()
            sim = start_snmpsim(sim_dir, [RECORDINGS / f"{d}.snmprec.bz2" for d in devices])
            sim_start = time.perf_counter() - t0
            agents.append(sim)
            rows += asyncio.run(bench_agent("snmpd (this host)", snmpd.address, "public", args))
            for d in devices:
                rows += asyncio.run(bench_agent(f"snmpsim {d}", sim.address, d, args))
        finally:
            for agent in agents:
                agent.stop()
    header = ["agent", "mode", "tool", "polls/s", "varbinds/s", "varbinds/poll", "client CPU ms/poll",
              "pmaintd/ref polls/s"]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"SNMP v2c, max_repetitions {args.max_repetitions}, medians of {args.rounds} rounds "
          f"({args.polls} sequential polls, or {args.concurrent} concurrent, per round); "
          f"snmpsim indexed {len(devices)} recordings in {sim_start:.1f}s")
    for r in [header, *rows]:
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
