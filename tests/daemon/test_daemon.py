"""`pmaintd run` as systemd runs it: a real subprocess, a real AF_UNIX datagram socket in $NOTIFY_SOCKET,
real collectors (this machine's /proc; a real net-snmp agent), the real sqlite store, real HTTP scrapes.
systemd itself is not PID 1 on these machines, so the test plays its part of the notify protocol."""

from __future__ import annotations

import itertools
import json
import re
import signal
import statistics
import time
from pathlib import Path

import pytest

from pmaintd.collect.runstate import RunState
from pmaintd.store.sqlite import SqliteStore
from tests import services
from tests.daemon.harness import (
    DaemonProcess,
    NotifySocket,
    UdpGate,
    free_tcp_port,
    healthz,
    http_get,
    metric,
    metrics,
    wait_until,
)

pytestmark = pytest.mark.service


def make_config(listen: str, *, host_interval: str = "1s", extra: str = "", log_format: str = "text") -> str:
    """The host collector on this machine every second; disk collectors off (no disks worth polling here)."""
    return f"""
[collect.host]
interval = "{host_interval}"
[collect.diskio]
enabled = false
[collect.smart]
enabled = false
[daemon]
listen = "{listen}"
jitter = "200ms"
misfire_grace = "5s"
housekeeping_interval = "2s"
log_format = "{log_format}"
{extra}
"""


def snmp_target(name: str, address: str, interval: str = "1s", timeout: str = "200ms") -> str:
    return f"""
[[snmp.targets]]
name = "{name}"
address = "{address}"
community = "public"
interval = "{interval}"
timeout = "{timeout}"
retries = 0
"""


def start(
    daemons: list[DaemonProcess], tmp: Path, config: str, notify: NotifySocket | None, **env: str
) -> DaemonProcess:
    d = DaemonProcess(tmp, config, notify, dict(env))
    daemons.append(d.start())
    return d


def stored_rows(state_dir: Path, measurement: str) -> int:
    """Points of one measurement (of the last 24 h: all the test writes) in the daemon's sqlite store, read as
    `pmaintd status` reads them (a second process on the WAL file while the daemon writes)."""
    if not (state_dir / "pmaintd.db").exists():
        return 0
    st = SqliteStore(state_dir / "pmaintd.db")
    try:
        return next((m.points_24h for m in st.stats() if m.measurement == measurement), 0)
    finally:
        st.close()


def test_ready_only_once_store_is_open_then_stop_on_sigterm(tmp_path, notify, daemons):
    listen = f"127.0.0.1:{free_tcp_port()}"
    d = start(daemons, tmp_path, make_config(listen), notify)
    ready = notify.wait_for(lambda f: f.get("READY") == "1", 30)
    # READY means usable: the store file exists, the HTTP endpoint answers and says it is ready.
    assert (d.state_dir / "pmaintd.db").exists()
    status, body = healthz(listen)
    assert status == 200 and body["ready"] is True
    assert "targets up" in ready.fields["STATUS"]
    wait_until(lambda: stored_rows(d.state_dir, "cpu") > 0, 10, "host points in the store")
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    assert notify.with_key("STOPPING"), "no STOPPING=1"
    assert not notify.with_key("WATCHDOG"), "WATCHDOG=1 sent although $WATCHDOG_USEC was not set"
    assert "Traceback" not in d.stderr


def test_notify_socket_as_a_path(tmp_path, daemons):
    """$NOTIFY_SOCKET may be a filesystem path as well as an abstract `@name`."""
    sock = NotifySocket(abstract=False)
    try:
        d = start(daemons, tmp_path, make_config(f"127.0.0.1:{free_tcp_port()}"), sock)
        sock.wait_for(lambda f: f.get("READY") == "1", 30)
        d.signal(signal.SIGINT)
        assert d.wait(10) == 0
        assert sock.with_key("STOPPING")
    finally:
        sock.close()


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('[daemon]\nlisten = "localhost"\n', "daemon.listen"),
        ('[collect.host]\nintervall = "5s"\n', "collect.host.intervall"),
    ],
)
def test_bad_config_at_start_no_ready_nonzero_exit_key_on_stderr(tmp_path, notify, daemons, extra, key):
    d = start(daemons, tmp_path, extra, notify)
    code = d.wait(30)
    assert code == 2
    assert key in d.stderr
    notify.drain(0.3)
    assert not notify.with_key("READY")


