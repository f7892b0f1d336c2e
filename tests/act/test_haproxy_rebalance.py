"""A real rebalance, end to end: Debian's HAProxy on loopback in front of three real HTTP servers; a forecast
that web2's host will fail goes through `pmaintd actions evaluate`, the auto policy of the shipped
load-balancer pack (examples/actions/service-lb.toml) drains web2 through HAProxy's runtime API, run over SSH
on the real sshd fixture (socat on the "LB host"), requests stop reaching web2 while web1 and web3 serve
every request, and `pmaintd actions undo` puts web2 back in rotation."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from pmaintd.cli import cli
from tests.act.conftest import write_forecasts
from tests.services import Haproxy, Sshd

pytestmark = pytest.mark.service

PACK = Path(__file__).resolve().parents[2] / "examples" / "actions" / "service-lb.toml"


def _pack_for(sshd: Sshd, lb: Haproxy) -> str:
    """The shipped pack, pointed at the loopback LB host (sshd) and this HAProxy's admin socket."""
    text = PACK.read_text()
    for old, new in [
        ("/run/haproxy/admin.sock", str(lb.socket)),
        ('address = "lb1.example.net:22"', f'address = "{sshd.address}"'),
        ('user = "pmaintd"', f'user = "{sshd.user}"'),
        ('key_file = "/etc/pmaintd/ssh/id_ed25519"', f'key_file = "{sshd.client_key}"'),
        ('known_hosts = "/etc/pmaintd/ssh/known_hosts"', f'known_hosts = "{sshd.known_hosts}"'),
    ]:
        assert old in text, old
        text = text.replace(old, new)
    return text


def _get(lb: Haproxy, n: int) -> Counter:
    seen: Counter = Counter()
    for _ in range(n):
        with urllib.request.urlopen(lb.url, timeout=5) as r:
            assert r.status == 200
            seen[r.read().decode()] += 1
    return seen


def _status(lb: Haproxy, server: str) -> str:
    for line in lb.runtime("show stat").splitlines():
        f = line.split(",")
        if f[:2] == [lb.backend, server]:
            return f[17]
    raise AssertionError(f"{server} not in show stat")


def test_forecast_drains_backend_over_ssh_and_undo_restores(
    sshd: Sshd, haproxy_lb: Haproxy, tmp_path: Path
) -> None:
    lb = haproxy_lb
    cfg = tmp_path / "pmaintd.toml"
    cfg.write_text(_pack_for(sshd, lb))
    base = ["--config", str(cfg), "--state-dir", str(tmp_path / "state")]
    runner = CliRunner()

    before = _get(lb, 30)
    assert before == Counter({"web1": 10, "web2": 10, "web3": 10})

    fc = write_forecasts(tmp_path / "forecasts.jsonl", [
        {"kind": "host", "entity": "web1", "probability": 0.04, "horizon_hours": 24},
        {"kind": "host", "entity": "web2", "probability": 0.97, "horizon_hours": 24, "confidence": 0.95,
         "reasons": ["edac_ce_rate", "temp_c"]},
        {"kind": "host", "entity": "web3", "probability": 0.11, "horizon_hours": 24},
    ])  # fmt: skip
    r = runner.invoke(cli, [*base, "actions", "evaluate", "--forecasts", str(fc), "--json"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    decisions = json.loads(r.output)
    assert [d["outcome"] for d in decisions] == ["below_threshold", "acted", "below_threshold"]
    drained = decisions[1]
    assert drained["entity"] == "web2" and drained["state"] == "succeeded", drained["reason"]
    assert _status(lb, "web2") == "DRAIN"

    during = _get(lb, 60)
    assert during == Counter({"web1": 30, "web3": 30})  # every request served, none by web2

    r = runner.invoke(cli, [*base, "actions", "undo", str(drained["action_id"])], catch_exceptions=False)
    assert r.exit_code == 0 and "undone" in r.output, r.output
    assert _status(lb, "web2") != "DRAIN"
    after = _get(lb, 30)
    assert after["web2"] >= 9 and sum(after.values()) == 30

    shown = runner.invoke(cli, [*base, "actions", "show", str(drained["action_id"]), "--json"])
    history = [h["state"] for h in json.loads(shown.output)["history"]]
    assert history == ["proposed", "auto", "running", "succeeded", "undone"]
    assert json.loads(shown.output)["run_on"] == "lb1"


def test_runtime_api_injection_is_refused(sshd: Sshd, haproxy_lb: Haproxy, tmp_path: Path) -> None:
    """Shell quoting keeps `;` from the shell, but HAProxy's runtime API splits commands on `;` itself: the
    pack's name guard refuses such a name, so the frontend is never touched."""
    lb = haproxy_lb
    cfg = tmp_path / "pmaintd.toml"
    cfg.write_text(_pack_for(sshd, lb))
    base = ["--config", str(cfg), "--state-dir", str(tmp_path / "state")]
    fc = write_forecasts(tmp_path / "forecasts.jsonl", [
        {"kind": "host", "entity": "web1", "probability": 0.04, "horizon_hours": 24},
        {"kind": "host", "entity": "web3; disable frontend fe", "probability": 0.99, "horizon_hours": 24},
        {"kind": "host", "entity": "web3", "probability": 0.04, "horizon_hours": 24},
    ])  # fmt: skip
    r = CliRunner().invoke(cli, [*base, "actions", "evaluate", "--forecasts", str(fc), "--json"])
    assert r.exit_code == 1  # the action failed
    bad = json.loads(r.output)[1]
    assert bad["state"] == "failed" and "exit status 2" in bad["reason"]
    assert _get(lb, 9) == Counter({"web1": 3, "web2": 3, "web3": 3})
    assert {_status(lb, s) for s in ("web1", "web2", "web3")} == {"no check"}
