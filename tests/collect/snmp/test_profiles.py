"""Device profiles: loading, extends, sysObjectID matching, and refusal of malformed files."""

from __future__ import annotations

import re

import pytest

from pmaintd.collect.snmp import load_profiles, rows_to_points
from pmaintd.collect.snmp_profiles import ProfileError, ProfileSet


def _write(folder, name, text):
    (folder / name).write_text(text)
    return folder


BASE = """
metrics:
  - MIB: IF-MIB
    measurement: interface
    table: {OID: 1.3.6.1.2.1.2.2, name: ifTable}
    symbols: [{OID: 1.3.6.1.2.1.2.2.1.14, name: ifInErrors}]
    metric_tags: [{tag: ifIndex, index: 1}]
"""


def test_shipped_profiles_load_and_match():
    ps = load_profiles()
    assert ps.names() == ["arista", "cisco", "generic", "juniper", "net-snmp"]
    assert ps.match("1.3.6.1.4.1.9.1.617").profile.name == "cisco"
    assert ps.match(".1.3.6.1.4.1.2636.1.1.1.2.21").profile.name == "juniper"
    assert ps.match("1.3.6.1.4.1.30065.1.3011.7150.3282.52.2745").profile.name == "arista"
    assert ps.match("1.3.6.1.4.1.8072.3.2.10").profile.name == "net-snmp"
    m = ps.match("1.3.6.1.4.1.311.1.1.3.1.2")
    assert m.profile.name == "generic"
    assert m.reason == "sysObjectID 1.3.6.1.4.1.311.1.1.3.1.2 matches '*' in generic.yaml"
    # Every vendor profile carries the interface tables, and no profile lists a column twice.
    for name in ps.names():
        cols = ps.get(name).columns()
        assert (1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6) in cols, name
        assert len(cols) == len(set(cols))
    with pytest.raises(KeyError, match="unknown SNMP profile '_generic-if'"):
        ps.get("_generic-if")


def test_most_specific_pattern_wins(tmp_path):
    _write(tmp_path, "_base.yaml", BASE)
    _write(tmp_path, "any.yaml", "extends: [_base.yaml]\nsysobjectid: ['*']\n")
    _write(tmp_path, "vendor.yaml", "extends: [_base.yaml]\nsysobjectid: [1.3.6.1.4.1.9.*]\n")
    _write(tmp_path, "family.yaml", "extends: [_base.yaml]\nsysobjectid: [1.3.6.1.4.1.9.1.*]\n")
    _write(tmp_path, "exact.yaml", "extends: [vendor.yaml]\nsysobjectid: [1.3.6.1.4.1.9.1.617]\n")
    ps = ProfileSet([tmp_path])
    assert ps.match("1.3.6.1.4.1.9.1.617").profile.name == "exact"
    assert ps.match("1.3.6.1.4.1.9.1.618").profile.name == "family"
    assert ps.match("1.3.6.1.4.1.9.12.3").profile.name == "vendor"
    assert ps.match("1.3.6.1.4.1.2636.1").profile.name == "any"
    # extends is transitive: exact -> vendor -> _base
    assert [m.table_name for m in ps.get("exact").metrics] == ["ifTable"]


def test_operator_folder_replaces_a_shipped_profile(tmp_path):
    _write(tmp_path, "cisco.yaml", "extends: [_generic-if.yaml]\nsysobjectid: [1.3.6.1.4.1.9.1.617]\n")
    ps = load_profiles([tmp_path])
    assert ps.match("1.3.6.1.4.1.9.1.617").profile.path == str(tmp_path / "cisco.yaml")
    assert ps.match("1.3.6.1.4.1.9.12.3").profile.name == "generic"


MATCH = """
metrics:
  - table: {{OID: 1.3.6.1.2.1.2.2}}
    symbols: [{{OID: 1.3.6.1.2.1.2.2.1.14, name: x}}]
    metric_tags: [{entry}]
"""


