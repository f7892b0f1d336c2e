"""[collect.smart] and [[hosts]]: what is accepted, and the operator-facing error for what is not."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmaintd import collect
from pmaintd.collect.hosts import close_transports
from pmaintd.config import ConfigError, validate


def ssh_host(tmp_path: Path, **over: object) -> dict[str, object]:
    key, known = tmp_path / "id", tmp_path / "known_hosts"
    key.write_text("not read at config time\n")
    known.write_text("")
    return {"name": "db1", "address": "db1.example.com:2222", "user": "pmaintd", "key_file": str(key),
            "known_hosts": str(known), **over}  # fmt: skip


@pytest.mark.parametrize("dtype", ["sat", "scsi", "nvme", "megaraid,0", "sat+megaraid,12", "usbjmicron", "usbprolific",
                                   "usbsunplus", "sntasmedia", "sat,12", "cciss,3", "areca,2/1"])  # fmt: skip
def test_device_types_accepted(dtype: str) -> None:
    cfg = validate({"collect": {"smart": {"devices": [{"name": "/dev/sda", "type": dtype}]}}})
    assert cfg.collect.smart.devices[0].type == dtype


@pytest.mark.parametrize(
    ("smart", "message"),
    [
        (
            {"devices": [{"name": "/dev/sda", "type": "sat; reboot"}]},
            r"collect\.smart\.devices\[0\]\.type: 'sat; reboot'",
        ),
        ({"devices": [{"name": "/dev/sda", "type": "floppy"}]}, "families: auto, ata"),
        ({"devices": [{"name": "-a"}]}, r"devices\[0\]\.name: '-a' is not allowed"),
        ({"nocheck": "sometimes"}, "collect.smart.nocheck: 'sometimes'"),
        ({"concurrency": 0}, "collect.smart.concurrency"),
        ({"scan": False}, "collect.smart.scan: False is not allowed: with scan = false, list the disks"),
        (
            {"devices": [{"name": "/dev/sda"}, {"name": "/dev/sda"}]},
            r"devices\[1\]: '/dev/sda' is not allowed: listed twice",
        ),
        ({"timeout": "soon"}, "collect.smart.timeout: 'soon'"),
        ({"smartclt": "x"}, "collect.smart.smartclt: unknown key; allowed keys here: concurrency, devices"),
    ],
)
def test_smart_config_errors_name_the_key(smart: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        validate({"collect": {"smart": smart}})


def test_hosts_validation(tmp_path: Path) -> None:
    ok = validate({"hosts": [ssh_host(tmp_path, collect=["smart"], sudo=True)]})
    assert ok.hosts[0].collect == ["smart"] and ok.hosts[0].sudo
    problems = {
        "collect": (ssh_host(tmp_path, collect=["smart", "snmp"]), r"hosts\[0\]\.collect: 'snmp' is not allowed"),
        "user": ({k: v for k, v in ssh_host(tmp_path).items() if k != "user"}, r"hosts\[0\]\.user: None .*required"),
        "address": (ssh_host(tmp_path, address="db1:99999"), r"hosts\[0\]\.address: 'db1:99999'"),
        "known_hosts": (ssh_host(tmp_path, known_hosts=str(tmp_path / "nope")), r"hosts\[0\]\.known_hosts"),
        "local+address": ({"name": "me", "transport": "local", "address": "x:22"}, "only allowed when transport"),
    }
    for entry, message in problems.values():
        with pytest.raises(ConfigError, match=message):
            validate({"hosts": [entry]})
    with pytest.raises(ConfigError, match="host names must be unique"):
        validate({"hosts": [ssh_host(tmp_path), ssh_host(tmp_path)]})


def test_each_collector_gets_this_machine_plus_the_hosts_that_list_it(tmp_path: Path) -> None:
    close_transports()
    cfg = validate(
        {
            "hosts": [
                ssh_host(tmp_path, collect=["smart", "diskio"]),
                ssh_host(tmp_path, name="db2", collect=["host"]),
            ]
        }
    )
    targets = {c.name: c.targets() for c in collect.build(cfg, only=["smart", "diskio", "host"])}
    names = {k: [t.name for t in v] for k, v in targets.items()}
    local = targets["host"][0].name
    assert names == {"smart": [local, "db1"], "diskio": [local, "db1"], "host": [local, "db2"]}
    assert targets["smart"][1].transport is targets["diskio"][1].transport  # one connection per host
    assert targets["smart"][1].timeout == cfg.collect.smart.interval  # a host's disks may take the interval
    replaced = validate({"hosts": [{"name": "me", "transport": "local", "collect": ["host"]}]})
    names2 = {c.name: [t.name for t in c.targets()] for c in collect.build(replaced, only=["smart", "host"])}
    assert names2 == {"smart": [], "host": ["me"]}
    close_transports()
