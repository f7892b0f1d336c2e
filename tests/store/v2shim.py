"""A loopback HTTP shim in front of a real InfluxDB 1.x: the v2 write path, and a recording proxy.

InfluxDB 1.6 has no /api/v2/write, and no 2.x server can be installed here (see TESTING.md). The shim
maps `POST /api/v2/write?bucket=B&precision=P` to `/write?db=B&precision=P'` (us -> u, since 1.x reads
an unknown `us` as ns), passes `/write` and `/query` through, checks the `Authorization: Token` header
(when a token is given), and records each request (with its line-protocol lines and the upstream's
answer) so a test can assert what was sent and acknowledged. When the upstream is down it answers 503,
as a load balancer in front of InfluxDB would. Everything else about the data path is real.
"""

from __future__ import annotations

import gzip
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
    lines: list[bytes]
    status: int = 0


@dataclass
class V2Shim:
    upstream: str
    token: str | None
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
                raw = gzip.decompress(body) if self.headers.get("Content-Encoding") == "gzip" else body
                self.seen = Seen(parts.path, q, self.headers.get("Content-Encoding"), auth, raw.splitlines())
                shim.seen.append(self.seen)
                if shim.token is not None and auth != f"Token {shim.token}":
                    return self._reply(401, b'{"code":"unauthorized","message":"unauthorized access"}')
                headers = {"Content-Type": self.headers.get("Content-Type") or "text/plain"}
                if self.headers.get("Content-Encoding"):
                    headers["Content-Encoding"] = self.headers["Content-Encoding"]
                if parts.path == "/api/v2/write":
                    params = {"db": q["bucket"], "precision": _PRECISION[q.get("precision", "ns")]}
                    url = f"{shim.upstream}/write?{urllib.parse.urlencode(params)}"
                elif parts.path == "/write":
                    url = f"{shim.upstream}/write?{parts.query}"
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
                self.seen.status = status
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def acknowledged_lines(self) -> list[bytes]:
        """Every line-protocol line of a write the upstream answered 2xx, in arrival order."""
        return [ln for s in self.seen if s.path != "/query" and 200 <= s.status < 300 for ln in s.lines]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
