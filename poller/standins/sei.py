"""A stand-in for Harness SEI's `POST <base>/v1/custom-cicd`, for tests, benchmarks and `demo`.

It answers the way SEI's server does (SPEC §1, research/sei.md §0 and §3): `ApiKey` auth, a
202 after checking only the six fields SEI checks, a 400 naming the first one missing, and a
JSON string GUID for a registration body. On top of that it can be told to misbehave
(`script`, `reject`, `refuse_key`, `latency`) so retry, dead-letter and credential paths can
be exercised against real HTTP. Standard library only, so it runs anywhere Python does.

Run it by hand with `python -m poller.standins.sei --port 8765`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .tls import TLSServer

__all__ = ["BASE_PATH", "DROP", "REQUIRED_FIELDS", "FakeSei", "main"]

BASE_PATH = "/gratis/sei/api"
"""Path of SEI's prod2 base URL, so URLs built by the poller look like production ones."""

ENDPOINT = "/v1/custom-cicd"

REQUIRED_FIELDS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    # (field we send, aliases SEI also accepts, SEI's own name for it in the 400 message)
    ("pipeline", ("job_name",), "job_name/pipeline"),
    ("instance_name", ("jenkins_instance_name",), "jenkins_instance_name/instance_name"),
    ("instance_guid", ("jenkins_instance_guid",), "jenkins_instance_guid/instance_guid"),
    ("job_full_name", (), "job_full_name"),
    ("qualified_name", ("job_normalized_full_name",), "job_normalized_full_name/qualified_name"),
    ("result", (), "result"),
)
"""What SEI's CustomCICDController checks (StringUtils.isEmpty), in its order; nothing else is."""

DROP = 0
"""A scripted status of 0 closes the connection without answering (a connection error)."""

_ACCEPTED = b'{"status":"accepted"}'


def _field(payload: dict[str, Any], name: str, aliases: tuple[str, ...]) -> Any:
    """Value of a field under its name or any alias SEI's Jackson model maps onto it."""
    for key in (name, *aliases):
        value = payload.get(key)
        if value not in (None, ""):
            return value
    return None


def _build_number(payload: dict[str, Any]) -> int:
    """SEI stores `build_number` as a Java long: missing or unparsable becomes 0."""
    try:
        return int(payload.get("build_number") or 0)
    except (TypeError, ValueError):
        return 0


class _Server(TLSServer, ThreadingHTTPServer):
    """ThreadingHTTPServer that never blocks shutdown on idle keep-alive connections."""

    daemon_threads = True
    block_on_close = False
    request_queue_size = 256  # the default 5 drops SYNs under a burst of new connections
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeSei) -> None:
        self.fake = fake
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, conn: socket.socket, alive: bool) -> None:
        """Remember open connections so `stop()` can cut keep-alive clients loose."""
        with self._conns_lock:
            if alive:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    def close_connections(self) -> None:
        """Shut every open connection so handler threads blocked in readline() exit."""
        with self._conns_lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """One thread per connection; HTTP/1.1 keep-alive, like SEI's gateway."""

    protocol_version = "HTTP/1.1"
    server_version = "FakeSei/1.0"
    sys_version = ""
    # StreamRequestHandler sets TCP_NODELAY when this is true; without it Nagle plus the
    # client's delayed ACK add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    # Buffered writes: status line, headers and body leave in one send() at flush time.
    wbufsize = -1
    timeout = 60  # idle keep-alive connections are dropped after a minute

    server: _Server

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)
        self.server.fake._count_connection()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: test output should show the test's own logs, not an access log."""

    # -- HTTP plumbing -------------------------------------------------------------------

    def _read_body(self) -> bytes:
        """Read the whole request body (Content-Length or chunked) to keep keep-alive in sync."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _send(
        self,
        status: int,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _drop(self) -> None:
        """Close without answering: the client sees a connection reset or remote disconnect."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- methods -------------------------------------------------------------------------

    def do_POST(self) -> None:
        raw = self._read_body()
        fake = self.server.fake
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        body = parsed if isinstance(parsed, dict) else None
        if fake.portal is not None:  # the POST never reaches SEI
            code, html, extra = fake.portal
            fake._record(code, None)
            self._send(code, html, "text/html;charset=utf-8", dict(extra))
            return
        if not fake._enter():
            # A gateway over its in-flight limit refuses at once, before any work.
            fake._record(429, body)
            self._send(429, b'{"error":"Too Many Requests"}', headers=fake.too_many_headers())
            return
        try:
            if fake.latency > 0:
                time.sleep(fake.latency)
            status, out, ctype, headers = fake._answer(self, urlsplit(self.path).path, raw, body)
        finally:
            fake._leave()
        if status == DROP:
            self._drop()
            return
        self._send(status, out, ctype, headers)

    def do_GET(self) -> None:
        self._read_body()  # a body on PUT/PATCH must be consumed to keep keep-alive in sync
        if urlsplit(self.path).path == self.server.fake._endpoint_path:
            self._send(405, b'{"error":"Method Not Allowed"}', headers={"Allow": "POST"})
        else:
            self._send(404, b'{"error":"Not Found"}')

    do_PUT = do_DELETE = do_PATCH = do_GET


