"""`pmaintd grafana provision` and action annotations, through grafana-client, against a stand-in Grafana.

No Grafana server can be installed on these machines (none is in the package registries they reach), so
these tests run against tests/grafana/grafana_standin.py: a local HTTP server that answers the endpoints
pmaintd uses as Grafana's HTTP API does and records every request. The command runs as a real process,
with grafana-client and its HTTP stack doing real HTTP on loopback.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pmaintd import grafana
from pmaintd.config import GrafanaConfig
from pmaintd.grafana_dashboards import DATASOURCE_UID
from tests.grafana.grafana_standin import GrafanaStandIn

TOKEN = "glsa_s3cr3tT0kenValue_4f9a"
INFLUX_PASSWORD = "influx-pw-7731"
DASHBOARD_UIDS = {"pmaintd-fleet", "pmaintd-disks", "pmaintd-hosts", "pmaintd-network", "pmaintd-actions"}


@pytest.fixture
def standin() -> Iterator[GrafanaStandIn]:
    srv = GrafanaStandIn(token=TOKEN, basic=("admin", "adm:in-pw"))
    yield srv
    srv.stop()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    token = tmp_path / "grafana.token"
    token.write_text(TOKEN + "\n")
    basic = tmp_path / "grafana.basic"
    basic.write_text("admin:adm:in-pw\n")
    pw = tmp_path / "influx.password"
    pw.write_text(INFLUX_PASSWORD + "\n")
    return {"token": token, "basic": basic, "pw": pw, "dir": tmp_path}


def _config(files: dict[str, Path], influx_url: str = "http://influx.example:8086", extra: str = "") -> Path:
    cfg = files["dir"] / "pmaintd.toml"
    cfg.write_text(
        f"""[store]
