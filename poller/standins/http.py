"""HTTP plumbing the CI stand-ins (Jenkins, TeamCity) share.

:class:`Standin` is the controller side: the port bound at construction, start/stop/context
manager, the locks, the faults and the request log. :class:`StandinServer` is a threading
server that tracks its connections (so ``stop`` can cut keep-alive clients loose) and can end
one with a TCP RST. :class:`StandinHandler` answers every request the same way: the faults
first (hang, delay, failure, reset), then the CI system's own :meth:`StandinHandler.answer`;
each package says only what its answers and error pages look like.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import socket
import ssl
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self
from urllib.parse import parse_qsl, unquote

from .faults import Faults
from .tls import TLSServer


def who(
    authorization: str | None, *, token: str | None, username: str, password: str | None
) -> str | None:
    """The user an `Authorization` header proves (`Bearer <token>` or HTTP basic), or None.
    Compared in constant time, as servers do; a malformed header proves no one."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() == "bearer" and token is not None:
        return username if hmac.compare_digest(value.strip().encode(), token.encode()) else None
    if scheme.lower() == "basic" and password is not None:
        try:
            user, colon, secret = base64.b64decode(value.strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if (
            colon
            and hmac.compare_digest(user.encode(), username.encode())
            and hmac.compare_digest(secret.encode(), password.encode())
        ):
            return user
    return None


class Recorded(NamedTuple):
    """One request the stand-in answered (faults and 401s included)."""

    method: str
    path: str  # as sent on the wire (still percent-encoded), without the query
    query: dict[str, str]  # decoded query parameters (last value wins)
    status: int
    raw_query: str = ""
    size: int = 0  # response body bytes: lets benchmarks see who fetched the BuildData bloat
    #: the fault that shaped the answer: "" (none), "delay", "fail", "break", "flaky", "hang"
    #: (status 0: no answer was sent) or "reset" (status line sent, body cut off)
    fault: str = ""


class Standin:
    """A stand-in's lifecycle and request log; subclasses hold the model.

    The port is bound at construction, so ``url`` is final before ``start()``.
    """

    #: The serving thread is named ``f"{thread_prefix}-{url}"``.
    thread_prefix = "fake-standin"

    def __init__(
        self,
        context_path: str,
        handler: type[StandinHandler],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        stripped = context_path.strip("/")
        self.context_path = f"/{stripped}" if stripped else ""
        self._lock = threading.RLock()
        self._req_lock = threading.Lock()
        self._stopping = threading.Event()
        self.faults = Faults()
        self.requests: list[Recorded] = []
        self._httpd = StandinServer(self, handler)
        self._httpd.tls = tls
        port = self._httpd.server_address[1]
        scheme = "https" if tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{port}{self.context_path}/"
        self._thread: threading.Thread | None = None

    @property
    def handshake_failures(self) -> int:
        """TLS handshakes that failed (an untrusted certificate, a missing client one)."""
        return self._httpd.handshake_failures

    def start(self) -> Self:
        """Serve in a daemon thread; returns self so ``fake = FakeX().start()`` reads well."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"{self.thread_prefix}-{self.url}",
                daemon=True,
            )
            self._thread.start()
        return self

    def within(self, path: str) -> str | None:
        """`path` below the context path ("" at its root), or None outside it: a server
        deployed under a context path answers nothing else."""
        ctx = self.context_path
        if path == ctx or path.startswith(ctx + "/"):
            return path[len(ctx) :]
        return None

    def stop(self) -> None:
        """Stop serving and close open keep-alive connections (idempotent)."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.drop_connections()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, rec: Recorded) -> None:
        with self._req_lock:
            self.requests.append(rec)

    def reset_requests(self) -> None:
        with self._req_lock:
            self.requests.clear()


class StandinServer(TLSServer, ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, standin: Standin, handler: type[StandinHandler]) -> None:
        self.standin = standin
        self.conns: set[socket.socket] = set()
        self.resets: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # Without TCP_NODELAY, Nagle plus delayed ACK stalls every keep-alive answer ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.conns_lock:
            self.conns.add(sock)
        return sock, addr

    def reset_on_close(self, sock: socket.socket) -> None:
        """Close ``sock`` with a TCP RST (SO_LINGER 0) instead of a FIN when its request ends."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self.conns_lock:
            self.resets.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
            reset = request in self.resets
            self.resets.discard(request)
        if reset:  # no shutdown(SHUT_WR) first: that would send a FIN before the RST
            self.close_request(request)
            return
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (timeout tests do) is not an error worth printing;
        a failed TLS handshake is counted (`TLSServer`)."""
        super().handle_error(request, client_address)

    def drop_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class StandinHandler(BaseHTTPRequestHandler):
    """Answers GET, HEAD and POST through the faults and :meth:`answer`; subclasses add the
    CI system's answers, error pages and headers."""

    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server: StandinServer
    #: Answer requests other than GET and HEAD with ``Connection: close``.
    close_unless_read = False

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read the stand-in's ``requests`` instead."""

    def do_GET(self) -> None:
        self.serve("GET")

    def do_HEAD(self) -> None:
        self.serve("HEAD")

    def do_POST(self) -> None:
        self.serve("POST")

    # -- what each CI system says ----------------------------------------------------------
    def answer(
        self, method: str, path: str, raw_query: str, query: dict[str, str], extra: list[Any]
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) for a request no fault answered; may append
        ``(name, value)`` headers to ``extra``."""
        raise NotImplementedError

    def error_answer(self, status: int, path: str, message: str | None) -> tuple[str, bytes]:
        """(content type, body) of an error: an injected fault (``message`` None) or a bug in
        :meth:`answer` (``message`` names the exception)."""
        raise NotImplementedError

    def site_headers(self) -> list[tuple[str, str]]:
        """Headers on every answer, after Content-Type and Content-Length."""
        return []

    def _send(self, method: str, status: int, html: bytes, headers: list[tuple[str, str]]) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/html;charset=utf-8")
            self.send_header("Content-Length", str(len(html)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(b"" if method == "HEAD" else html)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- the shared flow -------------------------------------------------------------------
    def serve(self, method: str) -> None:
        fake = self.server.standin
        path, _, raw_query = self.path.partition("?")
        query = dict(parse_qsl(raw_query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        hang = fake.faults.hang_for(path)
        if hang is not None:
            fake._record(Recorded(method, path, query, 0, raw_query, 0, "hang"))
            fake._stopping.wait(hang)
            self.close_connection = True  # no answer at all: the connection just closes
            return
        page = fake.faults.page_for(path)
        if page is not None:  # something else answers: a login page, a redirect to one
            status, html, headers = page
            fake._record(Recorded(method, path, query, status, raw_query, len(html), "page"))
            self._send(method, status, html, headers)
            return
        pause = fake.faults.pause(path)
        fault = "delay" if pause else ""
        if pause:
            fake._stopping.wait(pause)
        extra: list[tuple[str, str]] = []
        failed = fake.faults.failure(path, unquote(raw_query))
        if failed is not None:
            fault, status = failed
            ctype, body = self.error_answer(status, path, None)
        else:
            try:
                status, ctype, body = self.answer(method, path, raw_query, query, extra)
            except Exception as exc:  # a stand-in bug must not hang the client
                status = 500
                ctype, body = self.error_answer(500, path, f"{type(exc).__name__}: {exc}")
        sent = b"" if method == "HEAD" else body
        if fake.faults.resets(path):
            fault, sent = "reset", sent[: len(sent) // 2]
        fake._record(Recorded(method, path, query, status, raw_query, len(sent), fault))
        try:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (*self.site_headers(), *extra):
                self.send_header(k, v)
            if self.close_unless_read and method not in ("GET", "HEAD"):
                self.send_header("Connection", "close")
                self.close_connection = True
            self.end_headers()
            self.wfile.write(sent)
            if fault == "reset":
                self.wfile.flush()
                self.server.reset_on_close(self.connection)
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