class FakeSei:
    """An in-process SEI receiver on 127.0.0.1 that records what it accepts.

    `received` and `attempts` are plain lists appended under a lock, in arrival order; read
    them freely (copy before iterating while traffic is still flowing).
    """

    def __init__(
        self,
        *,
        api_key: str = "sei-secret-key",
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        base_path: str = BASE_PATH,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.tls = tls
        self.portal: tuple[int, bytes, list[tuple[str, str]]] | None = None
        """Something else answers every POST (a login page, a captive portal): (status,
        HTML, headers); nothing is accepted while it is set."""
        self.api_key = api_key
        self.latency = latency
        """Seconds slept before answering each POST; may be changed while running."""
        self.max_inflight: int | None = None
        """A gateway's limit: past this many POSTs in flight, 429 at once; may be changed."""
        self.retry_after: str | None = "1"
        """The `Retry-After` sent with those 429s (None: no header)."""
        self.inflight = 0
        self.peak_inflight = 0
        self.received: list[dict[str, Any]] = []
        self.attempts: list[tuple[int, dict[str, Any] | None]] = []
        self.registered: list[dict[str, Any]] = []
        self.connections = 0
        """TCP connections accepted so far: shows whether a client reuses keep-alive."""
        self._host = host
        self._port = port
        self._endpoint_path = base_path.rstrip("/") + ENDPOINT
        self._base_path = base_path.rstrip("/")
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._script: deque[tuple[int, dict[str, str] | None]] = deque()
        self._rejects: dict[tuple[str, int], tuple[int, str]] = {}
        self._refused = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeSei:
        """Bind (port 0 picks a free one) and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = _Server((self._host, self._port), self)
        self._server.tls = self.tls
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeSei:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and cut open keep-alive connections; safe to call twice."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeSei:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeSei is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """What goes in `[sei] url` minus the endpoint, e.g. http://127.0.0.1:PORT/gratis/sei/api."""
        return f"{self._scheme}://{self._host}:{self.port}{self._base_path}"

    @property
    def url(self) -> str:
        """The full endpoint, as `[sei] url` takes it."""
        return f"{self._scheme}://{self._host}:{self.port}{self._endpoint_path}"

    @property
    def _scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def handshake_failures(self) -> int:
        return self._server.handshake_failures if self._server is not None else 0

    # -- controls ------------------------------------------------------------------------

    def script(self, *responses: tuple[int, dict[str, str] | None]) -> None:
        """Queue forced answers, consumed one per POST before any other handling.

        Each is `(status, headers)`, e.g. `(429, {"Retry-After": "1"})`. Status 0 (`DROP`)
        closes the connection without answering. A scripted 2xx to a valid run payload counts
        as accepted, since the client cannot tell it from a real one.
        """
        with self._lock:
            self._script.extend(responses)

    def clear_script(self) -> None:
        """Drop the forced answers not yet consumed."""
        with self._lock:
            self._script.clear()

    def reject(
        self,
        job_full_name: str,
        build_number: int,
        status: int = 400,
        body: str = '{"payload":"rejected by FakeSei"}',
    ) -> None:
        """Always answer `status` with `body` for this one build (a poison payload)."""
        with self._lock:
            self._rejects[(job_full_name, int(build_number))] = (status, body)

    def refuse_key(self, refused: bool = True) -> None:
        """While set, answer 401 to everything, as SEI does for a revoked key."""
        with self._lock:
            self._refused = refused

    def reset(self) -> None:
        """Forget everything received and every control set, keep serving."""
        with self._lock:
            self.received.clear()
            self.attempts.clear()
            self.registered.clear()
            self._script.clear()
            self._rejects.clear()
            self._refused = False

    # -- inspection ----------------------------------------------------------------------

    def keys(self) -> list[tuple[str, str, int]]:
        """(instance_guid, job_full_name, build_number) per received run, duplicates kept."""
        with self._lock:
            runs = list(self.received)
        return [_run_key(run) for run in runs]

    def runs(self) -> dict[tuple[str, str, int], dict[str, Any]]:
        """Received runs as SEI stores them: keyed like `keys()`, and the first write wins."""
        with self._lock:
            runs = list(self.received)
        out: dict[tuple[str, str, int], dict[str, Any]] = {}
        for run in runs:
            out.setdefault(_run_key(run), run)
        return out

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        """Block until `received` holds at least `count` runs; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    # -- request handling (called from handler threads) ---------------------------------

    def _enter(self) -> bool:
        with self._lock:
            if self.max_inflight is not None and self.inflight >= self.max_inflight:
                return False
            self.inflight += 1
            self.peak_inflight = max(self.peak_inflight, self.inflight)
            return True

    def _leave(self) -> None:
        with self._lock:
            self.inflight -= 1

    def too_many_headers(self) -> dict[str, str]:
        return {"Retry-After": self.retry_after} if self.retry_after is not None else {}

    def _count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    def _record(self, status: int, body: dict[str, Any] | None, accepted: bool = False) -> None:
        with self._cond:
            self.attempts.append((status, body))
            if accepted and body is not None:
                self.received.append(body)
                self._cond.notify_all()

    def _answer(
        self,
        handler: BaseHTTPRequestHandler,
        path: str,
        raw: bytes,
        body: dict[str, Any] | None,
    ) -> tuple[int, bytes, str, dict[str, str] | None]:
        """Decide the response for one POST: (status, body, content type, extra headers)."""
        if path != self._endpoint_path:
            self._record(404, body)
            return 404, b'{"error":"Not Found"}', "application/json", None

        with self._lock:
            forced = self._script.popleft() if self._script else None
            refused = self._refused
        if forced is not None:
            status, headers = forced
            ok = 200 <= status < 300 and body is not None and _missing(body) is None
            self._record(status, body, accepted=ok)
            out = b"" if status == DROP else _status_body(status)
            return status, out, "application/json", headers

        if refused or handler.headers.get("Authorization") != f"ApiKey {self.api_key}":
            self._record(401, body)
            return 401, b'{"error":"Unauthorized"}', "application/json", None

        ctype = handler.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            self._record(415, body)
            return 415, b'{"error":"Unsupported Media Type"}', "application/json", None

        if body is None:
            self._record(400, None)
            what = "not a JSON object" if _is_json(raw) else "not JSON" if raw else "empty"
            return 400, json.dumps({"error": f"body is {what}"}).encode(), "application/json", None

        if "integration_id" in body and "name" in body and "pipeline" not in body:
            guid = str(uuid.uuid4())
            with self._lock:
                self.registered.append({**body, "guid": guid})
            self._record(200, body)
            return 200, json.dumps(guid).encode(), "application/json", None

        missing = _missing(body)
        if missing is not None:
            self._record(400, body)
            message = f"{missing} field is missing in request"
            return 400, json.dumps({"payload": message}).encode(), "application/json", None

        with self._lock:
            rejected = self._rejects.get((str(body.get("job_full_name")), _build_number(body)))
        if rejected is not None:
            status, text = rejected
            self._record(status, body, accepted=200 <= status < 300)
            ctype = "application/json" if _is_json(text.encode()) else "text/plain"
            return status, text.encode(), ctype, None

        self._record(202, body, accepted=True)
        return 202, _ACCEPTED, "application/json", None


def _missing(body: dict[str, Any]) -> str | None:
    """SEI's name for the first required field that is absent or empty, else None."""
    for name, aliases, sei_name in REQUIRED_FIELDS:
        if _field(body, name, aliases) is None:
            return sei_name
    return None


def _run_key(run: dict[str, Any]) -> tuple[str, str, int]:
    """SEI's run key: (instance_guid, job_full_name, build_number)."""
    guid = _field(run, "instance_guid", ("jenkins_instance_guid",))
    return str(guid), str(run.get("job_full_name")), _build_number(run)


def _is_json(raw: bytes) -> bool:
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _status_body(status: int) -> bytes:
    if 200 <= status < 300:
        return _ACCEPTED
    return json.dumps({"error": f"scripted {status}"}).encode()


def main(argv: list[str] | None = None) -> None:
    """Serve a FakeSei in the foreground, printing each accepted run's key."""
    parser = argparse.ArgumentParser(prog="python -m poller.standins.sei", description=__doc__)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--api-key", default="sei-secret-key")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args(argv)
    fake = FakeSei(api_key=args.api_key, latency=args.latency, port=args.port).start()
    print(f"FakeSei listening: url = {fake.url!r}  api_key = {fake.api_key!r}", flush=True)
    seen = 0
    try:
        while True:
            fake.wait_for(seen + 1, timeout=1.0)
            keys = fake.keys()
            for key in keys[seen:]:
                print("accepted", *key, flush=True)
            seen = len(keys)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
