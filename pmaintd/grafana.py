"""Grafana through its HTTP API (grafana-client): provisioning of folder, datasource and dashboards, and
annotations for actions.

Provisioning is an idempotent upsert keyed by uid: it reads what Grafana has, compares it with what pmaintd
ships, and writes only what differs, so running it twice changes nothing the second time and `--dry-run`
can say exactly what a run would do. The datasource is built from `[store]`, with credentials read from
their files at the moment they are sent; no secret is ever logged or printed.

Annotations are best effort by design: an action must never wait long for, or fail because of, Grafana.
A failure is logged once, and once more when Grafana works again.

grafana-client is an optional dependency (`pmaintd[grafana]`): it pulls in urllib3-future, whose wheel
replaces urllib3 in site-packages and breaks influxdb-client, so it is installed with
`URLLIB3_NO_OVERRIDE=1 pip install --no-binary urllib3-future 'pmaintd[grafana]'` (see README).
"""

from __future__ import annotations

import html
import json
import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pmaintd.config import GrafanaConfig, StoreConfig, read_secret
from pmaintd.grafana_dashboards import DATASOURCE_UID, TAG
from pmaintd.resources import shipped_path
from pmaintd.telemetry import now_ns, parse_time

log = logging.getLogger(__name__)

DATASOURCE_NAME = "pmaintd"
PROVISION_MESSAGE = "pmaintd grafana provision"
Credential = str | tuple[str, str]


class GrafanaError(Exception):
    """Grafana could not be reached or refused a request; the message names the URL and step, never a secret."""


@dataclass(frozen=True)
class Change:
    """One object provisioning looked at, and what happened (or, with --dry-run, would happen) to it."""

    kind: str  # folder | datasource | dashboard
    uid: str
    title: str
    outcome: str  # created | updated | unchanged

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def read_credential(token_file: Path | None = None, basic_auth_file: Path | None = None) -> Credential:
    """A token, or (user, password) from a `user:password` file; a clear error for a malformed file."""
    if token_file is not None:
        token = read_secret(token_file) or ""
        if not token.strip():
            raise GrafanaError(f"token file {token_file} is empty")
        return token.strip()
    if basic_auth_file is not None:
        text = read_secret(basic_auth_file) or ""
        user, sep, password = text.partition(":")
        if not sep or not user:
            raise GrafanaError(f"basic auth file {basic_auth_file} must hold one line `user:password`")
        return (user, password)
    raise GrafanaError("no Grafana credentials: give --token-file or --basic-auth-file (or set [grafana])")


def connect(url: str, credential: Credential, timeout: float) -> Any:
    """A grafana-client GrafanaApi for url; GrafanaError when grafana-client is not installed."""
    if re.match(r"^https?://[^/]*@", url):
        raise GrafanaError("put Grafana credentials in a token or basic-auth file, not in the URL")
    try:
        from grafana_client import GrafanaApi
    except ImportError:
        raise GrafanaError(
            "grafana-client is not installed: URLLIB3_NO_OVERRIDE=1 pip install --no-binary urllib3-future "
            "'pmaintd[grafana]'"
        ) from None
    return GrafanaApi.from_url(url, credential=credential, timeout=timeout)


def load_dashboards(directory: Path | None = None) -> list[dict[str, Any]]:
    """The shipped dashboard JSON files (the same ones Grafana's file provider reads), sorted by file name."""
    folder = directory or shipped_path("grafana", "dashboards")
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]


