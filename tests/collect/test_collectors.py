"""Collector behaviour on recorded trees: hand-computed values, identity tags, filters, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmaintd.collect import CollectError, Target
from pmaintd.collect.diskio import DiskioCollector, disk_identity, normalize_wwn
from pmaintd.collect.host import HostCollector, cpu_points
from pmaintd.collect.procfs import DiskStats, parse_stat
from pmaintd.collect.smart_parse import parse
from pmaintd.config import DiskioConfig
from pmaintd.telemetry import Point
from tests.collect.filetree import FileTreeTransport

DATA = Path(__file__).parent / "testdata"


def _target(host: str, *roots: Path) -> Target:
    return Target(name=host, interval=60.0, timeout=30.0, transport=FileTreeTransport(host, *roots))


def _by(points: list[Point], measurement: str, **tags: str) -> Point:
    hits = [p for p in points if p.measurement == measurement and all(p.tags.get(k) == v for k, v in tags.items())]
    assert len(hits) == 1, f"expected one {measurement} {tags}, got {len(hits)}"
    return hits[0]


def _diskio(cfg: DiskioConfig, *roots: Path) -> list[Point]:
    t = _target("server", *roots)
    return DiskioCollector(cfg, [t]).collect(t)


def test_diskio_units_and_names_match_telegraf() -> None:
    """sda's line in server/proc/diskstats, converted by hand: sectors * 512 bytes, times in ms, as-is."""
    sda = _by(_diskio(DiskioConfig(), DATA / "server"), "diskio", name="sda")
    assert sda.fields["reads"] == 18350271
    assert sda.fields["merged_reads"] == 1249305
    assert sda.fields["read_bytes"] == 3195842042 * 512
    assert sda.fields["read_time"] == 94217305
    assert sda.fields["writes"] == 40371992
    assert sda.fields["write_bytes"] == 3891077520 * 512
    assert sda.fields["iops_in_progress"] == 3
    assert sda.fields["io_time"] == 51200340
    assert sda.fields["weighted_io_time"] == 785245716
    assert sda.fields["flushes"] == 1845512
    assert sda.tags["host"] == "server"


def test_diskio_identity_tags_from_udev_and_sysfs() -> None:
    points = _diskio(DiskioConfig(), DATA / "server")
    sda = _by(points, "diskio", name="sda")  # udev database present
    assert sda.tags["serial"] == "WDC_WD40EFRX-68N32N0_WD-WCC7K1AB2CDE"  # Telegraf's ID_SERIAL
    assert sda.tags["serial_no"] == "WD-WCC7K1AB2CDE"  # what smartctl calls the serial
    assert sda.tags["wwn"] == "50014ee2b9a1c3d5"
    sdb = _by(points, "diskio", name="sdb")  # no udev entry: WWN from sysfs, SCSI serial not in sysfs
    assert sdb.tags.get("wwn") == "5000c500a1b2c3d4"
    assert "serial" not in sdb.tags and "serial_no" not in sdb.tags
    nvme1 = _by(points, "diskio", name="nvme1n1")  # sysfs only, serial padded with spaces by firmware
    assert nvme1.tags["serial_no"] == "S5H9NS0N987654B"
    assert nvme1.tags["wwn"] == "eui.002538b911b2a3c4"
    for part in ("sda1", "sdb2", "nvme0n1p1"):
        p = _by(points, "diskio", name=part)
        assert not {"serial", "serial_no", "wwn"} & set(p.tags), f"partition {part} must not carry disk identity"
    names = {p.tags["name"] for p in points}
    assert {"md0", "dm-0", "dm-1", "sr0"} <= names
    assert "loop0" not in names  # skip_virtual


def test_diskio_devices_globs_and_skip_virtual() -> None:
    only_sd = _diskio(DiskioConfig(devices=["sd?"]), DATA / "server")
    assert sorted(p.tags["name"] for p in only_sd) == ["sda", "sdb"]
    all_nodeexp = _diskio(DiskioConfig(skip_virtual=False), DATA / "node_exporter")
    assert any(p.tags["name"] == "ram0" for p in all_nodeexp)
    assert not any(p.tags["name"].startswith(("ram", "loop")) for p in _diskio(DiskioConfig(), DATA / "node_exporter"))


