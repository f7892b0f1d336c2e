"""Crash recovery with real processes: `pmaintd actions approve` is killed with SIGKILL mid-action; a new
process marks the action unknown and lets its verify command decide. The command is never run again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.act.conftest import host_toml, policy_toml, write_forecasts
from tests.services import Sshd

pytestmark = pytest.mark.service


def _pmaintd(cfg: Path, state: Path, *args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "pmaintd"), "--config", str(cfg), "--state-dir", str(state), *args]


def _state_of(state: Path, action_id: int) -> str:
    with sqlite3.connect(state / "actions.db") as db:
        return db.execute("SELECT state FROM actions WHERE id = ?", (action_id,)).fetchone()[0]


@pytest.mark.parametrize(("run_on", "applied_first"), [("h1", False), ("h1", True), ("local", True)])
def test_kill_9_mid_action_then_verify_not_rerun(sshd: Sshd, tmp_path: Path, run_on: str, applied_first: bool) -> None:
    out = tmp_path / "remote"
    out.mkdir()
    body = f"touch {out}/applied; sleep 30" if applied_first else f"sleep 30 && touch {out}/applied"
    cfg = tmp_path / "pmaintd.toml"
    cfg.write_text(host_toml(sshd) + f"""
[actions.slow]
run_on = "{run_on}"
command = "echo {{entity}} >> {out}/runs; echo $$ > {out}/pid; {body}"
verify = "test -e {out}/applied"
timeout = "2m"

{policy_toml("p", "slow", "approve")}
[limits]
max_fleet_fraction = 1.0
""")
    state = tmp_path / "state"
    fc = write_forecasts(tmp_path / "f.jsonl", [{"kind": "host", "entity": "web1", "probability": 0.9,
                                                 "horizon_hours": 24}])  # fmt: skip
    ev = subprocess.run(_pmaintd(cfg, state, "actions", "evaluate", "--forecasts", str(fc), "--json"),
                        capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ev.returncode == 0, ev.stderr
    [decision] = json.loads(ev.stdout)
    assert decision["state"] == "proposed"
    action_id = decision["action_id"]

    approver = subprocess.Popen(_pmaintd(cfg, state, "actions", "approve", str(action_id)),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    remote_pid = None
    try:
        deadline = time.monotonic() + 30
        while not (out / "pid").exists() or not (out / "pid").read_text().strip():
            assert approver.poll() is None, approver.communicate()
            assert time.monotonic() < deadline, "the action never started"
            time.sleep(0.05)
        remote_pid = int((out / "pid").read_text())
        assert _state_of(state, action_id) == "running"

        # While its owner lives, another process leaves the action alone.
        live = subprocess.run(_pmaintd(cfg, state, "actions", "recover"), capture_output=True, text=True, timeout=60)
        assert live.stdout.strip() == "nothing to recover" and _state_of(state, action_id) == "running"

        approver.send_signal(signal.SIGKILL)
        approver.wait(10)
        assert _state_of(state, action_id) == "running"  # what a crash leaves behind

        rec = subprocess.run(_pmaintd(cfg, state, "actions", "recover", "--json"),
                             capture_output=True, text=True, timeout=60)  # fmt: skip
        assert rec.returncode == 0, rec.stderr
        [after] = json.loads(rec.stdout)
        if run_on == "local":  # the orphaned local process group was ended by recovery (a zombie at most)
            time.sleep(0.2)
            assert not psutil.pid_exists(remote_pid) or psutil.Process(remote_pid).status() == psutil.STATUS_ZOMBIE
    finally:
        if approver.poll() is None:
            approver.kill()
            approver.wait()
        if remote_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(remote_pid, signal.SIGKILL)  # the action's own shell, by the pid it recorded
    expected = "succeeded" if applied_first else "failed"
    assert after["id"] == action_id and after["state"] == expected
    assert after["message"] == f"verify after crash: exit status {0 if applied_first else 1}"
    assert (out / "runs").read_text() == "web1\n"  # carried out once, never re-run
    audit = [json.loads(x) for x in (state / "audit.jsonl").read_text().splitlines()]
    moves = [(r["from"], r["state"]) for r in audit if r["id"] == action_id]
    assert moves == [("", "proposed"), ("proposed", "approved"), ("approved", "running"), ("running", "unknown"),
                     ("unknown", expected)]  # fmt: skip
    assert "died while running it; verifying, not re-running" in audit[3]["message"]

    again = subprocess.run(_pmaintd(cfg, state, "actions", "evaluate", "--forecasts", str(fc), "--json"),
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert json.loads(again.stdout)[0]["outcome"] == "duplicate"
    assert (out / "runs").read_text() == "web1\n"
