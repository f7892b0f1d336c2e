"""Local executor bounds and the audit fan-out's failure isolation: a store or Grafana failure never breaks
an action, the audit log still gets every transition. (The annotate hooks here are plain callables standing in
for pmaintd.grafana's Annotator, since no Grafana server can run on these machines; the real Annotator is
tested against a recording HTTP server in tests/grafana.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest

from pmaintd import config
from pmaintd.act.audit import AuditLog
from pmaintd.act.engine import ActionEngine, IllegalTransition
from pmaintd.act.executor import MAX_OUTPUT, run_local
from pmaintd.store.sqlite import SqliteStore
from tests.act.conftest import forecast

LOCAL = """
[actions.mark]
run_on = "local"
command = "echo {entity} >> OUT"
verify = "grep -qxF -- {entity} OUT"
[[policies]]
name = "p"
kind = "host"
min_probability = 0.5
action = "mark"
mode = "auto"
[limits]
max_fleet_fraction = 1.0
"""


def _cfg(tmp_path: Path, text: str = LOCAL) -> config.Config:
    p = tmp_path / "c.toml"
    p.write_text(text.replace("OUT", str(tmp_path / "ran")))
    return config.load(p)


def test_output_is_bounded_and_flagged() -> None:
    r = run_local("head -c 300000 /dev/zero; echo err >&2", timeout=10)
    assert r.returncode == 0 and r.truncated and len(r.stdout) == MAX_OUTPUT and r.stderr == "err\n"


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    started: list[int] = []
    t0 = time.monotonic()
    r = run_local(f"sleep 30 & echo $! > {tmp_path}/bg; sleep 30", timeout=1, on_start=started.append)
    assert time.monotonic() - t0 < 10
    assert r.returncode is None and r.error == "timed out after 1s (process group killed)"
    bg = int((tmp_path / "bg").read_text())
    time.sleep(0.2)
    assert not psutil.pid_exists(bg) or psutil.Process(bg).status() == psutil.STATUS_ZOMBIE
    assert started and started[0] != bg


def test_a_command_whose_pid_cannot_be_recorded_is_ended(tmp_path: Path) -> None:
    """on_start is where the engine records the child for crash recovery; when that fails (a locked or
    broken actions.db), the command must not run on untracked."""
    pids: list[int] = []

    def record(pid: int) -> None:
        pids.append(pid)
        raise OSError("database is locked")

    with pytest.raises(OSError, match="database is locked"):
        run_local(f"sleep 2; touch {tmp_path}/ran", timeout=10, on_start=record)
    assert not psutil.pid_exists(pids[0]) or psutil.Process(pids[0]).status() == psutil.STATUS_ZOMBIE
    time.sleep(2.5)
    assert not (tmp_path / "ran").exists()


def test_failing_grafana_and_store_never_break_an_action(tmp_path: Path) -> None:
    def broken(record: Mapping[str, Any]) -> None:
        raise ConnectionError("grafana is down")

    store = SqliteStore(tmp_path / "s.db")
    store.close()  # every write now raises
    engine = ActionEngine(_cfg(tmp_path), tmp_path / "state", store, annotate=broken)
    [d] = engine.run_once([forecast("web1")])
    assert d.state == "succeeded"
    lines = (tmp_path / "state" / "audit.jsonl").read_text().splitlines()
    assert [json.loads(x)["state"] for x in lines] == ["proposed", "auto", "running", "succeeded"]
    engine.close()


def test_every_transition_reaches_the_annotator(tmp_path: Path) -> None:
    seen: list[Mapping[str, Any]] = []
    engine = ActionEngine(_cfg(tmp_path), tmp_path / "state", None, annotate=seen.append)
    [d] = engine.run_once([forecast("web1")])
    assert [(r["id"], r["state"], r["entity"], r["action"]) for r in seen] == [
        (d.action_id, s, "web1", "mark") for s in ("proposed", "auto", "running", "succeeded")
    ]
    assert all(r["time"].endswith("Z") and r["probability"] == 0.9 for r in seen)
    engine.close()


def test_unknown_without_verify_waits_for_a_person(tmp_path: Path, make_engine: Callable) -> None:
    """A `running` row whose owner is gone and that has no verify command stays unknown until resolved."""
    no_verify = LOCAL.replace('verify = "grep -qxF -- {entity} ', "# ")
    engine = make_engine(no_verify.replace("OUT", str(tmp_path / "ran")))
    [d] = engine.evaluate([forecast("web1")])
    engine.db.transition(d.action_id, "running", owner_pid=2**22 + 12345, owner_start=1.0)  # a dead owner
    [rec] = engine.recover()
    assert rec.state == "unknown" and rec.message.startswith("no verify command")
    assert not (tmp_path / "ran").exists()  # not re-run
    assert engine.resolve(d.action_id, "succeeded", by="carol").message == "resolved as succeeded by carol"
    with pytest.raises(IllegalTransition, match="only an unknown action can be resolved"):
        engine.resolve(d.action_id, "failed")
    assert engine.get(d.action_id).state == "succeeded"


def _orphan_claim(engine: ActionEngine, tmp_path: Path, window_end: float) -> int:
    """An `auto` claim whose owner process is gone before it started (a crash between decide and run)."""
    rec = engine.db.insert(policy="p", action="mark", kind="host", entity="web9", host="web9", run_on="local",
                           mode="auto", probability=0.9, horizon_hours=24.0, reasons=[], window_start=0.0,
                           window_end=window_end, fleet=1, command=f"echo web9 >> {tmp_path}/ran", verify=None,
                           undo=None, timeout=10.0)  # fmt: skip
    engine.db.transition(rec.id, "auto", claimed=time.time(), owner_pid=2**22 + 54321, owner_start=1.0)
    return rec.id


def test_orphaned_claim_is_carried_out_once_by_recovery(tmp_path: Path) -> None:
    engine = ActionEngine(_cfg(tmp_path), tmp_path / "state")
    i = _orphan_claim(engine, tmp_path, time.time() + 3600)
    [rec] = engine.recover()
    assert rec.id == i and rec.state == "succeeded"
    assert engine.recover() == []
    assert (tmp_path / "ran").read_text() == "web9\n"
    engine.close()


def test_orphaned_claim_past_its_window_expires(tmp_path: Path) -> None:
    engine = ActionEngine(_cfg(tmp_path), tmp_path / "state")
    i = _orphan_claim(engine, tmp_path, time.time() - 1)
    assert engine.recover() == []
    assert engine.evaluate([]) == []
    rec = engine.get(i)
    assert rec.state == "expired" and rec.message == "forecast window ended before it ran"
    assert not (tmp_path / "ran").exists()
    engine.close()


def test_two_engines_racing_on_the_same_forecasts_act_once_each(tmp_path: Path) -> None:
    """Like the daemon and an operator's `actions evaluate` at the same moment: separate sqlite connections,
    one state dir. BEGIN IMMEDIATE makes decide-and-claim atomic, so every entity is acted on exactly once."""
    import threading

    text = LOCAL.replace("[limits]\n", "[limits]\nmax_concurrent = 50\nmax_per_hour = 50\ncooldown = 0\n")
    cfg = _cfg(tmp_path, text)
    engines = [ActionEngine(cfg, tmp_path / "state") for _ in range(2)]
    batch = [forecast(f"web{i}") for i in range(10)]
    barrier = threading.Barrier(2)
    results: list[list] = [[], []]

    def go(n: int) -> None:
        barrier.wait()
        results[n] = engines[n].run_once(batch)

    threads = [threading.Thread(target=go, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    outcomes = sorted(d.outcome for r in results for d in r)
    assert outcomes == ["acted"] * 10 + ["duplicate"] * 10
    assert sorted((tmp_path / "ran").read_text().split()) == sorted(f"web{i}" for i in range(10))
    for e in engines:
        e.close()


def test_a_torn_audit_line_loses_only_itself(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A crash mid-append leaves a partial last line: the next record starts on its own line, and reading the
    log skips (and logs) the torn one instead of failing every `actions show`."""
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append({"id": 1, "state": "proposed"})
    with open(log.path, "ab") as f:
        f.write(b'{"id": 1, "state": "run')  # torn: no closing brace, no newline
    log.append({"id": 1, "state": "succeeded"})
    assert [r["state"] for r in log.read()] == ["proposed", "succeeded"]
    assert "line 2 is not a complete record" in caplog.text
