"""`pmaintd actions ...` and the recurring-healing flag, through the real CLI (click runner, real sqlite
state, real local bash for the commands)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pmaintd.cli import cli
from tests.act.conftest import policy_toml, write_forecasts


def _setup(tmp_path: Path, count: int = 2, mode: str = "auto") -> tuple[list[str], Path]:
    out = tmp_path / "out"
    out.mkdir()
    cfg = tmp_path / "pmaintd.toml"
    policies = policy_toml("first", "mark", mode) + policy_toml("second", "mark", mode)
    cfg.write_text(f"""
[actions.mark]
run_on = "local"
command = "echo {{entity}} >> {out}/ran"
undo = "echo undo {{entity}} >> {out}/ran"

{policies}
[limits]
max_concurrent = 5
max_fleet_fraction = 1.0
cooldown = "0s"

[recurring]
count = {count}
window = "1d"
""")
    return ["--config", str(cfg), "--state-dir", str(tmp_path / "state")], out


def _run(base: list[str], *args: str, code: int = 0) -> str:
    r = CliRunner().invoke(cli, [*base, *args], catch_exceptions=False)
    assert r.exit_code == code, r.output
    return r.output


def _fc(tmp_path: Path, *rows: dict) -> str:
    return str(write_forecasts(tmp_path / "f.jsonl", list(rows)))


WEB1 = {"kind": "host", "entity": "web1", "probability": 0.9, "horizon_hours": 24, "reasons": ["ecc_errors"]}


def test_evaluate_dry_run_then_real_then_list_and_show(tmp_path: Path) -> None:
    base, out = _setup(tmp_path, count=5)
    low = {"kind": "host", "entity": "web2", "probability": 0.1, "horizon_hours": 24}
    fc = _fc(tmp_path, WEB1, low)
    dry = json.loads(_run(base, "actions", "evaluate", "--forecasts", fc, "--dry-run", "--json"))
    assert [d["outcome"] for d in dry] == ["would_act", "would_act", "below_threshold", "below_threshold"]
    assert [d["action_id"] for d in dry] == [None] * 4
    assert not (out / "ran").exists()
    assert json.loads(_run(base, "actions", "list", "--json")) == []

    text = _run(base, "actions", "evaluate", "--forecasts", fc)
    assert "acted" in text and "below_thre" in text
    rows = json.loads(_run(base, "actions", "list", "--json"))
    assert len(rows) == 2
    for row in rows:
        assert {"id", "policy", "entity", "kind", "state", "created", "recurring"} <= set(row)
        assert row["state"] == "succeeded" and row["recurring"] is False and row["reasons"] == ["ecc_errors"]
    shown = json.loads(_run(base, "actions", "show", str(rows[0]["id"]), "--json"))
    assert [h["state"] for h in shown["history"]] == ["proposed", "auto", "running", "succeeded"]
    assert "command: echo web1 >> " in _run(base, "actions", "show", str(rows[0]["id"]))


def test_recurring_healing_is_flagged_in_list_and_status(tmp_path: Path) -> None:
    base, out = _setup(tmp_path, count=2)
    _run(base, "actions", "evaluate", "--forecasts", _fc(tmp_path, WEB1))
    assert (out / "ran").read_text() == "web1\nweb1\n"
    rows = json.loads(_run(base, "actions", "list", "--json"))
    assert [r["recurring"] for r in rows] == [True, True]
    status = _run(base, "status")
    assert "recurring healing: host web1: acted on 2 times in 1d (root cause not fixed)" in status
    assert json.loads(_run(base, "status", "--json"))["recurring"] == [{"kind": "host", "entity": "web1", "count": 2}]


def test_not_recurring_below_count(tmp_path: Path) -> None:
    base, _ = _setup(tmp_path, count=3)
    _run(base, "actions", "evaluate", "--forecasts", _fc(tmp_path, WEB1))
    assert [r["recurring"] for r in json.loads(_run(base, "actions", "list", "--json"))] == [False, False]
    assert "recurring healing" not in _run(base, "status")


def test_approve_reject_undo_and_errors(tmp_path: Path) -> None:
    base, out = _setup(tmp_path, mode="approve")
    decisions = json.loads(_run(base, "actions", "evaluate", "--forecasts", _fc(tmp_path, WEB1), "--json"))
    first, second = (d["action_id"] for d in decisions)
    assert [d["state"] for d in decisions] == ["proposed", "proposed"]
    approved = _run(base, "actions", "approve", str(first)).strip()
    assert approved == f"action {first} succeeded: command succeeded (no verify command)"
    assert _run(base, "actions", "reject", str(second)).startswith(f"action {second} rejected")
    assert "only a proposed action can be approved" in _run(base, "actions", "approve", str(second), code=1)
    assert _run(base, "actions", "undo", str(first)).startswith(f"action {first} undone")
    assert (out / "ran").read_text() == "web1\nundo web1\n"
    assert "no action with id 99" in _run(base, "actions", "show", "99", code=1)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "line 1: not JSON"),
        ('{"kind": "host", "entity": "a", "horizon_hours": 24}', "line 1: probability is missing"),
        ('{"kind": "host", "entity": "a", "probability": 2, "horizon_hours": 24}', "not between 0 and 1"),
        ('{"kind": "host", "entity": "a", "probability": 0.5, "horizon_hours": 0}', "must be greater than 0"),
    ],
)
def test_bad_forecast_file_is_a_clear_error(tmp_path: Path, line: str, problem: str) -> None:
    base, out = _setup(tmp_path)
    fc = tmp_path / "bad.jsonl"
    fc.write_text(line + "\n")
    assert problem in _run(base, "actions", "evaluate", "--forecasts", str(fc), code=2)
    assert not (out / "ran").exists()


def test_entity_names_are_printed_literally_not_as_rich_markup(tmp_path: Path) -> None:
    """Entity names come from devices; `[/b]` in one used to be parsed as a rich closing tag and crash the table."""
    base, out = _setup(tmp_path)
    hostile = {**WEB1, "entity": "[/b]"}
    assert "[/b]" in _run(base, "actions", "evaluate", "--forecasts", _fc(tmp_path, hostile))
    assert "[/b]" in _run(base, "actions", "list")
    assert (out / "ran").read_text() == "[/b]\n[/b]\n"  # both policies acted on it


def test_unusable_action_state_is_a_clear_error(tmp_path: Path) -> None:
    base, _ = _setup(tmp_path)
    (tmp_path / "state" / "actions.db").mkdir(parents=True)  # a directory where the database should be
    for args in (["actions", "list"], ["status"]):
        r = CliRunner().invoke(cli, [*base, *args])
        assert isinstance(r.exception, SystemExit) and r.exit_code == 1, r.exception
        assert "action state error" in r.stderr and "cannot open action state" in r.stderr