def datasource_payload(store: StoreConfig, url: str | None = None) -> dict[str, Any]:
    """The datasource every dashboard uses (fixed uid), pointed at the InfluxDB in `[store]` (or at `url`,
    the same server as Grafana reaches it, when that differs from pmaintd's view, e.g. 127.0.0.1).

    1.x authenticates with user/password; 2.x and 3.x with `Authorization: Token ...` and InfluxQL through
    the database name (a DBRP mapping on 2.x). Secrets go only into `secureJsonData`, which Grafana never
    returns."""
    if store.kind != "influxdb" or not store.url:
        raise GrafanaError('the dashboards query InfluxDB: set [store] kind = "influxdb" and url first')
    if url is not None and not re.match(r"^https?://[^/\s@]+", url):
        raise GrafanaError(f"datasource URL {url!r}: expected http(s)://HOST:PORT, without credentials in it")
    json_data: dict[str, Any] = {
        "version": "InfluxQL",
        "dbName": store.database,
        "httpMode": "POST",
        "timeInterval": "60s",
    }
    payload: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": DATASOURCE_NAME,
        "type": "influxdb",
        "access": "proxy",
        "url": url or store.url,
        "basicAuth": False,
        "isDefault": False,
        "user": "",
        "jsonData": json_data,
    }
    secure: dict[str, str] = {}
    if store.api == "v1":
        if store.username:
            payload["user"] = store.username
        if store.password_file:
            secure["password"] = read_secret(store.password_file) or ""
    elif store.token_file:
        json_data["httpHeaderName1"] = "Authorization"
        secure["httpHeaderValue1"] = f"Token {read_secret(store.token_file)}"
    if secure:
        payload["secureJsonData"] = secure
    return payload


def _folder_uid(title: str) -> str:
    """A stable uid for a folder pmaintd creates: `pmaintd` for the default, else pmaintd-<slug> (<= 40 chars)."""
    if title == "pmaintd":
        return "pmaintd"
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return ("pmaintd-" + slug)[:40].rstrip("-") or "pmaintd"


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "status_code", None) == 404


class _Step:
    """Turns grafana-client exceptions into GrafanaError naming the step, without request details."""

    def __init__(self, url: str, what: str) -> None:
        self.url, self.what = url, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, exc: BaseException | None, tb: object) -> bool:
        if exc is None or isinstance(exc, GrafanaError):
            return False
        status = getattr(exc, "status_code", None)
        if status == 401:
            raise GrafanaError(f"Grafana at {self.url} refused the credentials (401) while {self.what}") from None
        if status == 403:
            raise GrafanaError(f"Grafana at {self.url}: permission denied (403) while {self.what}") from None
        if status:
            msg = getattr(exc, "message", "") or type(exc).__name__
            raise GrafanaError(f"Grafana at {self.url} answered {status} while {self.what}: {msg}") from None
        raise GrafanaError(f"cannot reach Grafana at {self.url} while {self.what}: {type(exc).__name__}") from None


