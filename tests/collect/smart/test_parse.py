"""smart_parse and `pmaintd smart parse` on real recordings, their truncations, and garbage."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from pmaintd.cli import cli
from pmaintd.collect.smart import Disk, report_points
from pmaintd.collect.smart_parse import SmartParseError, brief_flags, parse, parse_scan, power_on_hours, raw_int

REC = Path(__file__).parent / "testdata" / "smartctl"
FILES = sorted(p for p in REC.iterdir() if p.name not in ("MANIFEST.csv", "PROVENANCE.md"))
DEVICE_FILES = [
    p for p in FILES if (Path(__file__).parent / "golden" / f"{p.name}.json").read_text().find('"report"') >= 0
]


@pytest.mark.parametrize("cut", [0.02, 0.1, 0.3, 0.5, 0.7, 0.9, 0.99])
def test_truncated_outputs_parse_or_fail_clearly(cut: float) -> None:
    """Every device recording cut short either still yields a report or raises SmartParseError; truncated
    JSON is always an error (a partial object must not pass for a disk's data)."""
    for p in DEVICE_FILES:
        data = p.read_bytes()
        part = data[: int(len(data) * cut)]
        try:
            parse(part)
        except SmartParseError as exc:
            assert str(exc)
            continue
        assert not part.lstrip().startswith(b"{"), f"{p.name} cut at {cut} parsed as JSON"


@pytest.mark.parametrize("cut", ["[1", "[12.4"])
def test_output_cut_inside_a_size_fails_clearly(cut: str) -> None:
    """A recording cut inside pySMART's `[12.4 TB]` size makes humanfriendly raise InvalidSize (not a
    ValueError); that must surface as SmartParseError like any other damaged output, or it would fail the
    whole host's SMART poll instead of this one disk."""
    data = (REC / "pysmart__singletests__nvme_win10_mingw32_0_issue_48__-d_nvme_--all__dev_sda.txt").read_text()
    with pytest.raises(SmartParseError, match="pySMART could not parse this output"):
        parse(data[: data.index("[12.4 TB]") + len(cut)])


@pytest.mark.parametrize(
    ("data", "kind", "message"),
    [
        (b"", "empty", "empty input"),
        (b"   \n\n", "empty", "empty input"),
        (b"\x7fELF\x02\x01\x01\x00\x00\x00binary", "binary", "binary data"),
        (b"hello world\nthis is not smartctl\n", "invalid", "not smartctl output"),
        (b"{}", "error", "no disk data"),
        (b'[{"device": {}}]', "invalid", "expected an object"),
        (b"null", "invalid", "not smartctl output"),
        (
            b'{"device": {"name": "/dev/sda"}, "smartctl": {"exit_status": 2, '
            b'"messages": [{"string": "Permission denied"}]}}',
            "error",
            "exit status 2.*Permission denied",
        ),
        (b'{"json_format_version": [1, 0], "smart_status": {"pass', "truncated", "truncated or invalid JSON"),
    ],
)
def test_garbage_gives_a_clear_error(data: bytes, kind: str, message: str) -> None:
    with pytest.raises(SmartParseError, match=message) as info:
        parse(data)
    assert info.value.kind == kind


def test_oversized_input_is_refused() -> None:
    with pytest.raises(SmartParseError, match="far smaller"):
        parse(b"x" * (5 * 1024 * 1024))


def test_json_with_embedded_text_goes_through_pysmart_and_json_completes_it() -> None:
    """`smartctl --json=o` output: the same real device recorded as text (-a) and as JSON by py-SMART's
    tests; joined into one document, pySMART's text values win and JSON fills what the text lacks."""
    text = (REC / "pysmart__singletests__nvme_5_issue_46__-d_nvme_--all__dev_nvme0.txt").read_text()
    doc = json.loads((REC / "pysmart__singletests__nvme_5_issue_46__nvmessd.json").read_text())
    doc["smartctl"]["output"] = text.splitlines()
    both = parse(json.dumps(doc))
    alone_text, alone_json = parse(text), parse(json.dumps({k: v for k, v in doc.items() if k != "smartctl"}))
    assert both.source == "json+text"
    assert both.power_on_hours == alone_text.power_on_hours == 669  # text recorded an hour before the JSON
    assert alone_json.power_on_hours == 670
    assert both.exit_status == doc["smartctl"]["exit_status"] and alone_text.exit_status is None
    assert (both.serial_no, both.media_errors, both.percentage_used) == ("22050Y803439", 0, 0)


def test_raw_value_rules() -> None:
    assert raw_int("37 (Min/Max 20/45)") == 37
    assert raw_int("12345h+10m+05s") == 12345
    assert raw_int("0x000a00000000") == 0x000A00000000
    assert raw_int("-") is None
    assert power_on_hours("Power_On_Seconds", "1335h+10m+34s", 1335) == 1335
    assert power_on_hours("Power_On_Minutes", "120000", 120000) == 2000
    assert power_on_hours("Power_On_Half_Minutes", "240", 240) == 2
    assert brief_flags(0x33) == "PO--CK" and brief_flags(0x1032) == "-O--CK+"


def test_brief_format_table_is_read() -> None:
    """A `smartctl -f brief` table (flags as letters, which pySMART cannot read) gives every attribute."""
    r = parse((REC / "gsmartcontrol__smartmon-site__WD800JD.txt.funky_attrs.txt").read_bytes())
    a5 = next(a for a in r.attributes if a.id == 5)
    assert (a5.raw_value, a5.value, a5.threshold, a5.fail, a5.flags) == (562, 129, 140, True, "PO--CK")
    assert r.health_ok is False and r.reallocated_sectors_count == 562


def test_scan_listing_feeds_discovery() -> None:
    text = (REC / "pysmart__listingtests__linux_multiple_devices__--scan-open.txt").read_text()
    assert parse_scan(text) == [("/dev/nvme0", "nvme"), ("/dev/nvme1", "nvme"), ("/dev/bus/0", "sat+megaraid,60")]
    failed = "/dev/sdx -d scsi # /dev/sdx, SCSI device open failed: No such device\n/dev/sda # /dev/sda, ATA device\n"
    assert parse_scan(failed) == [("/dev/sda", None)]


def test_points_use_telegraf_names() -> None:
    r = parse((REC / "gsmartcontrol__smartmon-site__MAXTOR-1.txt.health_failed.txt").read_bytes())
    pts = report_points(r, "h1", Disk("/dev/hda").tag, 8, time=1)
    dev = pts[0]
    assert dev.measurement == "smart_device"
    assert dev.tags == {"host": "h1", "device": "hda", "model": "MAXTOR 4K080H4", "serial_no": "674119123435"}
    assert (dev.fields["health_ok"], dev.fields["exit_status"]) == (False, 8)
    assert (dev.fields["reallocated_sectors_count"], dev.fields["pending_sector_count"]) == (499, 338)
    attrs = {p.tags["id"]: p for p in pts[1:]}
    assert set(attrs) == {str(a.id) for a in r.attributes}
    assert {"id", "name", "flags", "fail", "host", "device", "model", "serial_no"} == set(attrs["5"].tags)
    assert Disk("/dev/bus/0", "megaraid,16").tag == "bus/0:megaraid,16"


def test_cli_parses_every_file_and_reports_each_failure(tmp_path: Path) -> None:
    good = REC / "smartctl_exporter__INTEL_SSDPE2KX080T8_5.json"
    cut = tmp_path / "cut.json"
    cut.write_bytes(good.read_bytes()[:500])
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)) * 4)
    scan = REC / "pysmart__listingtests__linux_01__--scan-open.txt"
    res = CliRunner().invoke(cli, ["smart", "parse", "--json", str(good), str(cut), str(junk), str(scan)])
    assert res.exit_code == 1, res.output
    assert "Traceback" not in res.output
    out = json.loads(res.stdout)
    assert [o["file"] for o in out] == [str(good), str(cut), str(junk), str(scan)]
    assert out[0]["device_type"] == "nvme" and out[0]["percentage_used"] == 0 and out[0]["temp_c"] == 30
    for key in (
        "serial_no",
        "model",
        "health_ok",
        "power_on_hours",
        "reallocated_sectors_count",
        "pending_sector_count",
        "uncorrectable_sector_count",
        "udma_crc_errors",
        "media_errors",
        "available_spare",
        "critical_warning",
        "grown_defects",
        "attributes",
    ):
        assert key in out[0]
    assert "truncated or invalid JSON" in out[1]["error"]
    assert "binary data" in out[2]["error"]
    assert "device listing" in out[3]["error"]
    ok = CliRunner().invoke(cli, ["smart", "parse", str(good)])
    assert ok.exit_code == 0 and "smartctl outputs" in ok.output and not ok.stderr


def test_cli_prints_device_text_in_an_error_literally(tmp_path: Path) -> None:
    """The error quotes smartctl's own line; `[/bold]` there used to be parsed as rich markup and crash."""
    f = tmp_path / "[b]err.txt"
    f.write_text("Smartctl open device: /dev/sdz [/bold] failed: No such device\n")
    res = CliRunner().invoke(cli, ["smart", "parse", str(f)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"{f}: smartctl reported an error and no disk data" in res.stderr and "sdz [/bold] failed" in res.stderr


def test_importing_the_parser_keeps_the_process_locale() -> None:
    """pySMART sets LANG=C at import; pmaintd puts it back so other children keep the operator's locale."""
    code = "import os; import pmaintd.collect.smart_parse; print(os.environ.get('LANG'))"
    env = {**os.environ, "LANG": "de_DE.UTF-8"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "de_DE.UTF-8"
