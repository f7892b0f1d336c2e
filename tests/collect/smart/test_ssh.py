"""SMART, diskio and host collection over SSH against a real OpenSSH server on loopback.

Everything is real (sshd, paramiko, the SSH transport, quoting, the collectors and parsers) except smartctl
itself: this machine has no SMART-capable disk, so the remote smartctl is a stand-in that replays real
recorded outputs (tests/collect/smart/standin.py) and logs the argv it received.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pmaintd import collect
from pmaintd.collect import CollectError, Target
from pmaintd.collect.diskio import DiskioCollector
from pmaintd.collect.host import HostCollector
from pmaintd.collect.hosts import close_transports
from pmaintd.collect.smart import SmartCollector
from pmaintd.collect.smart_parse import parse
from pmaintd.collect.ssh import SshTransport
from pmaintd.collect.transport import LocalTransport, RunResult, Transport
from pmaintd.config import Config, DiskioConfig, validate
from pmaintd.telemetry import Point
from tests.collect.smart.standin import StandIn
from tests.services import Sshd

REC = Path(__file__).parent / "testdata" / "smartctl"
ATA = REC / "pysmart__singletests__sat_hdd_0_issue70__-d_sat_--all__dev_sg2.txt"
NVME_JSON = REC / "scrutiny__smart-nvme-failed.json"
SAS = REC / "pysmart__singletests__sas_hdd_0_issue_51__-d_scsi_--all__dev_sdc.txt"
MEGARAID = REC / "pysmart__singletests__megaraid_ph_sata_hdd_0__-d_megaraid,16_--all__dev_bus_0.txt"
OLD_FAILING = REC / "gsmartcontrol__smartmon-site__IC35L120AVV207-1.txt"
PROC_TREES = Path(__file__).parent.parent / "testdata"

SCAN = """/dev/sda -d sat # /dev/sda [SAT], ATA device
/dev/nvme0 -d nvme # /dev/nvme0, NVMe device
/dev/sdc -d scsi # /dev/sdc, SCSI device
/dev/sdx -d scsi # /dev/sdx, SCSI device open failed: No such device
"""


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[StandIn]:
    close_transports()  # every test starts without an open connection
    d = tmp_path / "remote"
    d.mkdir()
    yield StandIn(d)
    close_transports()


def config(sshd: Sshd, standin: StandIn, known_hosts: Path | None = None, **smart: Any) -> Config:
    """One SSH host (db1), this machine excluded (its local entry collects nothing)."""
    return validate(
        {
            "collect": {"smart": {"smartctl": str(standin.path), **smart}},
            "hosts": [
                {"name": "here", "transport": "local", "collect": []},
                {
                    "name": "db1",
                    "address": sshd.address,
                    "user": sshd.user,
                    "key_file": str(sshd.client_key),
                    "known_hosts": str(known_hosts or sshd.known_hosts),
                    "connect_timeout": "5s",
                },
            ],
        }
    )


def smart_of(cfg: Config) -> tuple[SmartCollector, Target]:
    (c,) = collect.build(cfg, only=["smart"])
    assert isinstance(c, SmartCollector)
    (t,) = c.targets()
    return c, t


def logins(sshd: Sshd) -> int:
    return (sshd.workdir / "sshd.log").read_text(errors="replace").count("Accepted publickey")


def by_device(points: list[Point]) -> dict[str, Point]:
    return {p.tags["device"]: p for p in points if p.measurement == "smart_device"}


def test_smart_over_ssh_discovers_and_parses_every_disk_on_one_connection(sshd: Sshd, standin: StandIn) -> None:
    standin.serve(
        SCAN,
        {
            "/dev/sda|sat": {"file": ATA},
            "/dev/nvme0|nvme": {"file": NVME_JSON},
            "/dev/sdc|scsi": {"file": SAS},
            "/dev/bus/0|megaraid,16": {"file": MEGARAID},
        },
    )
    cfg = config(sshd, standin, devices=[{"name": "/dev/bus/0", "type": "megaraid,16"}], concurrency=2)
    c, t = smart_of(cfg)
    before = logins(sshd)
    points = c.collect(t)
    assert logins(sshd) == before + 1  # scan, NVMe listing and four disks: one SSH connection

    dev = by_device(points)
    assert sorted(dev) == ["bus/0:megaraid,16", "nvme0", "sda", "sdc"]  # sdx failed to open: not queried
    assert {p.tags["host"] for p in points} == {"db1"}
    assert dev["sda"].tags["serial_no"] == "WS10SM2A" and dev["sda"].tags["wwn"] == "5000c500f129bee9"
    assert dev["sda"].fields["reallocated_sectors_count"] == 0 and dev["sda"].fields["temp_c"] == 31
    assert dev["nvme0"].tags["serial_no"] == "S466NX0M776250H"
    assert (dev["nvme0"].fields["media_errors"], dev["nvme0"].fields["num_err_log_entries"]) == (7, 62)
    assert dev["sdc"].fields["grown_defects"] == 0 and dev["sdc"].tags["serial_no"] == "8DG3J2ZD"
    assert dev["bus/0:megaraid,16"].tags["serial_no"] == "PKXXXXXXXXXXGB"
    attrs = [p for p in points if p.measurement == "smart_attribute" and p.tags["device"] == "sda"]
    assert len(attrs) == len(parse(ATA.read_bytes()).attributes) == 22
    realloc = next(p for p in attrs if p.tags["id"] == "5")
    assert realloc.tags["name"] == "Reallocated_Sector_Ct" and realloc.tags["fail"] == "false"
    assert realloc.fields == {"raw_value": 0, "value": 100, "worst": 100, "threshold": 10, "exit_status": 0}

    queried = [c["argv"] for c in standin.calls() if "--scan-open" not in c["argv"]]  # type: ignore[operator]
    assert sorted(a[-3:] for a in queried) == [  # type: ignore[index]
        ["-d", "megaraid,16", "/dev/bus/0"],
        ["-d", "nvme", "/dev/nvme0"],
        ["-d", "sat", "/dev/sda"],
        ["-d", "scsi", "/dev/sdc"],
    ]
    assert all(a[:4] == ["--json=o", "-a", "-n", "standby"] for a in queried)  # type: ignore[index]


def test_old_smartctl_without_json_falls_back_to_text(sshd: Sshd, standin: StandIn) -> None:
    """smartctl 5.x rejects --json; that host is then queried in text (a failing drive recorded by 5.x)."""
    standin.serve(
        "/dev/hda -d ata # /dev/hda, ATA device\n", {"/dev/hda": {"file": OLD_FAILING, "old": True, "exit": 8}}
    )
    c, t = smart_of(config(sshd, standin, nocheck="never"))
    (d,) = by_device(c.collect(t)).values()
    assert d.fields["health_ok"] is False and d.fields["exit_status"] == 8
    assert (d.fields["reallocated_sectors_count"], d.fields["pending_sector_count"]) == (277, 49)
    argvs = [c["argv"] for c in standin.calls()][1:]
    assert argvs == [
        ["--json=o", "-a", "-n", "never", "-d", "ata", "/dev/hda"],
        ["-a", "-n", "never", "-d", "ata", "/dev/hda"],
    ]
    c.collect(t)  # the next poll goes straight to text
    assert standin.calls()[-1]["argv"] == ["-a", "-n", "never", "-d", "ata", "/dev/hda"]


def test_standby_disk_is_not_woken_and_a_failing_disk_does_not_hide_others(
    sshd: Sshd, standin: StandIn, tmp_path: Path
) -> None:
    asleep = tmp_path / "asleep.txt"
    asleep.write_text("smartctl 7.3 2022-02-28 r5338\n\nDevice is in STANDBY mode, exit(2)\n")
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Segmentation fault\n")
    standin.serve(
        "/dev/sda -d sat # a\n/dev/sdb -d sat # b\n/dev/sdc -d sat # c\n",
        {"/dev/sda": {"file": asleep, "exit": 2}, "/dev/sdb": {"file": garbage, "exit": 4}, "/dev/sdc": {"file": ATA}},
    )
    c, t = smart_of(config(sshd, standin))
    assert sorted(by_device(c.collect(t))) == ["sdc"]
    standin.serve("/dev/sdb -d sat # b\n", {"/dev/sdb": {"file": garbage, "exit": 4}})
    with pytest.raises(CollectError, match=r"no disk could be read .*/dev/sdb: exit status 4"):
        c.collect(t)


def test_hostile_device_names_and_model_strings_stay_data(sshd: Sshd, standin: StandIn, tmp_path: Path) -> None:
    """Device names come from the remote scan and model strings from the disk; neither may reach a shell.
    The model line of a real recording is replaced with shell syntax for this test."""
    marks = [tmp_path / f"pwned{i}" for i in range(4)]
    hostile_model = f"X $(touch {marks[0]}); touch {marks[1]} `touch {marks[2]}` | rm -rf /nonexistent"
    rec = tmp_path / "hostile.txt"
    rec.write_text(ATA.read_text().replace("ST2000NM000A-2J2100", hostile_model))
    # A scan listing separates fields by whitespace, so an attacker would use ${IFS} instead of spaces.
    cmd = f"touch${{IFS}}{marks[3]}"
    names = [f"/dev/sd$({cmd})", f"/dev/sdb;{cmd}", f"/dev/sd`{cmd}`", "/dev/sd'\"x|&"]
    scan = "".join(f"{n} -d sat # hostile\n" for n in names) + "-o -d sat # must not become an option\n"
    standin.serve(scan, {n: {"file": rec} for n in names})
    c, t = smart_of(config(sshd, standin))
    points = c.collect(t)
    assert not any(m.exists() for m in marks)
    queried = sorted(c["argv"][-1] for c in standin.calls() if "--scan-open" not in c["argv"])  # type: ignore[index,operator]
    assert queried == sorted(names)  # each name arrived as one literal argument; "-o" was never queried
    assert {p.tags["model"] for p in points} == {hostile_model}
    assert {p.tags["device"] for p in by_device(points).values()} == {n.removeprefix("/dev/") for n in names}


def test_unknown_host_key_is_refused_before_anything_runs(sshd: Sshd, standin: StandIn, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    standin.serve(SCAN, {"/dev/sda": {"file": ATA}})
    c, t = smart_of(config(sshd, standin, known_hosts=empty))
    with pytest.raises(CollectError, match=r"db1: host key for 127\.0\.0\.1:\d+ is not in .*refusing to connect"):
        c.collect(t)
    assert standin.calls() == [] and empty.read_text() == ""


def test_changed_host_key_is_refused_before_anything_runs(sshd: Sshd, standin: StandIn, tmp_path: Path) -> None:
    wrong = sshd.foreign_known_hosts(tmp_path / "known_hosts")
    standin.serve(SCAN, {"/dev/sda": {"file": ATA}})
    c, t = smart_of(config(sshd, standin, known_hosts=wrong))
    with pytest.raises(CollectError, match="CHANGED"):
        c.collect(t)
    assert standin.calls() == []


def test_sudo_runs_smartctl_through_sudo_n(sshd: Sshd, standin: StandIn) -> None:
    standin.serve("/dev/sda -d sat # a\n", {"/dev/sda": {"file": ATA}})
    c, t = smart_of(config(sshd, standin, sudo=True))
    assert sorted(by_device(c.collect(t))) == ["sda"]
    assert [call["sudo_user"] for call in standin.calls()] == ["root", "root"]  # scan and query, both via sudo


class Rooted:
    """Serves a recorded /proc + /sys tree through another transport by prefixing every path with the tree's
    root (first root holding a path wins, like tests/collect/filetree.py). Through LocalTransport that is a
    plain file read; through SshTransport it is `cat`/`find` on the remote side. Which root holds a path is
    decided from the fixture tree on this machine, so each read is one remote command (a remote command costs
    the login shell's startup). Commands are not replayed."""

    def __init__(self, inner: Transport, roots: list[Path], host: str) -> None:
        self.inner, self.roots, self.host = inner, roots, host

    def read_text(self, path: str) -> str:
        root = next((r for r in self.roots if (r / path.lstrip("/")).exists()), None)
        if root is None:
            raise FileNotFoundError(2, "No such file or directory (in the fixture tree)", path)
        return self.inner.read_text(f"{root}{path}")

    def list_dir(self, path: str) -> list[str]:
        roots = [r for r in self.roots if (r / path.lstrip("/")).is_dir()]
        if not roots:
            raise FileNotFoundError(2, "No such file or directory (in the fixture tree)", path)
        return sorted({n for r in roots for n in self.inner.list_dir(f"{r}{path}")})

    def run(self, argv: list[str], timeout: float, privileged: bool = False) -> RunResult:
        raise FileNotFoundError(2, "a recorded file tree cannot run commands", argv[0])

    def close(self) -> None:
        self.inner.close()


def normalized(points: list[Point]) -> list[dict[str, object]]:
    out = [{"measurement": p.measurement, "tags": dict(p.tags), "fields": dict(p.fields)} for p in points]
    return sorted(out, key=lambda d: (d["measurement"], sorted(d["tags"].items())))  # type: ignore[arg-type]


def diskio_and_host(inner: Transport) -> list[dict[str, object]]:
    roots = [PROC_TREES / "server"]
    t = Target("server", 60.0, 30.0, Rooted(inner, roots, "server"))
    points = DiskioCollector(DiskioConfig(), [t]).collect(t)
    points += HostCollector([t], sleep=lambda _s: roots.insert(0, PROC_TREES / "server-later")).collect(t)
    return normalized(points)


def test_diskio_and_host_over_ssh_equal_local_for_the_same_files(sshd: Sshd, standin: StandIn) -> None:
    cfg = config(sshd, standin)
    ssh_tr = collect.build(cfg, only=["diskio"])[0].targets()[0].transport
    assert ssh_tr is not None and type(ssh_tr).__name__ == "SshTransport"
    before = logins(sshd)
    over_ssh = diskio_and_host(ssh_tr)
    assert logins(sshd) == before + 1
    local = diskio_and_host(LocalTransport("server"))
    assert over_ssh == local
    measurements = {p["measurement"] for p in over_ssh}
    assert {"diskio", "cpu", "mem", "system"} <= measurements


@pytest.mark.parametrize("use_sftp", [True, False], ids=["sftp", "cat"])
def test_file_reads_with_hostile_names_over_sftp_and_cat(
    sshd: Sshd, standin: StandIn, tmp_path: Path, use_sftp: bool
) -> None:
    """Both read paths (SFTP, and `cat`/`find` for hosts without an sftp subsystem) treat names as data."""
    tr = collect.build(config(sshd, standin), only=["diskio"])[0].targets()[0].transport
    assert isinstance(tr, SshTransport)
    tr._no_sftp = not use_sftp
    # File names cannot hold "/": the injected commands touch a relative name, i.e. in the remote cwd ($HOME).
    mark = Path.home() / f"pmaintd-pwned-{tmp_path.name}"
    d = tmp_path / "tree"
    d.mkdir()
    names = [f"a $(touch {mark.name})", f"b;touch {mark.name}", f"c'\"`touch {mark.name}`", "d\nnewline", "-e"]
    for i, n in enumerate(names):
        (d / n).write_text(f"value {i}\n")
    assert tr.list_dir(str(d)) == sorted(names)
    assert [tr.read_text(str(d / n)) for n in names] == [f"value {i}\n" for i in range(len(names))]
    with pytest.raises(FileNotFoundError):
        tr.read_text(str(d / "missing"))
    with pytest.raises(FileNotFoundError):
        tr.list_dir(str(d / "missing"))
    assert not mark.exists()


def test_concurrency_limit_and_per_disk_timeout(sshd: Sshd, standin: StandIn) -> None:
    """Five disks, two at a time: never more than two smartctl runs overlap; the disk that hangs past the
    per-disk timeout is dropped and the others are still collected."""
    scan = "".join(f"/dev/sd{c} -d sat # {c}\n" for c in "eabcd")  # the hanging disk first
    # Each run lasts 3 s, long beside the ~0.5 s a remote login shell takes to start one on a busy machine,
    # so two runs started together do overlap in the stand-in's own log.
    devices: dict[str, dict[str, object]] = {f"/dev/sd{c}": {"file": ATA, "sleep": 3} for c in "abcd"}
    devices["/dev/sde"] = {"file": ATA, "sleep": 15}
    standin.serve(scan, devices)
    c, t = smart_of(config(sshd, standin, concurrency=2, timeout="7s"))
    assert sorted(by_device(c.collect(t))) == ["sda", "sdb", "sdc", "sdd"]
    runs = [(x["start"], x["end"]) for x in standin.calls() if "--scan-open" not in x["argv"]]  # type: ignore[operator]
    assert len(runs) == 4  # sde's stand-in was cut off before it could log
    overlap = max(sum(1 for s, e in runs if s <= t0 < e) for t0, _ in runs)
    assert overlap == 2


def test_local_machine_without_hosts(standin: StandIn) -> None:
    """No [[hosts]]: the smart collector polls this machine through the local transport."""
    standin.serve("/dev/sda -d sat # a\n", {"/dev/sda": {"file": ATA}})
    (c,) = collect.build(validate({"collect": {"smart": {"smartctl": str(standin.path)}}}), only=["smart"])
    (t,) = c.targets()
    assert isinstance(t.transport, LocalTransport)
    (d,) = by_device(c.collect(t)).values()
    assert d.tags["host"] == t.name and d.tags["serial_no"] == "WS10SM2A"


def test_scan_where_every_disk_fails_to_open_is_an_error(sshd: Sshd, standin: StandIn) -> None:
    """Not root on the host: smartctl lists every disk as 'open failed'; that is reported, not zero disks."""
    standin.serve(
        "/dev/sda -d sat # /dev/sda [SAT], ATA device open failed: Permission denied\n"
        "/dev/sdb -d sat # /dev/sdb [SAT], ATA device open failed: Permission denied\n",
        {},
    )
    c, t = smart_of(config(sshd, standin))
    with pytest.raises(CollectError, match=r"no disk could be opened .*Permission denied.*sudo = true"):
        c.collect(t)


def test_a_failing_disk_is_logged_when_it_starts_failing_and_when_it_recovers(
    sshd: Sshd, standin: StandIn, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Segmentation fault\n")
    scan = "/dev/sda -d sat # a\n/dev/sdb -d sat # b\n"
    standin.serve(scan, {"/dev/sda": {"file": ATA}, "/dev/sdb": {"file": garbage, "exit": 4}})
    c, t = smart_of(config(sshd, standin))
    with caplog.at_level("INFO", logger="pmaintd.collect.smart"):
        for _ in range(3):
            c.collect(t)
        standin.serve(scan, {"/dev/sda": {"file": ATA}, "/dev/sdb": {"file": ATA}})
        c.collect(t)
        c.collect(t)
    about_sdb = [(r.levelname, r.getMessage()) for r in caplog.records if "sdb" in r.getMessage()]
    assert [lvl for lvl, _ in about_sdb] == ["WARNING", "INFO"]
    assert "exit status 4" in about_sdb[0][1] and "readable again" in about_sdb[1][1]


@pytest.mark.parametrize("use_sftp", [True, False], ids=["sftp", "cat"])
def test_a_read_that_hangs_times_out(sshd: Sshd, standin: StandIn, tmp_path: Path, use_sftp: bool) -> None:
    """A file whose read blocks (a FIFO without writer, like a hung NFS path) ends in TimeoutError, and the
    transport still works afterwards."""
    tr = collect.build(config(sshd, standin), only=["diskio"])[0].targets()[0].transport
    assert isinstance(tr, SshTransport)
    tr._no_sftp, tr.file_timeout = not use_sftp, 1.0
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    ok = tmp_path / "ok"
    ok.write_text("fine\n")
    try:
        with pytest.raises(TimeoutError):
            tr.read_text(str(fifo))
        assert tr.read_text(str(ok)) == "fine\n"
    finally:
        with contextlib.suppress(OSError):  # release a remote reader still blocked (ENXIO: none is left)
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_real_smartctl_error_is_reported_with_its_message() -> None:
    """The real smartctl binary (smartmontools) on a device that does not exist: its --json error output
    is parsed and the poll fails with smartctl's own words."""
    cfg = validate({"collect": {"smart": {"scan": False, "devices": [{"name": "/dev/pmaintd-none", "type": "sat"}]}}})
    (c,) = collect.build(cfg, only=["smart"])
    (t,) = c.targets()
    expected = r"/dev/pmaintd-none: smartctl reported no disk data \(exit status 2\): .*open device.*failed"
    with pytest.raises(CollectError, match=expected):
        c.collect(t)
