"""The engine end to end against a real OpenSSH server on loopback: modes, quoting, host-key refusal,
failures, undo, idempotency and the audit trail (audit.jsonl and pmaintd_action points in the real store)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from pmaintd.act.engine import ActionEngine, ActionError, IllegalTransition
from tests.act.conftest import forecast, host_toml, policy_toml
from tests.services import Sshd

pytestmark = pytest.mark.service

HOSTILE = ["x; touch {m}", "$(touch {m})", "`touch {m}`", "a' ; touch {m}; '", "-rf; touch {m}"]


def _config(sshd: Sshd, tmp_path: Path, mode: str = "auto", extra: str = "", known_hosts: Path | None = None,
            command: str | None = None, verify: str | None = None) -> str:  # fmt: skip
    out = tmp_path / "remote"
    out.mkdir(exist_ok=True)
    command = command or f"printf '%s\\\\n' {{entity}} >> {out}/ran"
    verify = verify or f"grep -qxF -- {{entity}} {out}/ran"
    return host_toml(sshd, known_hosts=known_hosts) + f"""
[actions.mark]
run_on = "h1"
command = "{command}"
verify = "{verify}"
undo = "printf 'undo %s\\\\n' {{entity}} >> {out}/ran"
timeout = "10s"

{policy_toml("p", "mark", mode)}{extra}
[limits]
max_concurrent = 1
max_per_hour = 100
max_fleet_fraction = 1.0
cooldown = "0s"
"""


def _ran(tmp_path: Path) -> list[str]:
    f = tmp_path / "remote" / "ran"
    return f.read_text().splitlines() if f.exists() else []


def _states(engine: ActionEngine, action_id: int) -> list[str]:
    return [r["state"] for r in engine.history(action_id)]


def test_auto_mode_runs_over_ssh_and_verifies(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path))
    [d] = engine.run_once([forecast("web1", 0.9)])
    assert (d.outcome, d.state) == ("acted", "succeeded"), d.reason
    assert _ran(tmp_path) == ["web1"]
    rec = engine.get(d.action_id)
    assert rec.command.startswith("printf '%s\\n' web1 >> ") and rec.returncode == 0
    assert _states(engine, d.action_id) == ["proposed", "auto", "running", "succeeded"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_entity_is_inert_over_ssh(sshd: Sshd, tmp_path: Path, make_engine: Callable, name: str) -> None:
    marker = tmp_path / "pwned"
    entity = name.format(m=marker)
    engine = make_engine(_config(sshd, tmp_path))
    [d] = engine.run_once([forecast(entity, 0.9)])
    assert d.state == "succeeded", d.reason
    assert not marker.exists()
    assert _ran(tmp_path) == [entity]  # reached the remote command as one literal argument


def test_approve_mode_waits_then_runs_on_approval(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path, mode="approve"))
    [d] = engine.run_once([forecast("web1", 0.9)])
    assert (d.outcome, d.state) == ("proposed", "proposed")
    assert "waiting for `pmaintd actions approve`" in d.reason
    assert _ran(tmp_path) == []
    rec = engine.approve(d.action_id, by="alice")
    assert rec.state == "succeeded" and _ran(tmp_path) == ["web1"]
    assert _states(engine, d.action_id) == ["proposed", "approved", "running", "succeeded"]
    assert engine.history(d.action_id)[1]["message"] == "approved by alice"
    with pytest.raises(IllegalTransition, match="only a proposed action can be approved"):
        engine.approve(d.action_id)
    assert _ran(tmp_path) == ["web1"]


def test_reject_keeps_it_from_running(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path, mode="approve"))
    [d] = engine.run_once([forecast("web1", 0.9)])
    assert engine.reject(d.action_id, by="bob").state == "rejected"
    with pytest.raises(IllegalTransition):
        engine.approve(d.action_id)
    [again] = engine.run_once([forecast("web1", 0.95)])
    assert again.outcome == "duplicate" and _ran(tmp_path) == []


def test_observe_mode_records_only(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path, mode="observe"))
    [d] = engine.run_once([forecast("web1", 0.9)])
    assert (d.outcome, d.state) == ("observed", "observed") and "recorded only" in d.reason
    assert _ran(tmp_path) == []
    points = engine.auditor.store.query("pmaintd_action")
    assert points["state"].to_list() == ["proposed", "observed"]


def test_low_confidence_escalates_auto_to_approval(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path, extra="min_confidence = 0.8\n"))
    low, high = engine.run_once([forecast("web1", 0.9, confidence=0.6), forecast("web2", 0.9, confidence=0.95)])
    assert (low.outcome, low.state) == ("proposed", "proposed")
    assert "low confidence 0.6 < min_confidence 0.8: escalated to approval" in low.reason
    assert high.state == "succeeded" and _ran(tmp_path) == ["web2"]


def test_below_threshold_and_other_kinds_are_not_acted_on(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path))
    low, other = engine.run_once([forecast("web1", 0.2), forecast("sda", 0.99, kind="disk")])
    assert low.outcome == "below_threshold" and "0.2 < min_probability 0.5" in low.reason
    assert other.outcome == "no_policy"
    assert _ran(tmp_path) == [] and engine.list() == []


@pytest.mark.parametrize("bad", ["empty", "wrong"])
def test_host_key_refusal_fails_and_runs_nothing(sshd: Sshd, tmp_path: Path, make_engine: Callable, bad: str) -> None:
    known = tmp_path / "known_hosts"
    if bad == "empty":
        known.write_text("")
    else:
        sshd.foreign_known_hosts(known)
    before = known.read_text()
    engine = make_engine(_config(sshd, tmp_path, known_hosts=known))
    [d] = engine.run_once([forecast("web1", 0.9)])
    rec = engine.get(d.action_id)
    assert rec.state == "failed"
    assert rec.message.startswith("nothing was run: host key refused")
    assert ("CHANGED" if bad == "wrong" else "is not in") in rec.message
    assert _ran(tmp_path) == [] and known.read_text() == before


def test_command_failure_skips_verify(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path, command="echo boom >&2; exit 7"))
    [d] = engine.run_once([forecast("web1", 0.9)])
    rec = engine.get(d.action_id)
    assert (rec.state, rec.returncode, rec.stderr) == ("failed", 7, "boom\n")
    assert rec.message == "command failed: exit status 7"


def test_verify_failure_fails(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path, verify="echo not drained >&2; exit 1"))
    [d] = engine.run_once([forecast("web1", 0.9)])
    rec = engine.get(d.action_id)
    assert rec.state == "failed" and rec.message == "verify failed: exit status 1 not drained"


def test_timeout_fails_and_ends_the_remote_command(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    pidfile = tmp_path / "remote" / "pid"
    command = f"echo $$ > {pidfile}; sleep 20 & echo $! >> {pidfile}; wait"
    text = _config(sshd, tmp_path, command=command).replace('timeout = "10s"', 'timeout = "1s"')
    engine = make_engine(text)
    t0 = time.monotonic()
    [d] = engine.run_once([forecast("web1", 0.9)])
    assert time.monotonic() - t0 < 12
    rec = engine.get(d.action_id)
    assert rec.state == "failed" and rec.message == "command failed: timed out after 1s (ended on h1 by timeout(1))"
    time.sleep(0.5)
    for pid in map(int, pidfile.read_text().split()):  # the shell and its background child are both gone
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_undo(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path, mode="approve"))
    [d] = engine.run_once([forecast("we b1", 0.9)])
    with pytest.raises(IllegalTransition, match="only a finished action can be undone"):
        engine.undo(d.action_id)
    engine.approve(d.action_id)
    assert engine.undo(d.action_id).state == "undone"
    assert _ran(tmp_path) == ["we b1", "undo we b1"]
    with pytest.raises(IllegalTransition):
        engine.undo(d.action_id)


def test_undo_without_undo_command(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    text = "\n".join(line for line in _config(sshd, tmp_path).splitlines() if not line.startswith("undo ="))
    engine = make_engine(text)
    [d] = engine.run_once([forecast("web1", 0.9)])
    with pytest.raises(ActionError, match="has no undo command"):
        engine.undo(d.action_id)
    assert engine.get(d.action_id).state == "succeeded"


def test_same_forecast_twice_acts_once(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path))
    first = engine.run_once([forecast("web1", 0.9)])
    second = engine.run_once([forecast("web1", 0.93)])
    assert first[0].state == "succeeded"
    assert second[0].outcome == "duplicate" and f"already action {first[0].action_id}" in second[0].reason
    assert _ran(tmp_path) == ["web1"] and len(engine.list()) == 1


def test_dry_run_records_and_runs_nothing(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path))
    [d] = engine.run_once([forecast("web1", 0.9)], dry_run=True)
    assert d.outcome == "would_act" and d.action_id is None
    assert engine.list() == [] and _ran(tmp_path) == []
    assert not (tmp_path / "state" / "audit.jsonl").exists()
    [real] = engine.run_once([forecast("web1", 0.9)])
    assert real.outcome == "acted" and _ran(tmp_path) == ["web1"]


def test_every_transition_is_audited(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path))
    [d] = engine.run_once([forecast("web1", 0.9)])
    engine.undo(d.action_id)
    lines = [json.loads(x) for x in (tmp_path / "state" / "audit.jsonl").read_text().splitlines()]
    assert [(r["from"], r["state"]) for r in lines] == [
        ("", "proposed"), ("proposed", "auto"), ("auto", "running"), ("running", "succeeded"), ("succeeded", "undone")
    ]  # fmt: skip
    assert all(r["id"] == d.action_id and r["entity"] == "web1" and r["time"].endswith("Z") for r in lines)
    assert lines[3]["returncode"] == 0
    pts = engine.auditor.store.query("pmaintd_action")
    assert pts["state"].to_list() == ["proposed", "auto", "running", "succeeded", "undone"]
    assert set(pts["entity"].to_list()) == {"web1"} and set(pts["policy"].to_list()) == {"p"}
    assert set(pts["action"].to_list()) == {"mark"} and set(pts["id"].to_list()) == {d.action_id}
