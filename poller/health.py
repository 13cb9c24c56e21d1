"""The daemon's listener: Prometheus text at `/metrics`, and two questions a supervisor or a
load balancer asks without parsing metrics.

- `/healthz`: the process answers (200).
- `/readyz`: 200 when the state database answers, every server was reached within three
  of its poll intervals, and SEI accepted a payload since the oldest pending one was
  enqueued (or nothing waits long); else 503 with JSON that says who is behind and since
  when. A server is *reached* when its discovery succeeded: a parked build or a failing
  job is reported by its own gauges and alerts, not by readiness.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

# A payload may wait this long for its first try before SEI counts as behind (seconds).
PENDING_GRACE = 300.0


class Readiness:
    """What `/readyz` judges from: this process's polls and deliveries, and the state."""

    def __init__(self, state: Any, intervals: dict[str, float]) -> None:
        self.state = state
        self.intervals = dict(intervals)
        self.started = time.time()
        self._lock = threading.Lock()
        self._reached: dict[str, float] = {}
        self._accepted: float | None = None

    def polled(self, server: str, reached: bool) -> None:
        if reached:
            with self._lock:
                self._reached[server] = time.time()

    def accepted(self) -> None:
        with self._lock:
            self._accepted = time.time()

    def __call__(self) -> tuple[bool, dict[str, Any]]:
        now = time.time()
        behind: list[dict[str, Any]] = []
        try:
            oldest = self.state.oldest_pending_at()
        except Exception as exc:  # a state database that cannot answer is the first thing
            return False, {"ready": False, "behind": [{"state": f"{type(exc).__name__}"}]}
        with self._lock:
            reached, accepted = dict(self._reached), self._accepted
        for server, interval in sorted(self.intervals.items()):
            last = reached.get(server)
            if now - (last or self.started) > 3 * interval:
                behind.append({"server": server, "since": _iso(last), "reached": last})
        grace = max(PENDING_GRACE, *self.intervals.values())
        waiting = oldest is not None and now - oldest > grace
        if waiting and (accepted is None or accepted < (oldest or 0)):
            behind.append({"sei": "nothing accepted", "since": _iso(oldest)})
        return not behind, {"ready": not behind, "behind": behind}


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


class HealthServer:
    def __init__(
        self, host: str, port: int, registry: CollectorRegistry, readiness: Readiness | None
    ) -> None:
        self.registry, self.readiness = registry, readiness
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: HealthServer


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not news."""

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(owner.registry))
        elif path == "/healthz":
            self._send(200, "text/plain; charset=utf-8", b"ok\n")
        elif path == "/readyz":
            ready, body = owner.readiness() if owner.readiness else (True, {"ready": True})
            data = (json.dumps(body, indent=1) + "\n").encode()
            self._send(200 if ready else 503, "application/json", data)
        else:
            self._send(404, "text/plain; charset=utf-8", b"try /metrics, /healthz, /readyz\n")

    def _send(self, status: int, ctype: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