kind = "influxdb"
url = "{influx_url}"
api = "v1"
database = "telegraf"
username = "grafana_reader"
password_file = "{files["pw"]}"
{extra}"""
    )
    return cfg


def _pmaintd(config: Path, *args: str, state_dir: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-c", "from pmaintd.cli import main; main()", "--config", str(config)]
    cmd += ["--state-dir", str(state_dir), "--log-level", "debug", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _provision(standin: GrafanaStandIn, files: dict[str, Path], *extra: str, config: Path | None = None) -> dict:
    cfg = config or _config(files)
    out = _pmaintd(
        cfg,
        "grafana",
        "provision",
        "--url",
        standin.url,
        "--token-file",
        str(files["token"]),
        "--json",
        *extra,
        state_dir=files["dir"] / "state",
    )
    assert out.returncode == 0, out.stderr
    assert TOKEN not in out.stdout + out.stderr and INFLUX_PASSWORD not in out.stdout + out.stderr
    return json.loads(out.stdout)


def _outcomes(result: dict) -> dict[tuple[str, str], str]:
    return {(c["kind"], c["uid"]): c["outcome"] for c in result["changes"]}


def test_first_run_creates_everything_second_run_changes_nothing(standin: GrafanaStandIn, files: dict) -> None:
    first = _outcomes(_provision(standin, files))
    assert first == {
        ("folder", "pmaintd"): "created",
        ("datasource", DATASOURCE_UID): "created",
        **{("dashboard", uid): "created" for uid in DASHBOARD_UIDS},
    }
    st = standin.state
    ds = st.datasources[DATASOURCE_UID]
    assert ds["type"] == "influxdb" and ds["url"] == "http://influx.example:8086" and ds["user"] == "grafana_reader"
    assert ds["jsonData"]["dbName"] == "telegraf" and ds["jsonData"]["version"] == "InfluxQL"
    assert st.secrets[DATASOURCE_UID] == {"password": INFLUX_PASSWORD}
    assert {uid: d["folderUid"] for uid, d in st.dashboards.items()} == dict.fromkeys(DASHBOARD_UIDS, "pmaintd")
    shipped = {d["uid"]: d for d in grafana.load_dashboards()}
    for uid, saved in st.dashboards.items():
        drop = ("id", "version")  # Grafana assigns these on save
        assert {k: v for k, v in saved["dashboard"].items() if k not in drop} == {
            k: v for k, v in shipped[uid].items() if k not in drop
        }
    assert all(r.headers.get("Authorization") == f"Bearer {TOKEN}" for r in st.requests)

    writes_before = len(st.writes())
    second = _outcomes(_provision(standin, files))
    assert set(second.values()) == {"unchanged"} and set(second) == set(first)
    assert len(st.writes()) == writes_before, [(r.method, r.path) for r in st.writes()[writes_before:]]


def test_dry_run_reads_but_never_writes(standin: GrafanaStandIn, files: dict) -> None:
    result = _provision(standin, files, "--dry-run")
    assert result["dry_run"] is True
    assert set(_outcomes(result).values()) == {"created"} and len(result["changes"]) == 2 + len(DASHBOARD_UIDS)
    assert standin.state.requests and not standin.state.writes()
    assert not standin.state.dashboards and not standin.state.folders


def test_only_what_differs_is_updated(standin: GrafanaStandIn, files: dict) -> None:
    _provision(standin, files)
    standin.state.dashboards["pmaintd-disks"]["dashboard"]["title"] = "edited in the UI"
    moved = _config(files, influx_url="http://influx2.example:8086")
    dry = _outcomes(_provision(standin, files, "--dry-run", config=moved))
    writes = len(standin.state.writes())
    real = _outcomes(_provision(standin, files, config=moved))
    assert dry == real
    changed = {k for k, v in real.items() if v != "unchanged"}
    assert changed == {("datasource", DATASOURCE_UID), ("dashboard", "pmaintd-disks")}
    assert all(v == "updated" for k, v in real.items() if k in changed)
    assert [(r.method, r.path) for r in standin.state.writes()[writes:]] == [
        ("PUT", f"/api/datasources/uid/{DATASOURCE_UID}"),
        ("POST", "/api/dashboards/db"),
    ]
    assert standin.state.datasources[DATASOURCE_UID]["url"] == "http://influx2.example:8086"
    assert standin.state.dashboards["pmaintd-disks"]["dashboard"]["title"] == "pmaintd / Disks"


def test_existing_folder_is_found_by_title_and_basic_auth_works(standin: GrafanaStandIn, files: dict) -> None:
    standin.state.folders["abc123"] = {"id": 99, "uid": "abc123", "title": "Ops Health", "version": 3}
    out = _pmaintd(
        _config(files),
        "grafana",
        "provision",
        "--url",
        standin.url,
        "--basic-auth-file",
        str(files["basic"]),
        "--folder",
        "Ops Health",
        state_dir=files["dir"] / "state",
    )
    assert out.returncode == 0, out.stderr
    assert "adm:in-pw" not in out.stdout + out.stderr
    assert "unchanged" in out.stdout and "created" in out.stdout  # human table: folder kept, the rest created
    assert set(standin.state.folders) == {"abc123"}
    assert {d["folderUid"] for d in standin.state.dashboards.values()} == {"abc123"}


def test_wrong_token_is_a_clear_error_without_the_token(standin: GrafanaStandIn, files: dict) -> None:
    bad = files["dir"] / "bad.token"
    bad.write_text("glsa_wrongTokenValue_0000\n")
    out = _pmaintd(
        _config(files),
        "grafana",
        "provision",
        "--url",
        standin.url,
        "--token-file",
        str(bad),
        state_dir=files["dir"] / "state",
    )
    assert out.returncode == 1
    assert "refused the credentials (401)" in out.stderr
    assert "glsa_wrongTokenValue_0000" not in out.stdout + out.stderr


def test_sqlite_store_is_refused_before_any_request(standin: GrafanaStandIn, files: dict) -> None:
    cfg = files["dir"] / "sqlite.toml"
    cfg.write_text('[store]\nkind = "sqlite"\n')
    out = _pmaintd(
        cfg,
        "grafana",
        "provision",
        "--url",
        standin.url,
        "--token-file",
        str(files["token"]),
        state_dir=files["dir"] / "state",
    )
    assert out.returncode == 1 and 'kind = "influxdb"' in out.stderr
    assert not standin.state.requests


def test_unreachable_grafana_is_a_clear_error(files: dict) -> None:
    srv = GrafanaStandIn(token=TOKEN)
    url = srv.url
    srv.stop()
    out = _pmaintd(
        _config(files),
        "grafana",
        "provision",
        "--url",
        url,
        "--token-file",
        str(files["token"]),
        state_dir=files["dir"],
    )
    assert out.returncode == 1 and f"cannot reach Grafana at {url}" in out.stderr
    assert TOKEN not in out.stdout + out.stderr


# ---------------------------------------------------------------- annotations


def _record(state: str = "succeeded", entity: str = "sw1/Gi0/1 <script>") -> dict[str, Any]:
    return {
        "id": 17,
        "kind": "network",
        "entity": entity,
        "policy": "link-drain",
        "action": "lb-drain",
        "state": state,
        "host": "sw1",
        "message": "drained",
        "probability": 0.82,
        "time": "2026-11-29T12:00:00.000000Z",
    }


def _gcfg(url: str, files: dict, **kw: Any) -> GrafanaConfig:
    return GrafanaConfig(url=url, token_file=files["token"], timeout=2.0, **kw)


def test_annotation_is_posted_with_kind_entity_action_state_tags(standin: GrafanaStandIn, files: dict) -> None:
    cfg = _gcfg(standin.url, files, dashboard_uid="pmaintd-actions")
    assert grafana.annotate_action(cfg, _record()) is True
    (ann,) = standin.state.annotations
    assert ann["tags"] == ["pmaintd", "kind:network", "entity:sw1/Gi0/1 <script>", "action:lb-drain", "state:succeeded"]
    assert ann["time"] == 1795953600000 and ann["dashboardUID"] == "pmaintd-actions"
    assert "<script>" not in ann["text"] and "&lt;script&gt;" in ann["text"]
    (post,) = [r for r in standin.state.requests if r.path == "/api/annotations"]
    assert post.method == "POST" and post.headers["Authorization"] == f"Bearer {TOKEN}"


def test_annotation_without_grafana_configured_is_a_no_op() -> None:
    assert grafana.annotator(GrafanaConfig()) is None
    assert grafana.annotate_action(GrafanaConfig(), _record()) is False


def test_grafana_down_never_raises_and_logs_once(files: dict, caplog: pytest.LogCaptureFixture) -> None:
    srv = GrafanaStandIn(token=TOKEN)
    url = srv.url
    srv.stop()
    annotate = grafana.Annotator(_gcfg(url, files))
    caplog.set_level(logging.DEBUG, logger="pmaintd.grafana")
    assert [annotate(_record(state=s)) for s in ("proposed", "auto", "running")] == [False, False, False]
    warnings = [r for r in caplog.records if r.name == "pmaintd.grafana" and r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "cannot annotate" in warnings[0].getMessage()
    assert TOKEN not in caplog.text


def test_annotations_recover_when_grafana_comes_back(standin: GrafanaStandIn, files: dict, caplog) -> None:
    annotate = grafana.Annotator(_gcfg(standin.url, files))
    standin.state.token = "rotated-token"  # Grafana refuses (401) until the token file holds the new token
    caplog.set_level(logging.INFO, logger="pmaintd.grafana")
    assert annotate(_record()) is False and annotate(_record()) is False
    files["token"].write_text("rotated-token\n")
    assert annotate(_record()) is True
    messages = [r.getMessage() for r in caplog.records if r.name == "pmaintd.grafana"]
    assert len(messages) == 2 and "401" in messages[0] and "work again" in messages[1]
    assert len(standin.state.annotations) == 1


def test_action_audit_annotates_through_grafana(standin: GrafanaStandIn, files: dict, tmp_path: Path) -> None:
    """The action engine's auditor, given `annotator([grafana])`, annotates every transition."""
    from pmaintd.act.audit import Auditor

    auditor = Auditor(tmp_path / "audit.jsonl", annotate=grafana.annotator(_gcfg(standin.url, files)))
    for state in ("proposed", "approved", "running", "succeeded"):
        auditor.record({k: v for k, v in _record(state=state).items() if k != "time"})
    assert [a["tags"][-1] for a in standin.state.annotations] == [
        "state:proposed",
        "state:approved",
        "state:running",
        "state:succeeded",
    ]


