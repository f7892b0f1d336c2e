"""How a walk is split into GETBULK requests once an agent's table sizes are known (pure planning)."""

from __future__ import annotations

from pmaintd.collect.snmp_client import MAX_VARBINDS_PER_REQUEST, WalkMemory, plan_requests


def _cols(n: int, base: int = 0) -> list[tuple[int, ...]]:
    return [(1, 3, 6, 1, 9, base + i) for i in range(n)]


def test_first_walk_asks_max_repetitions_for_everything():
    cols = _cols(45)
    groups = plan_requests(cols, WalkMemory(), 25)
    assert [len(g) for g, _ in groups] == [20, 20, 5]
    assert {r for _, r in groups} == {25}
    assert [c for g, _ in groups for c in g] == cols


def test_short_columns_fit_one_answer_and_long_ones_are_asked_generously():
    empty, four, ten, long = _cols(8), _cols(32, 100), _cols(13, 200), _cols(30, 300)
    mem = WalkMemory(rows={**dict.fromkeys(empty, 0), **dict.fromkeys(four, 4), **dict.fromkeys(ten, 10),
                           **dict.fromkeys(long, 59)}, max_varbinds=91)
    groups = plan_requests(empty + four + ten + long, mem, 25)
    planned = [c for g, _ in groups for c in g]
    assert sorted(planned) == sorted(empty + four + ten + long)
    for g, reps in groups:
        if set(g) <= set(long):
            assert reps == 25 and len(g) <= MAX_VARBINDS_PER_REQUEST // 25
        else:
            # rows + 1 of the largest column, and the whole answer within what the agent sends at once
            assert reps == max(mem.rows[c] for c in g) + 1
            assert len(g) * reps <= 91
            assert max(mem.rows[c] + 1 for c in g) <= 2 * min(mem.rows[c] + 1 for c in g)
    assert sum(len(g) * r for g, r in groups if not set(g) <= set(long)) < 1.3 * sum(
        mem.rows[c] + 1 for c in empty + four + ten)
