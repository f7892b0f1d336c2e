"""Tiny real HTTP servers (stdlib http.server in threads) that answer with their own name, as load-balancer
backends: a request that reaches one is counted, so a test can see where HAProxy sent traffic."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Backend:
    name: str
    server: ThreadingHTTPServer
    thread: threading.Thread
    hits: list[int] = field(default_factory=lambda: [0])

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def count(self) -> int:
        return self.hits[0]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def start_backends(names: list[str]) -> list[Backend]:
    out = []
    for name in names:
        hits = [0]
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self, name: str = name, hits: list[int] = hits, lock: threading.Lock = lock) -> None:
                with lock:
                    hits[0] += 1
                body = name.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        out.append(Backend(name, srv, t, hits))
    return out
