"""`pmaintd snmp probe` against snmpsim (real recordings) and snmpd, through the real click entry point."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from pmaintd.cli import cli

pytestmark = pytest.mark.service


def _config(tmp_path, text: str):
    p = tmp_path / "pmaintd.toml"
    p.write_text(text)
    return str(p)


def test_probe_configured_target_json(snmpsim, tmp_path):
    cfg = _config(tmp_path, f"""
[snmp]
timeout = "10s"
[[snmp.targets]]
name = "mx960"
address = "{snmpsim.address}"
community = "juniper-mx960"
""")
    r = CliRunner().invoke(cli, ["--config", cfg, "--state-dir", str(tmp_path), "snmp", "probe", "mx960", "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)
    assert report["device"]["sysName"] == "DUMSYS-17"
    assert report["device"]["sysObjectID"] == "1.3.6.1.4.1.2636.1.1.1.2.21"
    assert report["profile"] == "juniper"
    assert report["reason"] == "sysObjectID 1.3.6.1.4.1.2636.1.1.1.2.21 matches '1.3.6.1.4.1.2636.*' in juniper.yaml"
    assert len(report["interfaces"]) == 74
    assert {s["mib"] for s in report["sensors"]} == {"JUNIPER-MIB", "JUNIPER-DOM-MIB"}
    # jnxOperatingState is shown as the sensor's status (2 = running for the PEMs and FPCs here)
    assert {s["status"] for s in report["sensors"] if s["mib"] == "JUNIPER-MIB"} <= {1, 2, 3, 4, 5, 6, 7}
    assert any(s["status"] == 2 for s in report["sensors"] if s["mib"] == "JUNIPER-MIB")
    assert report["measurements"]["interface"] == 74
    assert len(report["points"]) == sum(report["measurements"].values())


def test_probe_address_with_community_and_profile(snmpsim, tmp_path):
    r = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "snmp", "probe", snmpsim.address, "--community",
                                 "arista-dcs-7150s", "--timeout", "10", "--profile", "generic"])
    assert r.exit_code == 0, r.output
    assert "DUMSYS-87" in r.output
    text = " ".join(r.output.split())  # rich wraps long lines at the terminal width
    assert "profile generic (profile 'generic' chosen for this target (config `profile` or --profile))" in text
    assert r.output.count("celsius") == 17  # the recording's 17 temperature sensors, one table row each


def test_probe_failures_exit_nonzero(snmpd, tmp_path):
    r = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "snmp", "probe", snmpd.address, "--community",
                                 "wrong", "--timeout", "0.2", "--retries", "0"])
    assert r.exit_code == 1
    assert "no response within 0.2s x 1 try (wrong community or unreachable)" in " ".join(r.output.split())
    r = CliRunner().invoke(cli, ["--state-dir", str(tmp_path), "snmp", "probe", snmpd.address, "--profile", "nope"])
    assert r.exit_code == 2
    assert "unknown SNMP profile 'nope'" in r.output