def test_actions_evaluate_annotates_every_step_when_grafana_is_configured(
    standin: GrafanaStandIn, files: dict, tmp_path: Path
) -> None:
    """`pmaintd actions evaluate` (the CLI wiring) with [grafana] set: each transition becomes an annotation."""
    marker = tmp_path / "drained"
    cfg = tmp_path / "actions.toml"
    cfg.write_text(
        f"""[grafana]
url = "{standin.url}"
token_file = "{files["token"]}"
dashboard_uid = "pmaintd-actions"

[actions.drain]
run_on = "local"
command = "touch {marker}"

[[policies]]
name = "drain-hosts"
kind = "host"
min_probability = 0.5
action = "drain"
mode = "auto"

[limits]
max_fleet_fraction = 1.0
"""
    )
    forecasts = tmp_path / "forecasts.jsonl"
    forecasts.write_text(
        json.dumps({"kind": "host", "entity": "db-01", "probability": 0.9, "horizon_hours": 24}) + "\n"
    )
    out = _pmaintd(cfg, "actions", "evaluate", "--forecasts", str(forecasts), "--json", state_dir=tmp_path / "state")
    assert out.returncode == 0, out.stderr
    assert marker.exists() and TOKEN not in out.stdout + out.stderr
    states = [a["tags"][-1] for a in standin.state.annotations]
    assert states == ["state:proposed", "state:auto", "state:running", "state:succeeded"]
    assert {a["dashboardUID"] for a in standin.state.annotations} == {"pmaintd-actions"}
    assert all("entity:db-01" in a["tags"] and "kind:host" in a["tags"] for a in standin.state.annotations)


