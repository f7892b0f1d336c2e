"""Blast-radius limits against a real sshd: each limit stops an action that would break it, says which limit
and why, creates nothing (so a later evaluation retries), and frees up when the earlier action is done."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pmaintd.act.engine import ActionError
from tests.act.conftest import forecast, host_toml, policy_toml
from tests.services import Sshd

pytestmark = pytest.mark.service


def _config(sshd: Sshd, tmp_path: Path, limits: str, policies: str = "", command: str | None = None) -> str:
    out = tmp_path / "remote"
    out.mkdir(exist_ok=True)
    command = command or f"echo {{entity}} >> {out}/ran"
    policies = policies or policy_toml("p", "mark", "auto")
    return host_toml(sshd) + f"""
[actions.mark]
run_on = "h1"
command = "{command}"
undo = "echo undo {{entity}} >> {out}/ran"
timeout = "30s"

[actions.slow]
run_on = "h1"
command = "touch {out}/slow-started; sleep 3; echo {{entity}} >> {out}/ran"
timeout = "30s"

{policies}
[limits]
{limits}
"""


def _ran(tmp_path: Path) -> list[str]:
    f = tmp_path / "remote" / "ran"
    return f.read_text().split() if f.exists() else []


def _wait_for(path: Path, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_max_concurrent_with_an_action_really_running(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    policies = policy_toml("slow", "slow", "auto", kind="disk") + policy_toml("p", "mark", "auto")
    text = _config(sshd, tmp_path, "max_concurrent = 1\nmax_per_hour = 100\nmax_fleet_fraction = 1.0\ncooldown = 0",
                   policies)  # fmt: skip
    daemon, cli = make_engine(text), make_engine(text)  # two engines: like the daemon and a CLI process
    runner = threading.Thread(target=daemon.run_once, args=([forecast("sda", kind="disk")],))
    runner.start()
    try:
        _wait_for(tmp_path / "remote" / "slow-started")
        [d] = cli.run_once([forecast("web1")])
        assert d.outcome == "deferred" and d.action_id is None
        assert d.reason == "not acted on: limit max_concurrent = 1 reached (1 in flight)"
    finally:
        runner.join(30)
    assert _ran(tmp_path) == ["sda"]
    [again] = cli.run_once([forecast("web1")])  # the slot is free again: the same forecast now acts
    assert again.state == "succeeded" and _ran(tmp_path) == ["sda", "web1"]


def test_max_concurrent_counts_claims_within_one_batch(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    engine = make_engine(_config(sshd, tmp_path, "max_concurrent = 1\nmax_fleet_fraction = 1.0\ncooldown = 0"))
    first, second = engine.run_once([forecast("web1"), forecast("web2")])
    assert first.state == "succeeded"
    assert second.outcome == "deferred" and "max_concurrent = 1" in second.reason
    assert _ran(tmp_path) == ["web1"]


def test_approval_is_refused_while_a_limit_is_hit(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    policies = policy_toml("slow", "slow", "auto", kind="disk") + policy_toml("p", "mark", "approve")
    text = _config(sshd, tmp_path, "max_concurrent = 1\nmax_fleet_fraction = 1.0\ncooldown = 0", policies)
    daemon, cli = make_engine(text), make_engine(text)
    [proposal] = cli.run_once([forecast("web1")])
    assert proposal.state == "proposed"
    runner = threading.Thread(target=daemon.run_once, args=([forecast("sda", kind="disk")],))
    runner.start()
    try:
        _wait_for(tmp_path / "remote" / "slow-started")
        with pytest.raises(ActionError, match="not approved: limit max_concurrent = 1 reached"):
            cli.approve(proposal.action_id)
        assert cli.get(proposal.action_id).state == "proposed"
    finally:
        runner.join(30)
    assert cli.approve(proposal.action_id).state == "succeeded"


def test_max_per_hour(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    limits = "max_concurrent = 10\nmax_per_hour = 2\nmax_fleet_fraction = 1.0\ncooldown = 0"
    engine = make_engine(_config(sshd, tmp_path, limits))
    d = engine.run_once([forecast(f"web{i}") for i in range(1, 4)])
    assert [x.outcome for x in d] == ["acted", "acted", "deferred"]
    assert d[2].reason == "not acted on: limit max_per_hour = 2 reached (2 started in the last hour)"
    engine.undo(d[0].action_id)  # undoing does not give back the hourly budget
    [again] = engine.run_once([forecast("web3")])
    assert again.outcome == "deferred" and "max_per_hour" in again.reason
    assert _ran(tmp_path) == ["web1", "web2", "undo", "web1"]


def test_max_fleet_fraction(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    limits = "max_concurrent = 10\nmax_per_hour = 100\nmax_fleet_fraction = 0.2\ncooldown = 0"
    engine = make_engine(_config(sshd, tmp_path, limits))
    fleet = [forecast(f"web{i}", 0.9 if i <= 5 else 0.1) for i in range(1, 11)]  # 10 hosts, 5 at risk
    d = engine.run_once(fleet)
    assert [x.outcome for x in d[:5]] == ["acted", "acted", "deferred", "deferred", "deferred"]
    assert d[2].reason == (
        "not acted on: limit max_fleet_fraction = 0.2 of a fleet of 10 host entities allows 2 at once "
        "(2 already in effect)"
    )
    assert _ran(tmp_path) == ["web1", "web2"]
    engine.undo(d[0].action_id)  # web1 back in service: one slot of the fleet budget is free again
    d2 = engine.run_once(fleet)
    assert [x.outcome for x in d2[:5]] == ["duplicate", "duplicate", "acted", "deferred", "deferred"]
    assert _ran(tmp_path) == ["web1", "web2", "undo", "web1", "web3"]


def test_cooldown_per_entity(sshd: Sshd, tmp_path: Path, make_engine: Callable) -> None:
    policies = policy_toml("first", "mark", "auto") + policy_toml("second", "mark", "auto")
    limits = 'max_concurrent = 10\nmax_per_hour = 100\nmax_fleet_fraction = 1.0\ncooldown = "1h"'
    engine = make_engine(_config(sshd, tmp_path, limits, policies))
    a, b = engine.run_once([forecast("web1")])
    assert a.outcome == "acted" and b.outcome == "deferred"
    assert b.reason.startswith("not acted on: cooldown: 'web1' was acted on ")
    assert b.reason.endswith("ago (cooldown = 1h)")
    other = engine.run_once([forecast("web2")])
    assert [x.outcome for x in other] == ["acted", "deferred"]  # cooldown is per entity
    assert _ran(tmp_path) == ["web1", "web2"]
