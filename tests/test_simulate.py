"""The fleet simulator: deterministic, precursors lead failures, failed entities behave as failed."""

from __future__ import annotations

from collections import defaultdict

from pmaintd.simulate import NS, FleetSpec, simulate

START = 1_700_000_000 * NS
SPEC = FleetSpec(hosts=12, days=6, step_s=900, seed=3, host_failure_fraction=0.5, link_failure_fraction=0.5)


def _series(batches, measurement, key, field):
    out = defaultdict(list)
    for batch in batches:
        for p in batch:
            if p.measurement == measurement:
                out[key(p)].append((p.time, p.fields[field]))
    return out


def test_deterministic_for_a_seed() -> None:
    a, fa = simulate(SPEC, START)
    b, fb = simulate(SPEC, START)
    assert fa == fb
    assert [p for batch in a for p in batch][:500] == [p for batch in b for p in batch][:500]


def test_ecc_errors_rise_before_dram_failures_and_host_goes_silent() -> None:
    batches, failures = simulate(SPEC, START)
    ce = _series(batches, "edac", lambda p: p.tags["host"], "ce_count")
    dram = [f for f in failures if f.kind == "host" and f.cause == "dram_uncorrectable"]
    assert dram, "the spec should produce at least one DRAM failure"
    for f in dram:
        points = ce[f.entity]
        assert max(t for t, _ in points) < f.time  # silent after the failure
        before_24h = [v for t, v in points if t <= f.time - 24 * 3600 * NS][-1]
        at_end = points[-1][1]
        assert at_end - before_24h >= 20  # a burst of CEs in the last day
    healthy = {f"sim-host-{i:03d}" for i in range(SPEC.hosts)} - {f.entity for f in failures if f.kind == "host"}
    assert all(ce[h][-1][1] <= 5 for h in healthy)


def test_links_go_down_while_admin_up_after_rx_power_falls() -> None:
    batches, failures = simulate(SPEC, START)
    batches = list(batches)
    oper = _series(batches, "interface", lambda p: f"{p.tags['source']}/{p.tags['ifName']}", "ifOperStatus")
    rx = _series(batches, "snmp_sensor", lambda p: f"{p.tags['source']}/{p.tags['ifName']}", "reading")
    links = [f for f in failures if f.kind == "network"]
    assert links
    for f in links:
        assert all(v == 1 for t, v in oper[f.entity] if t < f.time)
        assert all(v == 2 for t, v in oper[f.entity] if t >= f.time)
        early = [v for t, v in rx[f.entity] if t < f.time - 72 * 3600 * NS]
        late = [v for t, v in rx[f.entity] if f.time - 3600 * NS <= t < f.time]
        if early:
            assert max(late) < min(early) - 3  # dBm fell by more than 3 dB right before the failure
