"""A loopback HTTP shim that lets influxdb-client's v2 write path reach a real InfluxDB 1.x.

InfluxDB 1.6 has no /api/v2/write, and no 2.x server can be installed here (see TESTING.md). The shim
maps `POST /api/v2/write?bucket=B&precision=P` to `/write?db=B&precision=P'` (us -> u, since 1.x reads
an unknown `us` as ns), passes `/query` through, checks the `Authorization: Token` header, and records
each request so a test can assert what the client sent. Everything else about the data path is real.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_PRECISION = {"ns": "ns", "us": "u", "ms": "ms", "s": "s"}


@dataclass
class Seen:
    path: str
    query: dict[str, str]
    encoding: str | None
    authorization: str | None


@dataclass
class V2Shim:
    upstream: str
    token: str
    seen: list[Seen] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> V2Shim:
        shim = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                parts = urllib.parse.urlsplit(self.path)
                q = dict(urllib.parse.parse_qsl(parts.query))
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                auth = self.headers.get("Authorization")
                shim.seen.append(Seen(parts.path, q, self.headers.get("Content-Encoding"), auth))
                if auth != f"Token {shim.token}":
                    return self._reply(401, b'{"code":"unauthorized","message":"unauthorized access"}')
                headers = {"Content-Type": self.headers.get("Content-Type") or "text/plain"}
                if self.headers.get("Content-Encoding"):
                    headers["Content-Encoding"] = self.headers["Content-Encoding"]
                if parts.path == "/api/v2/write":
                    params = {"db": q["bucket"], "precision": _PRECISION[q.get("precision", "ns")]}
                    url = f"{shim.upstream}/write?{urllib.parse.urlencode(params)}"
                elif parts.path == "/query":
                    url = f"{shim.upstream}/query?{parts.query}"
                else:
                    return self._reply(404, b'{"message":"not found"}')
                req = urllib.request.Request(url, data=body, headers=headers, method="POST")
                try:
                    with urllib.request.urlopen(req, timeout=10) as r:
                        self._reply(r.status, r.read())
                except urllib.error.HTTPError as exc:
                    self._reply(exc.code, exc.read())
                except OSError:
                    self._reply(503, b'{"message":"upstream unavailable"}')

            def _reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