@pytest.mark.parametrize(("files", "message"), [
    ({"a.yaml": "extends: [b.yaml]\n", "b.yaml": "extends: [a.yaml]\n"}, "extends itself through"),
    ({"a.yaml": "extends: [nope.yaml]\n"}, "a.yaml: extends unknown profile nope.yaml"),
    ({"a.yaml": "metrics:\n  - table: {OID: 1.3.6.1.2.1.2.2}\n    symbols: [{OID: ifInErrors, name: x}]\n"},
     "a.yaml metrics[0].symbols[0]: 'ifInErrors' is not a numeric OID"),
    ({"a.yaml": "metrics:\n  - table: {OID: 1.3.6.1.2.1.2.2}\n    symbols: [{OID: 1.3.6.1.2.1.31.1.1.1.6, name: x}]\n"},
     "is not a column of table 1.3.6.1.2.1.2.2"),
    ({"a.yaml": "metrics:\n  - table: {OID: 1.3.6.1.2.1.2.2}\n    symbols: [{OID: 1.3.6.1.2.1.2.2.1.14, name: x, "
                "metric_type: rate}]\n"}, "metric_type 'rate' is not one of gauge, monotonic_count"),
    ({"a.yaml": "sysobjectid: [cisco]\n"}, "sysobjectid pattern 'cisco' is not a numeric OID"),
    ({"a.yaml": "sysobjectids: ['*']\n"}, "a.yaml: unknown top-level keys ['sysobjectids']"),
    ({"a.yaml": "metrics: [\n"}, "a.yaml: not valid YAML"),
    ({"a.yaml": "metrics:\n  - table: {OID: 1.3.6.1.2.1.2.2}\n    symbols: [{OID: 1.3.6.1.2.1.2.2.1.14, name: x}]\n"
                "    metric_tags: [{tag: t}]\n"}, "tag 't' needs exactly one of column, index, template"),
    ({"a.yaml": MATCH.format(entry="{column: {OID: 1.3.6.1.2.1.2.2.1.2}, match: '(', tags: {t: '\\1'}}")},
     "match '(' is not a valid regex"),
    ({"a.yaml": MATCH.format(entry="{column: {OID: 1.3.6.1.2.1.2.2.1.2}, match: 'a(b)', tags: {t: '\\2'}}")},
     r"template '\\2' names a group that match 'a(b)' does not have"),
    ({"a.yaml": MATCH.format(entry="{column: {OID: 1.3.6.1.2.1.2.2.1.2}, match: '(?P<x>b)', tags: {t: '\\g<y>'}}")},
     "names a group that match"),
    ({"a.yaml": MATCH.format(entry="{match: 'a(b)', tags: {t: '\\1'}}")},
     "a 'match' entry takes exactly column (with an OID), match and tags"),
    ({"a.yaml": MATCH.format(entry="{column: {OID: 1.3.6.1.2.1.2.2.1.2}, match: 'a(b)', tags: [t]}")},
     "'tags' must map tag names to templates"),
])
def test_malformed_profiles_are_refused(tmp_path, files, message):
    for name, text in files.items():
        _write(tmp_path, name, text)
    with pytest.raises(ProfileError, match=re.escape(message)):
        ProfileSet([tmp_path])


def test_match_tags_take_part_of_a_column(tmp_path):
    """`match`/`tags` (Datadog's form): groups of a regex searched in a column's text become tags; a value the
    regex does not match gives no tag, so a later entry for the same tag is the fallback."""
    _write(tmp_path, "a.yaml", MATCH.format(entry=(
        "{column: {OID: 1.3.6.1.2.1.2.2.1.2}, match: '^DOM (\\w+) .*Sensor for (\\S+)', "
        "tags: {kind: '\\1', ifName: '\\2'}}, {tag: ifName, template: none}")))
    table = ProfileSet([tmp_path]).profiles["a"].metrics[0]
    descr, errors = (1, 3, 6, 1, 2, 1, 2, 2, 1, 2), (1, 3, 6, 1, 2, 1, 2, 2, 1, 14)
    walked = {
        descr: {(1,): "DOM RX Power Sensor for Ethernet49/1 Lane 2", (2,): "Power supply sensor"},
        errors: {(1,): 0, (2,): 0},
    }
    points = {p.tags.get("kind"): p.tags for p in rows_to_points([table], walked, {}, 0)}
    assert points["RX"]["ifName"] == "Ethernet49/1"
    assert points[None]["ifName"] == "none"