def test_datasource_for_influxdb_2_and_3_sends_the_token_as_a_header(tmp_path: Path) -> None:
    from pmaintd.config import StoreConfig

    token = tmp_path / "influx.token"
    token.write_text("influx-token-123\n")
    for api in ("v2", "v3"):
        store = StoreConfig(kind="influxdb", url="http://influx:8086", api=api, database="pm", token_file=token)
        ds = grafana.datasource_payload(store, "https://influx.example")
        assert ds["url"] == "https://influx.example" and ds["jsonData"]["dbName"] == "pm"
        assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
        assert ds["secureJsonData"] == {"httpHeaderValue1": "Token influx-token-123"}
    with pytest.raises(grafana.GrafanaError, match="expected http"):
        grafana.datasource_payload(store, "influx:8086")


def test_datasource_url_override_and_push_secrets(standin: GrafanaStandIn, files: dict) -> None:
    _provision(standin, files, "--datasource-url", "http://10.0.0.5:8086")
    assert standin.state.datasources[DATASOURCE_UID]["url"] == "http://10.0.0.5:8086"
    files["pw"].write_text("rotated-password\n")  # Grafana never returns secrets: a rotation alone is invisible
    again = _outcomes(_provision(standin, files, "--datasource-url", "http://10.0.0.5:8086"))
    assert again[("datasource", DATASOURCE_UID)] == "unchanged"
    pushed = _outcomes(_provision(standin, files, "--datasource-url", "http://10.0.0.5:8086", "--push-secrets"))
    assert pushed[("datasource", DATASOURCE_UID)] == "updated"
    assert standin.state.secrets[DATASOURCE_UID] == {"password": "rotated-password"}


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"url": "http://g:3000"}, "grafana.token_file: None is not allowed: token_file or basic_auth_file"),
        ({"url": "http://admin:pw@g:3000", "token_file": "TOKEN"}, "grafana.url: 'http://admin:pw@g:3000'"),
        ({"url": "http://g:3000", "token_file": "TOKEN", "basic_auth_file": "TOKEN"}, "only one of token_file"),
        ({"url": "http://g:3000", "token_file": "/nonexistent/token"}, "grafana.token_file: '/nonexistent/token'"),
    ],
)
def test_grafana_config_errors_name_the_key(files: dict, section: dict, message: str) -> None:
    from pmaintd.config import ConfigError, validate

    section = {k: str(files["token"]) if v == "TOKEN" else v for k, v in section.items()}
    with pytest.raises(ConfigError) as err:
        validate({"grafana": section})
    assert message in str(err.value)


def test_daemon_forecast_job_annotates_actions(standin: GrafanaStandIn, files: dict, tmp_path: Path) -> None:
    """The daemon's forecast job builds its action engine with the [grafana] annotator."""
    from pmaintd.act.policy import Forecast
    from pmaintd.config import validate
    from pmaintd.forecasting import ForecastJob
    from pmaintd.store import open_store

    cfg = validate(
        {
            "grafana": {"url": standin.url, "token_file": str(files["token"])},
            "actions": {"drain": {"run_on": "local", "command": f"touch {tmp_path / 'done'}"}},
            "policies": [{"name": "p", "kind": "host", "min_probability": 0.5, "action": "drain", "mode": "observe"}],
        }
    )
    store = open_store(cfg.store, tmp_path)
    job = ForecastJob(cfg, tmp_path, store, models=None)  # type: ignore[arg-type]
    try:
        assert job.engine is not None
        job.engine.run_once([Forecast("host", "web-02", 0.9, 24.0)])
    finally:
        job.close()
        store.close()
    assert [a["tags"][-1] for a in standin.state.annotations] == ["state:proposed", "state:observed"]
    assert not (tmp_path / "done").exists()  # observe mode: recorded and annotated, nothing run