class Provisioner:
    """Idempotent upsert of pmaintd's folder, datasource and dashboards. `dry_run` reads but never writes."""

    def __init__(self, api: Any, url: str, dry_run: bool = False, push_secrets: bool = False) -> None:
        self.api, self.url, self.dry_run, self.push_secrets = api, url, dry_run, push_secrets

    def _step(self, what: str) -> _Step:
        return _Step(self.url, what)

    def folder(self, title: str) -> tuple[str, Change]:
        """Find the folder by title (search), else by pmaintd's uid for it (renamed), else create it."""
        with self._step(f"searching for folder {title!r}"):
            hits = self.api.search.search_dashboards(query=title, type_="dash-folder")
        for hit in hits or []:
            if hit.get("title") == title and hit.get("uid"):
                return hit["uid"], Change("folder", hit["uid"], title, "unchanged")
        uid = _folder_uid(title)
        with self._step(f"reading folder {uid}"):
            try:
                existing = self.api.folder.get_folder(uid)
            except Exception as exc:
                if not _is_not_found(exc):
                    raise
                existing = None
        if existing is None:
            if not self.dry_run:
                with self._step(f"creating folder {title!r}"):
                    self.api.folder.create_folder(title, uid=uid)
            return uid, Change("folder", uid, title, "created")
        if not self.dry_run:
            with self._step(f"renaming folder {uid} to {title!r}"):
                self.api.folder.update_folder(uid, title=title, version=existing.get("version"), overwrite=True)
        return uid, Change("folder", uid, title, "updated")

    def datasource(self, payload: dict[str, Any]) -> Change:
        uid = payload["uid"]
        with self._step(f"reading datasource {uid}"):
            try:
                current = self.api.datasource.get_datasource_by_uid(uid)
            except Exception as exc:
                if not _is_not_found(exc):
                    raise
                current = None
        if current is None:
            if not self.dry_run:
                with self._step(f"creating datasource {uid}"):
                    self.api.datasource.create_datasource(payload)
            return Change("datasource", uid, payload["name"], "created")
        if not self.push_secrets and _datasource_matches(current, payload):
            return Change("datasource", uid, payload["name"], "unchanged")
        if not self.dry_run:
            with self._step(f"updating datasource {uid}"):
                self.api.datasource.update_datasource_by_uid(uid, payload)
        return Change("datasource", uid, payload["name"], "updated")

    def dashboard(self, dashboard: dict[str, Any], folder_uid: str) -> Change:
        uid, title = dashboard["uid"], dashboard.get("title", dashboard["uid"])
        with self._step(f"reading dashboard {uid}"):
            try:
                current = self.api.dashboard.get_dashboard(uid)
            except Exception as exc:
                if not _is_not_found(exc):
                    raise
                current = None
        if current is not None:
            same_folder = (current.get("meta") or {}).get("folderUid") == folder_uid
            if same_folder and _comparable(current.get("dashboard") or {}) == _comparable(dashboard):
                return Change("dashboard", uid, title, "unchanged")
        if not self.dry_run:
            body = {
                "dashboard": {**dashboard, "id": None},
                "folderUid": folder_uid,
                "overwrite": True,
                "message": PROVISION_MESSAGE,
            }
            with self._step(f"saving dashboard {uid}"):
                self.api.dashboard.update_dashboard(body)
        return Change("dashboard", uid, title, "created" if current is None else "updated")

    def run(
        self,
        store: StoreConfig,
        folder_title: str,
        dashboards: list[dict[str, Any]],
        datasource_url: str | None = None,
    ) -> list[Change]:
        # Built before any request: a bad [store] fails without touching Grafana.
        payload = datasource_payload(store, datasource_url)
        folder_uid, folder_change = self.folder(folder_title)
        changes = [folder_change, self.datasource(payload)]
        changes += [self.dashboard(d, folder_uid) for d in dashboards]
        return changes


def _comparable(dashboard: Mapping[str, Any]) -> dict[str, Any]:
    """A dashboard without the fields Grafana assigns on save (database id, version)."""
    return {k: v for k, v in dashboard.items() if k not in ("id", "version")}


