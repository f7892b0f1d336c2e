"""Client CPU per SNMP poll: pmaintd's v1/v2c path (snmp_wire) against the pysnmp path it replaced, same process.

Each device is a recording from tests/collect/snmp/testdata served by snmpsim on loopback (its own process, so
its CPU is not counted). One poll is what the collector does (pmaintd.collect.snmp.poll: discovery GET, the
profile's columns walked with the agent's WalkMemory, rows turned into points). Polls alternate between the two
paths (Session(use_pysnmp=True) is the reference) after two warm-up polls each, so both learn the same table
sizes and see the same machine load. Figures: median CPU ms per poll (this process's user+system time), ms per
varbind, and the ratio new/old; the two paths' points are compared (timestamps aside) and must be identical.
Usage: .venv/bin/python bench/snmp_cpu.py [--polls 7] [--devices cisco-n5000,juniper-mx960,arista-dcs-7150s]
Not a test: it prints figures and never fails on them. The machine is shared: expect noise.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pysnmp.hlapi.v3arch.asyncio import SnmpEngine

from pmaintd.collect.snmp import PollResult, load_profiles, poll
from pmaintd.collect.snmp_client import Credentials, Endpoint, Session, WalkMemory
from tests.services import start_snmpsim

RECORDINGS = Path(__file__).resolve().parent.parent / "tests" / "collect" / "snmp" / "testdata"


def _comparable(result: PollResult) -> list[tuple[object, ...]]:
    return sorted((p.measurement, sorted(p.tags.items()), sorted(p.fields.items())) for p in result.points)


async def bench_device(address: str, device: str, polls: int, reps: int) -> list[str]:
    host, port = address.rsplit(":", 1)
    ep = Endpoint(device, host, int(port), Credentials("2c", community=device), 10.0, 1, reps)
    profiles = load_profiles()
    engine = await asyncio.to_thread(SnmpEngine)  # built once, off the clock, as the collector does
    memory = {True: WalkMemory(), False: WalkMemory()}
    cpu: dict[bool, list[float]] = {True: [], False: []}
    last: dict[bool, PollResult] = {}

    async def one(use_pysnmp: bool) -> float:
        session = Session(engine if use_pysnmp else None, ep, use_pysnmp=use_pysnmp)
        start = time.process_time()
        try:
            last[use_pysnmp] = await poll(session, profiles, None, memory[use_pysnmp])
        finally:
            session.close()
        return time.process_time() - start

    for _ in range(2):
        for ref in (True, False):
            await one(ref)
    for _ in range(polls):
        for ref in (True, False):
            cpu[ref].append(await one(ref))
    engine.close_dispatcher()
    old, new = (1000 * statistics.median(cpu[r]) for r in (True, False))
    vb = last[False].varbinds
    same = _comparable(last[True]) == _comparable(last[False])
    return [device, f"{old:.0f}", f"{new:.0f}", f"{new / old:.2f}", f"{1000 * old / vb:.0f}", f"{1000 * new / vb:.0f}",
            str(vb), f"{last[True].requests}/{last[False].requests}", str(len(last[False].points)),
            "yes" if same else "NO"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--polls", type=int, default=7, help="Measured polls per path and device.")
    ap.add_argument("--max-repetitions", type=int, default=25)
    ap.add_argument("--devices", default="cisco-n5000,juniper-mx960,arista-dcs-7150s",
                    help="Recordings (tests/collect/snmp/testdata) served by snmpsim.")
    args = ap.parse_args()
    devices = [d for d in args.devices.split(",") if d]
    rows = []
    with tempfile.TemporaryDirectory(prefix="pmaintd-bench-snmp-cpu-") as tmp:
        sim = start_snmpsim(Path(tmp), [RECORDINGS / f"{d}.snmprec.bz2" for d in devices])
        try:
            for d in devices:
                rows.append(asyncio.run(bench_device(sim.address, d, args.polls, args.max_repetitions)))
        finally:
            sim.stop()
    header = ["device", "pysnmp CPU ms/poll", "snmp_wire CPU ms/poll", "new/old", "pysnmp us/varbind",
              "snmp_wire us/varbind", "varbinds/poll", "requests old/new", "points", "points identical"]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print(f"SNMP v2c against snmpsim, max_repetitions {args.max_repetitions}, medians of {args.polls} polls per path")
    for r in [header, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
