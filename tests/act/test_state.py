"""The persisted state machine: legal moves only, across connections (processes share one sqlite file)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmaintd.act.state import STATES, TRANSITIONS, ActionDB, IllegalTransition, NoSuchAction


def _new(db: ActionDB) -> int:
    rec = db.insert(policy="p", action="a", kind="host", entity="e", host="e", run_on="local", mode="auto",
                    probability=0.9, horizon_hours=24.0, reasons=["r"], window_start=0.0, window_end=1e12,
                    fleet=3, command="true", verify=None, undo=None, timeout=10.0)  # fmt: skip
    assert rec.state == "proposed" and rec.reasons == ["r"]
    return rec.id


def test_happy_path_and_undo(tmp_path: Path) -> None:
    db = ActionDB(tmp_path / "a.db")
    i = _new(db)
    for state in ("auto", "running", "succeeded", "undone"):
        old, rec = db.transition(i, state)
        assert rec.state == state
    assert old == "succeeded"


@pytest.mark.parametrize(("path", "bad"), [
    ((), "running"),
    ((), "succeeded"),
    (("approved",), "approved"),
    (("auto", "running", "succeeded"), "running"),
    (("rejected",), "approved"),
    (("observed",), "auto"),
    (("auto", "running", "succeeded", "undone"), "succeeded"),
    (("expired",), "approved"),
])  # fmt: skip
def test_illegal_moves_raise_and_change_nothing(tmp_path: Path, path: tuple[str, ...], bad: str) -> None:
    db = ActionDB(tmp_path / "a.db")
    i = _new(db)
    for s in path:
        db.transition(i, s)
    before = db.get(i)
    with pytest.raises(IllegalTransition, match=f"cannot become {bad}"):
        db.transition(i, bad)
    assert db.get(i) == before


def test_every_state_is_in_the_table_and_reachable() -> None:
    assert set(TRANSITIONS) == set(STATES)
    reached, todo = {"proposed"}, ["proposed"]
    while todo:
        for n in TRANSITIONS[todo.pop()]:
            if n not in reached:
                reached.add(n)
                todo.append(n)
    assert reached == set(STATES)


def test_state_survives_reopen_and_is_shared(tmp_path: Path) -> None:
    a, b = ActionDB(tmp_path / "a.db"), ActionDB(tmp_path / "a.db")
    i = _new(a)
    a.transition(i, "approved")
    assert b.get(i).state == "approved"
    with pytest.raises(IllegalTransition):
        b.transition(i, "rejected")
    a.close()
    assert ActionDB(tmp_path / "a.db").get(i).state == "approved"
    with pytest.raises(NoSuchAction):
        b.get(999)
