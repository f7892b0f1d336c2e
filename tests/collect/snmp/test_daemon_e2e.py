"""`pmaintd run --once` with an [[snmp.targets]] entry: the daemon polls the agent through `acollect` on its
event loop and the points land in the store, the agent's hostile sysName intact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pmaintd.config import StoreConfig
from pmaintd.store import open_store

pytestmark = pytest.mark.service

PMAINTD = Path(sys.executable).parent / "pmaintd"


def test_run_once_stores_snmp_points(snmpd, tmp_path):
    cfg = tmp_path / "pmaintd.toml"
    cfg.write_text(f"""
[collect.host]
enabled = false
[collect.diskio]
enabled = false
[[snmp.targets]]
name = "agent-1"
address = "{snmpd.address}"
community = "public"
""")
    state = tmp_path / "state"
    r = subprocess.run([str(PMAINTD), "--config", str(cfg), "--state-dir", str(state), "run", "--once"],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    store = open_store(StoreConfig(), state)
    try:
        ifs = store.query("interface", tags={"source": "agent-1"})
        system = store.query("snmp_system", tags={"source": "agent-1"})
    finally:
        store.close()
    assert ifs.height > 0
    assert set(ifs["sysName"].to_list()) == {snmpd.sys_name}
    assert "lo" in ifs["ifDescr"].to_list()
    assert ifs.filter(ifs["ifDescr"] == "lo")["ifType"].to_list() == [24]
    assert system["profile"].to_list() == ["net-snmp"]