def test_listen_address_in_use_fails_before_ready(tmp_path, notify, daemons):
    """The config is valid but the daemon cannot serve /metrics: no READY, non-zero exit, the key named."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        listen = f"127.0.0.1:{busy.getsockname()[1]}"
        d = start(daemons, tmp_path, make_config(listen), notify)
        code = d.wait(30)
    assert code != 0
    assert "daemon.listen" in d.stderr and listen in d.stderr
    notify.drain(0.3)
    assert not notify.with_key("READY")


def test_watchdog_pings_at_half_the_interval(tmp_path, notify, daemons):
    d = start(daemons, tmp_path, make_config(f"127.0.0.1:{free_tcp_port()}"), notify, WATCHDOG_USEC="1000000")
    notify.wait_for(lambda f: f.get("READY") == "1", 30)
    notify.drain(4.0)
    pings = [m.at for m in notify.with_key("WATCHDOG")]
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert len(pings) >= 6, pings
    assert 0.35 < statistics.median(gaps) < 0.65, gaps
    assert max(gaps) < 1.0, f"a gap reached WATCHDOG_USEC: systemd would have killed the daemon: {gaps}"
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0


def test_watchdog_usec_for_another_pid_is_ignored(tmp_path, notify, daemons):
    """$WATCHDOG_PID names the process the watchdog is meant for; an inherited one is not ours."""
    d = start(
        daemons, tmp_path, make_config(f"127.0.0.1:{free_tcp_port()}"), notify, WATCHDOG_USEC="500000", WATCHDOG_PID="1"
    )
    notify.wait_for(lambda f: f.get("READY") == "1", 30)
    notify.drain(1.5)
    assert not notify.with_key("WATCHDOG")
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0


def test_status_metrics_and_healthz_report_up_and_down_targets(tmp_path, notify, daemons, snmpd):
    """One agent answers (real snmpd), one address has nobody listening: STATUS, /metrics and /healthz
    all say which is which."""
    dead = f"127.0.0.1:{services.free_port(__import__('socket').SOCK_DGRAM)}"
    listen = f"127.0.0.1:{free_tcp_port()}"
    extra = snmp_target("agent", snmpd.address) + snmp_target("dead", dead)
    d = start(daemons, tmp_path, make_config(listen, extra=extra), notify)
    notify.wait_for(lambda f: f.get("READY") == "1", 30)
    msg = notify.wait_for(lambda f: f.get("STATUS", "").startswith("2 of 3 targets up; down: snmp/dead;"), 15)
    assert "forecast" in msg.fields["STATUS"].rsplit(";", 1)[1]  # the forecasting state comes last

    m = metrics(listen)
    assert metric(m, "pmaintd_target_up", collector="snmp", target="agent") == 1
    assert metric(m, "pmaintd_target_up", collector="snmp", target="dead") == 0
    assert metric(m, "pmaintd_collect_runs_total", collector="snmp", target="agent", outcome="ok") >= 1
    failed = sum(
        metric(m, "pmaintd_collect_runs_total", collector="snmp", target="dead", outcome=o)
        for o in ("error", "timeout")
    )
    assert failed >= 1
    assert metric(m, "pmaintd_collect_duration_seconds_count", collector="host") >= 1
    assert metric(m, "pmaintd_points_collected_total", collector="snmp") > 0
    wait_until(lambda: metric(metrics(listen), "pmaintd_points_stored_total") > 0, 10, "points stored")
    assert metric(m, "pmaintd_points_rejected_total") == 0

    status, body = healthz(listen)
    assert status == 200
    assert body["status"] == "ok" and body["targets_total"] == 3 and body["targets_down"] == ["snmp/dead"]
    assert http_get(f"http://{listen}/nothing-here")[0] == 404

    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    # The run state `pmaintd status` reads has every target, with the dead one failing.
    with RunState(d.state_dir) as rs:
        runs = {(r.collector, r.target): r.ok for r in rs.all()}
    assert runs[("snmp", "agent")] is True and runs[("snmp", "dead")] is False
    assert stored_rows(d.state_dir, "pmaintd_collector") >= 3


def test_failing_target_logged_once_and_once_on_recovery(tmp_path, notify, daemons, snmpd):
    """An agent stops answering for several polls, then answers again: one warning, one recovery line
    (JSON logs, with the target as a field), not one line per failed poll."""
    gate = UdpGate(snmpd.port)
    try:
        listen = f"127.0.0.1:{free_tcp_port()}"
        cfg = make_config(listen, extra=snmp_target("sw1", gate.address), log_format="json", host_interval="5s")
        d = start(daemons, tmp_path, cfg, notify)
        notify.wait_for(lambda f: f.get("READY") == "1", 30)

        def failures() -> float:
            m = metrics(listen)
            return sum(
                metric(m, "pmaintd_collect_runs_total", collector="snmp", target="sw1", outcome=o)
                for o in ("error", "timeout")
            )

        wait_until(lambda: failures() >= 4, 20, "4 failed polls of sw1")
        gate.open = True
        wait_until(
            lambda: metric(metrics(listen), "pmaintd_target_up", collector="snmp", target="sw1") == 1, 20, "recovery"
        )
        gate.open = False
        wait_until(lambda: failures() >= 6, 20, "sw1 failing again")
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0
    finally:
        gate.close()

    records = [json.loads(line) for line in d.stderr.splitlines() if line.startswith("{")]
    mine = [r for r in records if r.get("logger") == "pmaintd.daemon" and r.get("target") == "sw1"]
    failing = [r for r in mine if "is failing" in r["msg"]]
    recovered = [r for r in mine if "recovered" in r["msg"]]
    assert len(failing) == 2, [r["msg"] for r in mine]  # once per outage, two outages
    assert len(recovered) == 1, [r["msg"] for r in mine]
    assert failing[0]["level"] == "warning" and failing[0]["collector"] == "snmp"
    assert re.search(r"after \d+ failed polls", recovered[0]["msg"])


def test_sighup_reload_good_then_bad_then_good(tmp_path, notify, daemons, snmpd):
    listen = f"127.0.0.1:{free_tcp_port()}"
    d = start(daemons, tmp_path, make_config(listen), notify)
    notify.wait_for(lambda f: f.get("READY") == "1", 30)

    # Good: a new SNMP target appears, scheduled and polled without a restart.
    d.write_config(make_config(listen, extra=snmp_target("agent", snmpd.address)))
    n = len(notify.messages)
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    d.signal(signal.SIGHUP)
    rel = notify.wait_for(lambda f: f.get("RELOADING") == "1", 10, after=n)
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert before <= int(rel.fields["MONOTONIC_USEC"]) <= after
    notify.wait_for(lambda f: f.get("READY") == "1", 10, after=n)
    wait_until(
        lambda: metric(metrics(listen), "pmaintd_target_up", collector="snmp", target="agent") == 1, 15, "new target"
    )

    # Bad: an unknown key. The daemon keeps the old config, says so in STATUS and the log, and keeps polling.
    d.write_config(make_config(listen, extra=snmp_target("agent", snmpd.address)) + "\n[daemon.extra]\nx = 1\n")
    n = len(notify.messages)
    d.signal(signal.SIGHUP)
    notify.wait_for(lambda f: f.get("RELOADING") == "1", 10, after=n)
    msg = notify.wait_for(lambda f: f.get("READY") == "1", 10, after=n)
    assert "reload failed, still running on the previous config" in msg.fields["STATUS"]
    assert "daemon.extra" in msg.fields["STATUS"]
    runs = metric(metrics(listen), "pmaintd_collect_runs_total", collector="snmp", target="agent", outcome="ok")
    wait_until(
        lambda: (
            metric(metrics(listen), "pmaintd_collect_runs_total", collector="snmp", target="agent", outcome="ok") > runs
        ),
        10,
        "polls continuing on the old config",
    )
    assert d.proc is not None and d.proc.poll() is None
    assert re.search(r"ERROR .*reload failed, still running on the previous config.*daemon\.extra", d.stderr)
    assert healthz(listen)[1]["reload_error"]

    # Good again: the target is removed, the warning clears.
    d.write_config(make_config(listen))
    n = len(notify.messages)
    d.signal(signal.SIGHUP)
    msg = notify.wait_for(lambda f: f.get("READY") == "1", 10, after=n)
    assert "reload failed" not in msg.fields["STATUS"]
    assert "of 1 targets" in msg.fields["STATUS"]
    assert metric(metrics(listen), "pmaintd_reloads_total", outcome="failed") == 1
    assert metric(metrics(listen), "pmaintd_reloads_total", outcome="ok") == 2
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0


def test_sigterm_mid_collection_exits_0_within_10s(tmp_path, notify, daemons, snmpd):
    """SIGTERM while slow polls are in flight (agents that never answer, each poll allowed 30 s) and the
    host collector writes every second: STOPPING=1, everything collected is stored, exit 0 in < 10 s."""
    gates = [UdpGate(snmpd.port) for _ in range(3)]  # closed: requests vanish, as with a dead switch
    try:
        listen = f"127.0.0.1:{free_tcp_port()}"
        extra = "".join(snmp_target(f"slow{i}", g.address, interval="30s", timeout="10s") for i, g in enumerate(gates))
        d = start(daemons, tmp_path, make_config(listen, extra=extra), notify)
        notify.wait_for(lambda f: f.get("READY") == "1", 30)
        wait_until(lambda: stored_rows(d.state_dir, "cpu") > 0, 10, "host points stored")
        time.sleep(1.0)  # the slow polls started within the 200 ms jitter and are waiting on their agents
        m = metrics(listen)
        collected = metric(m, "pmaintd_points_collected_total", collector="host")
        assert sum(metric(m, "pmaintd_collect_runs_total", collector="snmp", target=f"slow{i}") for i in range(3)) == 0
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        code = d.wait(10)
        elapsed = time.monotonic() - t0
    finally:
        for g in gates:
            g.close()
    assert code == 0
    assert elapsed < 10, elapsed
    assert notify.with_key("STOPPING")
    # Host points collected before the signal are all in the store (the writer flushed before exit).
    total = sum(stored_rows(d.state_dir, m) for m in ("cpu", "mem", "swap", "system"))
    assert total >= collected
    assert "stopped: pending writes flushed" in d.stderr


_STOP_LINE = re.compile(
    r"stopped: pending writes flushed in [\d.]+s; (\d+) points stored since start, (\d+) refused(.*)"
)


def stop_report(stderr: str) -> tuple[int, dict[str, int]]:
    """(points the daemon handed the store, the store's final counters) from the daemon's stop line."""
    m = _STOP_LINE.search(stderr)
    assert m, stderr[-3000:]
    counters = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(3))}
    assert int(m.group(2)) == 0
    return int(m.group(1)), counters


def influx_points(influxd: services.Influxd, db: str) -> dict[str, int]:
    """Points per measurement, counted as distinct (series, time): InfluxDB stores a rewrite of the same
    point once, so this is what arrived."""
    res = influxd.query("SHOW MEASUREMENTS", db=db)["results"][0]
    names = [v[0] for s in res.get("series", []) for v in s["values"]]
    out = {}
    for name in names:
        series = influxd.query(f'SELECT * FROM "{name}" GROUP BY *', db=db)["results"][0].get("series", [])
        out[name] = sum(len({row[0] for row in s["values"]}) for s in series)
    return out


def test_influxdb_outage_spooled_and_replayed_across_a_restart(tmp_path, notify, daemons, influxd):
    """Kill the real influxd while the daemon writes to it, restart it: every point collected arrives,
    none twice; then again with the daemon stopped during the outage and started after it (the spool is
    on disk in the state dir and a new process replays it)."""
    db = "daemon_spool"
    listen = f"127.0.0.1:{free_tcp_port()}"
    store = f'\n[store]\nkind = "influxdb"\nurl = "{influxd.url}"\ndatabase = "{db}"\ntimeout = "2s"\n'
    cfg = make_config(listen, extra=store)

    def m(name: str) -> float:
        return metric(metrics(listen), name)

    try:
        d1 = start(daemons, tmp_path, cfg, notify)
        notify.wait_for(lambda f: f.get("READY") == "1", 30)
        wait_until(lambda: m("pmaintd_store_points_written_total") > 0, 15, "points written to influxd")

        influxd.kill()  # outage while the daemon runs
        wait_until(lambda: m("pmaintd_store_points_spooled_total") >= 20, 20, "points spooled during the outage")
        influxd.restart()
        wait_until(
            lambda: m("pmaintd_store_points_replayed_total") > 0 and m("pmaintd_store_spool_pending_points") == 0,
            60,
            "spool replayed",
        )

        influxd.kill()  # outage, and the daemon stops during it
        spooled = m("pmaintd_store_points_spooled_total")
        wait_until(lambda: m("pmaintd_store_points_spooled_total") >= spooled + 20, 20, "spooling again")
        d1.signal(signal.SIGTERM)
        assert d1.wait(10) == 0
        stored1, c1 = stop_report(d1.stderr)
        assert c1["spool_pending_points"] > 0
    finally:
        if influxd.proc.poll() is not None:
            influxd.restart()

    d2 = start(daemons, tmp_path, cfg, notify)
    n = len(notify.messages)
    notify.wait_for(lambda f: f.get("READY") == "1", 30, after=n)
    wait_until(
        lambda: (
            m("pmaintd_store_points_replayed_total") >= c1["spool_pending_points"]
            and m("pmaintd_store_spool_pending_points") == 0
        ),
        60,
        "the previous process's spool replayed",
    )
    d2.signal(signal.SIGTERM)
    assert d2.wait(10) == 0
    stored2, c2 = stop_report(d2.stderr)

    arrived = influx_points(influxd, db)
    assert sum(arrived.values()) == stored1 + stored2, arrived
    sent = c1["points_written"] + c1["points_replayed"] + c2["points_written"] + c2["points_replayed"]
    assert sent == stored1 + stored2, "a spooled batch was sent twice (or not at all)"
    assert c1["points_dropped"] == c2["points_dropped"] == 0
    assert c2["spool_pending_points"] == 0
    assert arrived["pmaintd_collector"] > 0 and arrived["cpu"] > 0


def test_hung_ssh_host_never_starves_the_others_and_stop_still_exits(tmp_path, notify, daemons, sshd):
    """A [[hosts]] entry whose SSH server accepts the connection and then says nothing (a hung machine):
    its poll is abandoned at the timeout, its next polls are skipped while that thread is stuck, the local
    machine keeps being polled every second, and SIGTERM still exits 0 in time."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts (the kernel completes the handshake) but never sends an SSH banner
    try:
        listen = f"127.0.0.1:{free_tcp_port()}"
        hosts = f"""
[[hosts]]
name = "hung"
address = "127.0.0.1:{silent.getsockname()[1]}"
user = "root"
key_file = "{sshd.client_key}"
known_hosts = "{sshd.known_hosts}"
connect_timeout = "60s"
collect = ["host"]
"""
        cfg = make_config(listen, extra=hosts).replace(
            '[collect.host]\ninterval = "1s"', '[collect.host]\ninterval = "1s"\ntimeout = "1s"'
        )
        d = start(daemons, tmp_path, cfg, notify)
        notify.wait_for(lambda f: f.get("READY") == "1", 30)
        local = None

        def outcomes() -> dict[str, float]:
            m = metrics(listen)
            return {
                o: metric(m, "pmaintd_collect_runs_total", collector="host", target="hung", outcome=o)
                for o in ("timeout", "skipped", "ok")
            }

        wait_until(lambda: outcomes()["skipped"] >= 3, 20, "polls of the hung host skipped")
        m = metrics(listen)
        local = [
            k
            for k in m
            if k.startswith("pmaintd_collect_runs_total{")
            and 'target="hung"' not in k
            and 'outcome="ok"' in k
            and 'collector="host"' in k
        ]
        assert local and m[local[0]] >= 4, "the local machine was starved by the hung host"
        assert outcomes()["timeout"] >= 1 and outcomes()["ok"] == 0
        msg = notify.wait_for(lambda f: "down: host/hung" in f.get("STATUS", ""), 5)
        assert "1 of 2 targets up" in msg.fields["STATUS"]
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0
        assert time.monotonic() - t0 < 10
    finally:
        silent.close()
    assert re.search(r"host target hung is failing: no result within 1s \(abandoned", d.stderr)


def test_a_notify_receiver_that_stops_reading_never_blocks_the_loop(tmp_path, notify, daemons):
    """An AF_UNIX datagram queue holds ~10 messages; with WATCHDOG=1 every 0.1 s and nobody reading it
    fills at once. The loop must keep running (pings dropped, not waited for) and stop must still work."""
    listen = f"127.0.0.1:{free_tcp_port()}"
    d = start(daemons, tmp_path, make_config(listen), notify, WATCHDOG_USEC="200000")
    notify.wait_for(lambda f: f.get("READY") == "1", 30)
    before = metric(metrics(listen), "pmaintd_collect_runs_total", collector="host", outcome="ok")
    time.sleep(4.0)  # not reading
    status, body = healthz(listen)
    assert status == 200 and body["loop_lag_seconds"] < 2.0, body
    assert metric(metrics(listen), "pmaintd_collect_runs_total", collector="host", outcome="ok") >= before + 2
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0


def test_housekeeping_records_incidents_the_telemetry_shows(tmp_path, notify, daemons):
    """A disk that failed its SMART health check is in the store; the daemon's housekeeping job records
    it as a `pmaintd_incident` once (detection is idempotent across passes)."""
    from pmaintd.telemetry import Point, now_ns

    state = tmp_path / "state"
    st = SqliteStore(state / "pmaintd.db")
    tags = {"host": "db1", "device": "sda", "serial_no": "WD-WX11A", "model": "WDC WD40EFRX"}
    st.write([Point("smart_device", tags, {"health_ok": False, "temp_c": 41}, now_ns() - 60 * 10**9)])
    st.close()
    listen = f"127.0.0.1:{free_tcp_port()}"
    d = start(daemons, tmp_path, make_config(listen), notify)
    notify.wait_for(lambda f: f.get("READY") == "1", 30)
    wait_until(lambda: stored_rows(state, "pmaintd_incident") == 1, 15, "the incident recorded")
    passes = metric(metrics(listen), "pmaintd_housekeeping_runs_total", outcome="ok")
    wait_until(
        lambda: metric(metrics(listen), "pmaintd_housekeeping_runs_total", outcome="ok") >= passes + 2,
        15,
        "two more housekeeping passes",
    )
    assert stored_rows(state, "pmaintd_incident") == 1
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    assert "recorded 1 new incidents from telemetry: disk WD-WX11A" in d.stderr


def _promote_real_disk_model(state: Path) -> str:
    """Train a small real LightGBM disk model on real Backblaze rows (as tests/forecast does) and promote
    it in the state dir's registry; returns its version."""
    from pmaintd.forecast.bundle import Registry, load
    from pmaintd.forecast.disk import train_from_backblaze
    from tests.forecast.conftest import HDS, SMALL

    trained = state.parent / "trained-disk"
    train_from_backblaze([HDS], trained, SMALL, baselines=False, log=lambda _m: None)
    version = load(trained).version
    reg = Registry(state)
    reg.copy_in("disk", trained, version)
    reg.promote("disk", version)
    return version


def test_forecast_job_scores_every_drive_and_reports_it(tmp_path, notify, daemons):
    """A real disk model in the registry and real drive histories (Backblaze rows moved to end today) in
    the store: the model is loaded before READY, the forecast job writes one `pmaintd_forecast` per drive,
    and STATUS, /metrics and the log say so."""
    import datetime as dt

    import polars as pl

    from pmaintd.forecast.backblaze import read_backblaze, to_points
    from tests.forecast.conftest import HDS

    state = tmp_path / "state"
    version = _promote_real_disk_model(state)
    df = read_backblaze([HDS])
    serials = df["serial_number"].unique().sort()[:20].to_list()
    df = df.filter(pl.col("serial_number").is_in(serials))
    # Each drive's history is moved to end today, as if every drive were still reporting.
    last = pl.col("date").max().over("serial_number")
    df = df.with_columns(pl.col("date") + (pl.lit(dt.date.today()) - last))
    st = SqliteStore(state / "pmaintd.db")
    for batch in to_points(df):
        st.write(batch)
    st.close()

    listen = f"127.0.0.1:{free_tcp_port()}"
    extra = '[forecast]\ninterval = "3s"\nkinds = ["disk"]\nmin_history = "1d"\n'
    d = start(daemons, tmp_path, make_config(listen, extra=extra), notify)
    notify.wait_for(lambda f: f.get("READY") == "1", 60)
    msg = notify.wait_for(lambda f: "last forecast" in f.get("STATUS", ""), 60)
    assert re.search(r"last forecast \d\d:\d\d:\d\dZ: 20 entities, \d+ alarms", msg.fields["STATUS"])
    m = metrics(listen)
    assert metric(m, "pmaintd_forecast_runs_total", outcome="ok") >= 1
    scored = sum(v for k, v in m.items() if k.startswith('pmaintd_forecasts_total{kind="disk"'))
    assert scored >= 20 and scored % 20 == 0
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0

    st = SqliteStore(state / "pmaintd.db")
    forecasts = st.query("pmaintd_forecast")
    st.close()
    assert set(forecasts["entity"].to_list()) == set(serials)
    assert set(forecasts["model_version"].to_list()) == {version}
    assert set(forecasts["kind"].to_list()) == {"disk"}
    log = d.stderr
    assert log.index(f"models loaded: disk {version}") < log.index("ready:")
    assert re.search(r"forecast: 20 entities scored in [\d.]+s", log)


def test_retrain_job_trains_promotes_and_the_forecast_job_picks_it_up(tmp_path, notify, daemons):
    """Real Backblaze drive histories (with their failures as incidents) in the store. The daemon's retrain
    job runs `pmaintd retrain` in its own process, which trains a challenger against the current (shipped)
    model and promotes it; the next forecast loads it without a restart and scores the drives."""
    import datetime as dt

    import polars as pl

    from pmaintd.forecast.backblaze import read_backblaze, to_points
    from tests.forecast.conftest import HDS

    state = tmp_path / "state"
    df = read_backblaze([HDS])
    df = df.with_columns(pl.col("date") + (dt.date.today() - df["date"].max()))
    st = SqliteStore(state / "pmaintd.db")
    for batch in to_points(df):
        st.write(batch)
    st.close()

    listen = f"127.0.0.1:{free_tcp_port()}"
    # retention: the sample's 120 days must survive the daemon's housekeeping (30 days by default).
    # The challenger is fine-tuned from the shipped model, the daemon's default below 200 failures (the sample
    # has 80). Trained from scratch instead, the gate's verdict was a coin flip decided by the day the test ran:
    # the sample is shifted to end today, which redraws the row-hash negative subsample, and the recent window
    # holds 1 failure and 67 healthy drives, so one more false alarm (2 of 67) refused it on 29 of 54 dates.
    extra = (
        '[forecast]\ninterval = "2s"\nkinds = ["disk"]\nmin_history = "1d"\n'
        '[store]\nretention = "3650d"\n'
    )
    cfg = make_config(listen, extra=extra).replace("[daemon]\n", '[daemon]\nretrain_interval = "2s"\n')
    d = start(daemons, tmp_path, cfg, notify)
    notify.wait_for(lambda f: f.get("READY") == "1", 60)
    wait_until(lambda: "retrain disk " in d.stderr, 180, "the first retrain", step=1.0)
    m = re.search(r"retrain disk in \d+s: promoted (\S+)", d.stderr)
    assert m, d.stderr[-3000:]
    version = m.group(1)
    assert metric(metrics(listen), "pmaintd_retrains_total", kind="disk", outcome="promoted") >= 1

    def scored_with_new_model() -> int:
        st = SqliteStore(state / "pmaintd.db")
        try:
            return st.query("pmaintd_forecast", tags={"model_version": version}).height
        finally:
            st.close()

    wait_until(lambda: scored_with_new_model() > 0, 60, "forecasts by the promoted model")
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    assert f"models loaded: disk {version}" in d.stderr  # picked up without a restart


def test_sigterm_while_a_write_hangs_on_a_silent_influxdb_still_exits_0_within_10s(tmp_path, notify, daemons):
    """The InfluxDB address accepts connections and never answers (a hung server): the writer thread is
    stuck inside a request when SIGTERM comes. The daemon still exits 0 within 10 s (stop_timeout 8 s)."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        listen = f"127.0.0.1:{free_tcp_port()}"
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        store = f'\n[store]\nkind = "influxdb"\nurl = "{url}"\ntimeout = "30s"\n'
        d = start(daemons, tmp_path, make_config(listen, extra=store), notify)
        notify.wait_for(lambda f: f.get("READY") == "1", 30)
        wait_until(lambda: metric(metrics(listen), "pmaintd_write_queue_points") > 0, 15, "a write in flight")
        in_flight = metric(metrics(listen), "pmaintd_write_queue_points")
        wait_until(
            lambda: metric(metrics(listen), "pmaintd_write_queue_points") > in_flight, 15, "writes queued behind it"
        )
        t0 = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(10) == 0
        assert time.monotonic() - t0 < 10
    finally:
        silent.close()
    # What waited behind the hung request is in the spool for the next start; only the request in flight
    # is honestly reported as not written.
    m = re.search(
        r"the store did not finish writing within 8s; exiting anyway, (\d+) points spooled for the next start, "
        r"(\d+) points not written",
        d.stderr,
    )
    assert m and int(m.group(1)) > 0, d.stderr[-2000:]
    from pmaintd.store.spool import Spool

    spool = Spool(d.state_dir / "influx-spool.sqlite", 1 << 30)
    assert spool.pending_points() >= int(m.group(1))
    spool.close()


def test_sighup_moves_the_store_and_the_listen_address(tmp_path, notify, daemons, influxd):
    """A reload that points the daemon at InfluxDB and another port: writes queued before it go to the old
    store, later ones to the new; /metrics moves to the new address."""
    db = "daemon_reload"
    first, second = f"127.0.0.1:{free_tcp_port()}", f"127.0.0.1:{free_tcp_port()}"
    d = start(daemons, tmp_path, make_config(first), notify)
    notify.wait_for(lambda f: f.get("READY") == "1", 30)
    wait_until(lambda: stored_rows(d.state_dir, "cpu") > 0, 10, "host points in sqlite")
    store = f'\n[store]\nkind = "influxdb"\nurl = "{influxd.url}"\ndatabase = "{db}"\n'
    d.write_config(make_config(second, extra=store))
    n = len(notify.messages)
    d.signal(signal.SIGHUP)
    msg = notify.wait_for(lambda f: f.get("READY") == "1", 15, after=n)
    assert "reload failed" not in msg.fields["STATUS"]
    wait_until(lambda: metric(metrics(second), "pmaintd_store_points_written_total") > 0, 15, "writes to influxd")
    with pytest.raises(OSError):
        http_get(f"http://{first}/metrics", timeout=2)
    sqlite_rows = stored_rows(d.state_dir, "cpu")
    time.sleep(2.5)
    assert stored_rows(d.state_dir, "cpu") == sqlite_rows, "sqlite still written after the reload"
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
    assert influx_points(influxd, db).get("cpu", 0) > 0


def test_a_stalled_process_catches_up_with_one_coalesced_run_and_misses_nothing(tmp_path, notify, daemons):
    """SIGSTOP freezes the daemon for 3.5 s (as a stalled loop or a paused VM would), polls due every second
    pile up; on SIGCONT each job runs once (coalesced, not three times in a burst) and, within
    misfire_grace, none is dropped."""
    listen = f"127.0.0.1:{free_tcp_port()}"
    d = start(daemons, tmp_path, make_config(listen), notify)
    notify.wait_for(lambda f: f.get("READY") == "1", 30)

    def polls() -> float:
        return metric(metrics(listen), "pmaintd_collect_runs_total", collector="host", outcome="ok")

    wait_until(lambda: polls() >= 2, 10, "two polls")
    time.sleep(0.3)
    before = polls()
    d.signal(signal.SIGSTOP)
    time.sleep(3.5)
    d.signal(signal.SIGCONT)
    time.sleep(0.5)
    after = polls()
    # One catch-up run (plus at most the next regular one); without coalescing the 3 missed runs would all
    # run at once, back to back.
    assert 1 <= after - before <= 2, (before, after)
    assert sum(v for k, v in metrics(listen).items() if k.startswith("pmaintd_jobs_missed_total")) == 0
    wait_until(lambda: polls() >= after + 2, 5, "regular polls again")
    d.signal(signal.SIGTERM)
    assert d.wait(10) == 0
