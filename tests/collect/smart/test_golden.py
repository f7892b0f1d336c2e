"""Golden tests: every recorded smartctl output in testdata/smartctl parses to its reviewed expected file.

The 281 inputs are real outputs (see testdata/PROVENANCE.md); golden/<input>.json holds what the parser
must return: the report (`SmartReport.to_json()`), or, for files that are not one disk's report (scan
listings, self-test commands, `-d test` probes, error outputs), the error kind and message. Scan listings
also record the devices discovery takes from them.

To regenerate after a deliberate parser change: PMAINTD_REGEN_GOLDEN=1 pytest tests/collect/smart, then
review the diff (git diff tests/collect/smart/golden) before committing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pmaintd.collect.smart_parse import SmartParseError, parse, parse_scan

HERE = Path(__file__).resolve().parent
INPUTS = HERE / "testdata" / "smartctl"
GOLDEN = HERE / "golden"
NOT_OUTPUTS = {"MANIFEST.csv", "PROVENANCE.md"}
FILES = sorted(p.name for p in INPUTS.iterdir() if p.name not in NOT_OUTPUTS)


def result_of(name: str) -> dict[str, object]:
    """What the parser makes of one recorded file, in the golden files' shape."""
    data = (INPUTS / name).read_bytes()
    try:
        return {"report": parse(data).to_json()}
    except SmartParseError as exc:
        out: dict[str, object] = {"error_kind": exc.kind, "error": str(exc)}
        if exc.kind == "scan" and not data.lstrip().startswith(b"{"):
            out["scan"] = [list(d) for d in parse_scan(data.decode("utf-8", "ignore"))]
        return out


def test_corpus_is_complete() -> None:
    """All 281 outputs of ../shared/data/smartctl were copied, each with a golden file and no stray one."""
    assert len(FILES) == 281
    goldens = sorted(p.name.removesuffix(".json") for p in GOLDEN.glob("*.json"))
    assert goldens == FILES


@pytest.mark.parametrize("name", FILES)
def test_golden(name: str) -> None:
    got = result_of(name)
    path = GOLDEN / f"{name}.json"
    if os.environ.get("PMAINTD_REGEN_GOLDEN") == "1":
        path.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    assert got == json.loads(path.read_text())


def test_corpus_classification() -> None:
    """Most files are disk reports; the rest are classified, never 'invalid' or a crash."""
    kinds: dict[str, int] = {}
    for name in FILES:
        r = result_of(name)
        kind = "device" if "report" in r else str(r["error_kind"])
        kinds[kind] = kinds.get(kind, 0) + 1
    assert kinds.pop("device") >= 250
    assert set(kinds) <= {"scan", "type-probe", "log", "action", "capabilities", "error"}
    assert kinds["scan"] == 10


def test_shared_data_matches_copies(shared_data: Path) -> None:
    """The copies are byte-identical to ../shared/data/smartctl (when that folder is present)."""
    src = shared_data / "smartctl"
    for name in [*FILES, *NOT_OUTPUTS]:
        assert (src / name).read_bytes() == (INPUTS / name).read_bytes(), name
