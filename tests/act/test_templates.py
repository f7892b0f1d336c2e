"""Template rendering: every substituted value reaches bash as exactly one inert argument."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmaintd.act.executor import run_local
from pmaintd.act.templates import TemplateError, check_template, render

HOSTILE = [
    "x; touch {m}",
    "$(touch {m})",
    "`touch {m}`",
    "' ; touch {m} ; '",
    '" ; touch {m} ; "',
    "a\ntouch {m}",
    "-n; touch {m}",
    "x && touch {m} || touch {m}",
    "$'\\x3b' ; touch {m}",
]


def _values(entity: str) -> dict[str, object]:
    return {"entity": entity, "host": entity, "kind": "disk", "probability": 0.9, "horizon_hours": 24}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_inert_and_arrive_intact(name: str, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    entity = name.format(m=marker)
    cmd = render("printf '%s\\n' {entity} {host}", _values(entity))
    r = run_local(cmd, timeout=10)
    assert r.returncode == 0, r.stderr
    assert not marker.exists()
    assert r.stdout == f"{entity}\n{entity}\n"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40))
def test_any_text_is_one_argument(text: str) -> None:
    r = run_local(render("printf '%s' {entity}", _values(text)), timeout=10)
    assert r.returncode == 0
    assert r.stdout == text.encode("utf-8", "surrogateescape").decode(errors="replace")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("echo {serial}", "unknown placeholder {serial}"),
        ("echo {}", "unknown placeholder {}"),
        ("echo {entity.__class__}", "unknown placeholder"),
        ("echo '{entity}'", "inside 'quotes'"),
        ('echo "x {entity}"', 'inside "quotes"'),
        ("echo {entity!r}", "no conversion or format spec"),
        ("echo {probability:.2f}", "no conversion or format spec"),
        ("awk '{ print }'", "unknown placeholder { print }; allowed: {entity}"),
        ("awk '{ print }' {entity}", "(a literal brace is written {{ or }})"),
        ("echo {", "not a valid template"),
    ],
)
def test_bad_templates_are_refused(template: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(problem)):
        check_template(template)


def test_literal_braces_and_quotes_outside_placeholders_are_kept() -> None:
    out = render("awk '{{ print $1 }}' -v x={entity} \"lit\" \\'{kind}", _values("a b"))
    assert out == "awk '{ print $1 }' -v x='a b' \"lit\" \\'disk"


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{entity} --now", "command position"),
        ("echo $({entity})", "command position"),
        ("echo `{entity}`", "command position"),
        ("true && {entity}", "command position"),
        ("LANG=C {entity}", "command position"),
        ("eval echo {entity}", "eval"),
        ("bash -c {entity}", "-c"),
        ("ssh {host} uptime", "destination without a preceding --"),
        ("ssh -o BatchMode=yes -- node1 drain {entity}", "remote command"),
    ],
)
def test_placeholders_where_quoting_cannot_help_are_refused(template: str, problem: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(problem)):
        check_template(template)


@pytest.mark.parametrize(
    "template",
    [
        "osd=$(ceph device ls --format json | jq -r --arg s {entity} '.[]')",
        "case {host} in -*) exit 2;; esac",
        "for h in {host} spare; do echo $h; done",
        "src=qemu+ssh://root@{host}/system",
        "sh -c 'systemctl stop \"$1\"' sh {entity}",
        "ssh -o BatchMode=yes -- {host} sudo -n systemctl stop app.service",
        "LANG=C kubectl drain --ignore-daemonsets -- {entity}",
    ],
)
def test_placeholders_as_arguments_and_data_are_accepted(template: str, tmp_path: Path) -> None:
    check_template(template)


def test_an_evaluating_template_would_really_have_run_the_value(tmp_path: Path) -> None:
    """Why the refusal matters: rendered and run, `eval echo {entity}` executes a hostile entity."""
    marker = tmp_path / "pwned"
    rendered = "eval echo " + shlex.quote(f"x; touch {marker}")  # what render's quoting would have produced
    run_local(rendered, timeout=10)
    assert marker.exists()
