"""A stand-in for Grafana's HTTP API, because no Grafana server can be installed on these machines.

It answers the endpoints pmaintd uses the way Grafana 10/11 does (status codes, error bodies, what GET returns:
ids and versions assigned on save, `secureJsonFields` instead of secrets, `meta.folderUid`), keeps what it is
sent in memory, checks the credentials on every request, and records every request so tests can assert which
writes happened.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: Any


@dataclass
class GrafanaState:
    token: str | None = None
    basic: tuple[str, str] | None = None
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    annotations: list[dict[str, Any]] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        st = self.server.state
        auth = self.headers.get("Authorization", "")
        if st.token is not None and auth == f"Bearer {st.token}":
            return True
        if st.basic is not None and auth.startswith("Basic "):
            user, _, pw = base64.b64decode(auth[6:]).decode().partition(":")
            return (user, pw) == st.basic
        return False

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        st = self.server.state
        with self.server.lock:
            st.requests.append(Request(method, url.path, parse_qs(url.query), dict(self.headers), body))
            if not self._authorized():
                return self._reply(401, {"message": "Unauthorized"})
            status, answer = self._route(method, url.path, parse_qs(url.query), body)
        self._reply(status, answer)

    def _route(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        st = self.server.state
        parts = path.strip("/").split("/")
        if parts[:1] != ["api"]:
            return 404, {"message": "Not found"}
        p = parts[1:]
        if p == ["health"] and method == "GET":
            return 200, {"database": "ok", "version": "11.3.0"}
        if p == ["search"] and method == "GET":
            q = (query.get("query") or [""])[0].lower()
            if (query.get("type") or [""])[0] != "dash-folder":
                return 400, {"message": "stand-in only searches folders"}
            return 200, [
                {"id": f["id"], "uid": f["uid"], "title": f["title"], "type": "dash-folder"}
                for f in st.folders.values()
                if q in f["title"].lower()
            ]
        if p[:1] == ["folders"]:
            return self._folders(method, p[1:], body)
        if p[:2] == ["datasources", "uid"] and len(p) == 3:
            return self._datasource(method, p[2], body)
        if p == ["datasources"] and method == "POST":
            return self._datasource_create(body)
        if p[:2] == ["dashboards", "uid"] and len(p) == 3 and method == "GET":
            d = st.dashboards.get(p[2])
            if d is None:
                return 404, {"message": "Dashboard not found"}
            return 200, {
                "dashboard": copy.deepcopy(d["dashboard"]),
                "meta": {"folderUid": d["folderUid"], "version": d["dashboard"]["version"]},
            }
        if p == ["dashboards", "db"] and method == "POST":
            return self._dashboard_save(body)
        if p == ["annotations"] and method == "POST":
            if not isinstance(body.get("time"), int) or not body.get("text"):
                return 400, {"message": "bad annotation"}
            ann = {**body, "id": st.new_id()}
            st.annotations.append(ann)
            return 200, {"message": "Annotation added", "id": ann["id"]}
        return 404, {"message": "Not found"}

    def _folders(self, method: str, rest: list[str], body: Any) -> tuple[int, Any]:
        st = self.server.state
        if not rest and method == "POST":
            uid = body.get("uid") or f"f{st.new_id()}"
            if uid in st.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            if any(f["title"] == body["title"] for f in st.folders.values()):
                return 409, {"message": "a folder or dashboard in the general folder with the same name already exists"}
            st.folders[uid] = {"id": st.new_id(), "uid": uid, "title": body["title"], "version": 1}
            return 200, st.folders[uid]
        if len(rest) == 1:
            f = st.folders.get(rest[0])
            if f is None:
                return 404, {"message": "folder not found"}
            if method == "GET":
                return 200, f
            if method == "PUT":
                if body.get("version") != f["version"] and not body.get("overwrite"):
                    return 412, {"message": "the folder has been changed by someone else"}
                f["title"] = body["title"]
                f["version"] += 1
                return 200, f
        return 405, {"message": "method not allowed"}

    def _public_ds(self, uid: str) -> dict[str, Any]:
        st = self.server.state
        ds = copy.deepcopy(st.datasources[uid])
        ds["secureJsonFields"] = dict.fromkeys(st.secrets.get(uid, {}), True)
        return ds

    def _datasource(self, method: str, uid: str, body: Any) -> tuple[int, Any]:
        st = self.server.state
        if uid not in st.datasources:
            return 404, {"message": "Data source not found"}
        if method == "GET":
            return 200, self._public_ds(uid)
        if method == "PUT":
            current = st.datasources[uid]
            secure = body.pop("secureJsonData", None) or {}
            body.pop("secureJsonFields", None)
            current.update({k: v for k, v in body.items() if k not in ("id", "orgId")})
            current["version"] += 1
            st.secrets.setdefault(uid, {}).update(secure)
            return 200, {
                "datasource": self._public_ds(uid),
                "id": current["id"],
                "message": "Datasource updated",
                "name": current["name"],
            }
        return 405, {"message": "method not allowed"}

    def _datasource_create(self, body: Any) -> tuple[int, Any]:
        st = self.server.state
        if any(d["name"] == body["name"] for d in st.datasources.values()):
            return 409, {"message": "data source with the same name already exists"}
        uid = body.get("uid") or f"ds{st.new_id()}"
        secure = body.pop("secureJsonData", None) or {}
        st.datasources[uid] = {**body, "uid": uid, "id": st.new_id(), "orgId": 1, "version": 1, "readOnly": False}
        st.secrets[uid] = dict(secure)
        return 200, {
            "datasource": self._public_ds(uid),
            "id": st.datasources[uid]["id"],
            "message": "Datasource added",
            "name": body["name"],
        }

    def _dashboard_save(self, body: Any) -> tuple[int, Any]:
        st = self.server.state
        dash = copy.deepcopy(body["dashboard"])
        folder = body.get("folderUid") or ""
        if folder and folder not in st.folders:
            return 400, {"message": "folder not found", "status": "folder-not-found"}
        uid = dash.get("uid") or f"d{st.new_id()}"
        current = st.dashboards.get(uid)
        if current is not None and not body.get("overwrite") and dash.get("version") != current["dashboard"]["version"]:
            return 412, {"message": "The dashboard has been changed by someone else", "status": "version-mismatch"}
        dash["uid"] = uid
        dash["id"] = current["dashboard"]["id"] if current else st.new_id()
        dash["version"] = (current["dashboard"]["version"] + 1) if current else 1
        st.dashboards[uid] = {"dashboard": dash, "folderUid": folder, "message": body.get("message")}
        return 200, {
            "id": dash["id"],
            "uid": uid,
            "url": f"/d/{uid}/x",
            "status": "success",
            "version": dash["version"],
            "slug": "x",
        }

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, state: GrafanaState) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = state
        self.lock = threading.Lock()


class GrafanaStandIn:
    """Start on a free loopback port; `url`, `state`; stop() shuts it down."""

    def __init__(self, token: str | None = None, basic: tuple[str, str] | None = None) -> None:
        self.state = GrafanaState(token=token, basic=basic)
        self._server = _Server(self.state)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