def test_diskio_old_kernel_formats() -> None:
    """node_exporter's fixture mixes 11-, 15- and 17-counter lines (kernels <4.18, 4.18+, 5.5+)."""
    points = _diskio(DiskioConfig(), DATA / "node_exporter")
    sda = _by(points, "diskio", name="sda")
    assert "discards" not in sda.fields and sda.fields["weighted_io_time"] == 82621804
    sdb = _by(points, "diskio", name="sdb")
    assert sdb.fields["discard_bytes"] == 1925173784 * 512 and "flushes" not in sdb.fields
    sdc = _by(points, "diskio", name="sdc")
    assert sdc.fields["flushes"] == 1555 and sdc.fields["flush_time"] == 1944


def test_diskio_hostile_serial_is_cleaned(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/diskstats").write_text("   8       0 sda 1 0 8 1 1 0 8 1 0 1 2\n")
    (tmp_path / "sys/block/sda").mkdir(parents=True)
    (tmp_path / "run/udev/data").mkdir(parents=True)
    (tmp_path / "run/udev/data/b8:0").write_text("E:ID_SERIAL_SHORT=  X1\x1b[2J\r\n")
    p = _diskio(DiskioConfig(), tmp_path)[0]
    assert p.tags["serial_no"] == "X1[2J"


@pytest.mark.parametrize(
    ("raw", "wwn"),
    [
        ("0x5000C500A1B2C3D4\n", "5000c500a1b2c3d4"),
        ("naa.5000c500a1b2c3d4", "5000c500a1b2c3d4"),
        ("naa.6001405a8b3c4d5e6f7a8b9c0d1e2f3a", "6001405a8b3c4d5e6f7a8b9c0d1e2f3a"),
        ("eui.0025388b71b2c3d4", "eui.0025388b71b2c3d4"),
        ("t10.ATA     WDC WD40EFRX-68N32N0                    WD-WCC7K1AB2CDE", None),
        ("0xZZ", None),
        ("", None),
    ],
)
def test_normalize_wwn(raw: str, wwn: str | None) -> None:
    assert normalize_wwn(raw) == wwn


def test_diskio_errors_name_the_target_and_file(tmp_path: Path) -> None:
    t = _target("h1", tmp_path)
    with pytest.raises(CollectError, match=r"h1: cannot read /proc/diskstats"):
        DiskioCollector(DiskioConfig(), [t]).collect(t)
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/diskstats").write_text("   8       0 sda 1 2 3\n")
    with pytest.raises(CollectError, match=r"h1: /proc/diskstats line 1: expected at least 14 columns"):
        DiskioCollector(DiskioConfig(), [t]).collect(t)


def _host_poll(roots: list[Path], later: Path | None = None) -> tuple[list[Point], list[float]]:
    t = _target("server", *roots)
    tr = t.transport
    assert isinstance(tr, FileTreeTransport)
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        if later is not None:
            tr.roots.insert(0, later)

    return HostCollector([t], first_sample_s=0.25, sleep=sleep).collect(t), slept


def test_cpu_usage_by_hand() -> None:
    """cpu-total deltas between server/ and server-later/ /proc/stat, computed by hand:
    user 2204 (of which guest 710), system 537, idle 21780, iowait 103, softirq 24; total 24648 ticks."""
    points, slept = _host_poll([DATA / "server"], DATA / "server-later")
    assert slept == [0.25]
    cpu = _by(points, "cpu", cpu="cpu-total")
    assert cpu.fields["usage_user"] == pytest.approx(100 * (2204 - 710) / 24648)
    assert cpu.fields["usage_guest"] == pytest.approx(100 * 710 / 24648)
    assert cpu.fields["usage_system"] == pytest.approx(100 * 537 / 24648)
    assert cpu.fields["usage_idle"] == pytest.approx(100 * 21780 / 24648)
    assert cpu.fields["usage_active"] == pytest.approx(100 * (24648 - 21780) / 24648)
    assert cpu.fields["time_user"] == pytest.approx(80216839 / 100)
    for p in points:
        if p.measurement == "cpu":
            parts = [v for k, v in p.fields.items() if k.startswith("usage_") and k != "usage_active"]
            assert sum(parts) == pytest.approx(100.0), p.tags  # type: ignore[arg-type]


def test_cpu_usage_skipped_when_counters_go_back() -> None:
    prev = parse_stat((DATA / "server-later/proc/stat").read_text())
    cur = parse_stat((DATA / "server/proc/stat").read_text())
    points = cpu_points(prev, cur, 100, "h", 1)
    assert all(not any(k.startswith("usage_") for k in p.fields) for p in points)
    assert all("time_idle" in p.fields for p in points)


def test_reboot_triggers_a_fresh_sample(tmp_path: Path) -> None:
    """A changed btime means every counter restarted: the collector samples twice instead of comparing."""
    t = _target("server", DATA / "server")
    tr = t.transport
    assert isinstance(tr, FileTreeTransport)
    slept: list[float] = []
    c = HostCollector([t], first_sample_s=0.1, sleep=slept.append)
    c.collect(t)
    c.collect(t)
    assert slept == [0.1]  # second poll compares with the first
    rebooted = tmp_path / "proc"
    rebooted.mkdir()
    (rebooted / "stat").write_text(
        (DATA / "server/proc/stat").read_text().replace("btime 1764240000", "btime 1764300000")
    )
    tr.roots.insert(0, tmp_path)
    c.collect(t)
    assert slept == [0.1, 0.1]


def test_mem_swap_system_by_hand() -> None:
    points, _ = _host_poll([DATA / "server"], DATA / "server-later")
    mem = _by(points, "mem").fields
    kib = 1024
    assert mem["total"] == 65773848 * kib
    assert mem["cached"] == (35120544 + 2710376) * kib  # Cached + SReclaimable, as gopsutil
    assert mem["used"] == (65773848 - 2118412 - 804212 - 35120544 - 2710376) * kib
    assert mem["available"] == 41029816 * kib
    assert mem["used_percent"] == pytest.approx(100 * mem["used"] / mem["total"])  # type: ignore[operator]
    assert mem["high_total"] == 0  # absent on x86_64: 0, as Telegraf reports
    swap = _by(points, "swap").fields
    assert swap["used"] == (8388604 - 8150332) * kib
    assert swap["in"] == 61422 * 4096 and swap["out"] == 123907 * 4096
    system = _by(points, "system").fields
    assert system == {"load1": 3.42, "load5": 2.97, "load15": 2.61, "n_cpus": 4, "uptime": 3612870}


def test_edac_and_temperatures() -> None:
    points, _ = _host_poll([DATA / "server"], DATA / "server-later")
    assert _by(points, "edac", controller="mc0").fields["ce_count"] == 7
    assert _by(points, "edac", controller="mc0").tags["mc_name"] == "F17h"
    assert _by(points, "edac_csrow", controller="mc0", csrow="csrow0").fields["ch0_ce_count"] == 7
    rank0 = _by(points, "edac_dimm", controller="mc0", dimm="rank0")
    assert rank0.fields == {"ce_count": 7, "ue_count": 0} and rank0.tags["location"] == "csrow 0 channel 0"
    dimm = _by(points, "edac_dimm", controller="mc1", dimm="dimm0")
    assert dimm.tags["label"] == "CPU_SrcID#0_MC#1_Chan#0_DIMM#0"
    assert _by(points, "temp", sensor="k10temp_tctl").fields["temp"] == 45.25
    assert _by(points, "temp", sensor="k10temp_tctl").tags["device"] == "0000:00:18.3"
    assert _by(points, "temp", sensor="nvme_composite").tags["device"] == "nvme0"
    assert _by(points, "temp", sensor="nvme_sensor_1").fields["temp"] == 41.85
    drive = _by(points, "temp", sensor="drivetemp_temp1")  # unlabeled sensor keeps its attribute name
    assert drive.fields["temp"] == 36.0 and "device" not in drive.tags


def test_host_without_edac_or_hwmon_has_no_such_points() -> None:
    points, _ = _host_poll([DATA / "vm"], DATA / "vm-later")
    assert {p.measurement for p in points} == {"cpu", "mem", "swap", "system"}


def test_host_missing_proc_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/stat").write_text((DATA / "vm/proc/stat").read_text())
    t = _target("h2", tmp_path)
    with pytest.raises(CollectError, match=r"h2: cannot read /proc/meminfo"):
        HostCollector([t], sleep=lambda _s: None).collect(t)


def test_steady_polls_need_one_transport_call_per_collector() -> None:
    """For a transport whose reads are remote commands: after the first poll (layout, identities, USER_HZ),
    a poll of the recorded server (14 devices, 2 memory controllers, 3 hwmon chips) is one call each."""
    t = _target("server", DATA / "server")
    tr = t.transport
    assert isinstance(tr, FileTreeTransport)
    host = HostCollector([t], sleep=lambda _s: None)
    disk = DiskioCollector(DiskioConfig(), [t])
    host.collect(t)
    disk.collect(t)
    first = tr.calls
    tr.calls = 0
    assert len(host.collect(t)) == 22 and tr.calls == 1
    tr.calls = 0
    assert len(disk.collect(t)) == 13 and tr.calls == 1
    assert first > 10  # discovery is where the listings go


def test_diskio_relists_block_devices_when_a_new_name_appears(tmp_path: Path) -> None:
    """A hot-plugged disk gets its identity on the poll that first sees it, not after the cache expires."""
    (tmp_path / "proc").mkdir()
    line = "   8      32 sdc 1 0 8 1 1 0 8 1 0 1 2\n"
    (tmp_path / "proc/diskstats").write_text((DATA / "server/proc/diskstats").read_text())
    t = _target("server", tmp_path, DATA / "server")
    c = DiskioCollector(DiskioConfig(), [t])
    assert "sdc" not in {p.tags["name"] for p in c.collect(t)}
    (tmp_path / "proc/diskstats").write_text((DATA / "server/proc/diskstats").read_text() + line)
    (tmp_path / "sys/block/sdc/device").mkdir(parents=True)
    (tmp_path / "sys/block/sdc/device/wwid").write_text("naa.5000c500deadbeef\n")
    sdc = _by(c.collect(t), "diskio", name="sdc")
    assert sdc.tags["wwn"] == "5000c500deadbeef"


def test_batched_read_splits_paths_with_colons() -> None:
    from pmaintd.collect.files import split_grep_output

    out = "/run/udev/data/b8:0:E:ID_SERIAL=X:Y\n/run/udev/data/b8:0:E:ID_WWN=0x1\n/sys/a/temp1_input:41850\n/sys/b:\n"
    got = split_grep_output(out, ["/run/udev/data/b8:0", "/sys/a/temp1_input", "/sys/b"])
    assert got == {
        "/run/udev/data/b8:0": "E:ID_SERIAL=X:Y\nE:ID_WWN=0x1\n",
        "/sys/a/temp1_input": "41850\n",
        "/sys/b": "\n",
    }


def test_padded_serial_is_one_tag_value_from_sysfs_and_smartctl() -> None:
    """diskio and smart_device join on serial_no, so both clean a firmware serial by the same rule: padding
    and whitespace runs folded, control characters dropped."""
    sda = DiskStats(8, 0, "sda", {})
    tags = disk_identity(sda, {"/sys/block/sda/device/serial": "  WD-WCC4\x00  X123\t\n"})
    report = parse(json.dumps({"serial_number": " WD-WCC4 X123 ", "smart_status": {"passed": True}}))
    assert tags["serial_no"] == report.serial_no == "WD-WCC4 X123"