def _datasource_matches(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """Everything pmaintd sets is equal, and every secret it sets is present (Grafana never returns secrets,
    so a changed secret alone is pushed with --push-secrets)."""
    for key in ("name", "type", "access", "url", "basicAuth", "user"):
        if (current.get(key) or "") != (desired.get(key) or ""):
            return False
    have, want = current.get("jsonData") or {}, desired.get("jsonData") or {}
    if any(have.get(k) != v for k, v in want.items()):
        return False
    if "httpHeaderName1" in have and "httpHeaderName1" not in want:
        return False
    secure_set = current.get("secureJsonFields") or {}
    return all(secure_set.get(k) for k in desired.get("secureJsonData") or {})


def provision(
    url: str,
    credential: Credential,
    store: StoreConfig,
    folder: str = "pmaintd",
    *,
    dry_run: bool = False,
    push_secrets: bool = False,
    timeout: float = 10.0,
    datasource_url: str | None = None,
    dashboards: list[dict[str, Any]] | None = None,
) -> list[Change]:
    """Upsert folder, datasource and every shipped dashboard into the Grafana at url; returns what changed."""
    api = connect(url, credential, timeout)
    return Provisioner(api, url, dry_run=dry_run, push_secrets=push_secrets).run(
        store, folder, dashboards if dashboards is not None else load_dashboards(), datasource_url
    )


# ---------------------------------------------------------------- annotations

ActionRecord = Mapping[str, Any]
"""An action transition as pmaintd's action engine records it: `id`, `kind`, `entity`, `action`, `state`,
optionally `policy`, `host`, `message`, `probability` and `time` (RFC 3339, else now)."""


def annotation_payload(record: ActionRecord, dashboard_uid: str | None = None) -> dict[str, Any]:
    """What POST /api/annotations receives for one action transition. Tags are `pmaintd` plus `key:value`
    for kind, entity, action and state, so Grafana can filter on any of them. Device-supplied names are
    HTML-escaped: annotation text is rendered as HTML."""
    t = record.get("time")
    time_ms = (parse_time(t) if isinstance(t, str) and t else now_ns()) // 1_000_000
    tags = [TAG] + [f"{k}:{record.get(k, '')}" for k in ("kind", "entity", "action", "state")]
    get = {k: record.get(k, "") for k in ("action", "state", "entity", "kind")}
    lines = [f"{get['action']} {get['state']}: {get['entity']} ({get['kind']})"]
    if record.get("policy"):
        lines.append(f"policy {record['policy']}, action #{record.get('id', '')}")
    if record.get("probability") is not None:
        lines.append(f"forecast probability {float(record['probability']):.2f}")
    if record.get("message"):
        lines.append(str(record["message"]))
    payload: dict[str, Any] = {"time": time_ms, "tags": tags, "text": "<br>".join(html.escape(str(x)) for x in lines)}
    if dashboard_uid:
        payload["dashboardUID"] = dashboard_uid
    return payload


class Annotator:
    """Posts one annotation per action transition. Callable with the transition record (the shape the action
    audit log records); returns True when Grafana took it. Never raises: a failure is logged once, and
    recovery once, so a Grafana outage does not flood the journal or touch the action."""

    def __init__(self, cfg: GrafanaConfig) -> None:
        if not cfg.url:
            raise ValueError("[grafana] url is not set")
        self.cfg = cfg
        self._api: Any = None
        self._failing = False
        self._lock = threading.Lock()

    def __call__(self, record: ActionRecord) -> bool:
        with self._lock:
            try:
                if self._api is None:
                    credential = read_credential(self.cfg.token_file, self.cfg.basic_auth_file)
                    self._api = connect(self.cfg.url or "", credential, self.cfg.timeout)
                with _Step(self.cfg.url or "", f"annotating action {record.get('id', '')}"):
                    self._api.client.POST("/annotations", json=annotation_payload(record, self.cfg.dashboard_uid))
            except Exception as exc:
                self._api = None  # reconnect next time, re-reading the credential (it may have been rotated)
                if not self._failing:
                    log.warning("cannot annotate actions in Grafana (not repeated until it works again): %s", exc)
                    self._failing = True
                return False
            if self._failing:
                log.info("Grafana annotations for actions work again")
                self._failing = False
            return True


_annotators: dict[GrafanaConfig, Annotator] = {}
_annotators_lock = threading.Lock()


def annotator(cfg: GrafanaConfig) -> Annotator | None:
    """The Annotator for `[grafana]`, or None when Grafana is not configured (no url)."""
    if not cfg.url:
        return None
    with _annotators_lock:
        if cfg not in _annotators:
            _annotators[cfg] = Annotator(cfg)
        return _annotators[cfg]


def annotate_action(cfg: GrafanaConfig, action_event: ActionRecord) -> bool:
    """Annotate one action transition in Grafana when `[grafana]` is configured; False when it is not, or
    when Grafana did not take it (logged once). Never raises, never blocks longer than `[grafana] timeout`
    per attempt."""
    a = annotator(cfg)
    return a(action_event) if a is not None else False
