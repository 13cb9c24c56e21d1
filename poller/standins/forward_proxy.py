"""``ForwardProxy``: an egress proxy on 127.0.0.1, as strict as the ones companies run.

Every request needs `Proxy-Authorization: Basic` with the proxy's user and password (407
otherwise, with `Proxy-Authenticate`, as Squid answers). `http://` targets come in
absolute form (`GET http://host/path HTTP/1.1`) and are forwarded; `https://` targets come
as `CONNECT host:port`, answered `200 Connection established`, after which bytes are piped
both ways without being read (the TLS inside is between the client and the server).
`log` records what was asked, so a test can tell that traffic really went through here.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple, Self
from urllib.parse import urlsplit


class Asked(NamedTuple):
    method: str  # CONNECT, GET, POST, ...
    target: str  # host:port for CONNECT, the absolute URL otherwise
    status: int  # what the proxy answered (407 when the credentials were missing or wrong)


class ForwardProxy:
    def __init__(self, *, username: str = "egress", password: str = "proxy-p@ss:word") -> None:
        self.username, self.password = username, password
        self.log: list[Asked] = []
        self._lock = threading.Lock()
        self._httpd = _Server(self)
        self.port = self._httpd.server_address[1]
        self._thread: threading.Thread | None = None

    def url(self, *, credentials: bool = True) -> str:
        """`http://user:pass@127.0.0.1:PORT` (the password percent-encoded), or without them."""
        if not credentials:
            return f"http://127.0.0.1:{self.port}"
        from urllib.parse import quote

        user, pw = quote(self.username, safe=""), quote(self.password, safe="")
        return f"http://{user}:{pw}@127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"forward-proxy-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def asked(self, method: str | None = None) -> list[Asked]:
        with self._lock:
            return [a for a in self.log if method is None or a.method == method]

    def _note(self, method: str, target: str, status: int) -> None:
        with self._lock:
            self.log.append(Asked(method, target, status))

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.lower().startswith("basic "):
            return False
        try:
            user, _, pw = base64.b64decode(header[6:].strip()).decode().partition(":")
        except ValueError:
            return False
        return (user, pw) == (self.username, self.password)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, proxy: ForwardProxy) -> None:
        self.proxy = proxy
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up mid-tunnel are normal."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    # Without it Nagle plus the client's delayed ACK add ~40 ms to every relayed answer.
    disable_nagle_algorithm = True

    def setup(self) -> None:
        super().setup()
        # One upstream connection per client connection and target, kept alive as a real
        # proxy keeps them: the client's keep-alive is worth something through the proxy.
        self.upstreams: dict[tuple[str, int], http.client.HTTPConnection] = {}

    def finish(self) -> None:
        for conn in self.upstreams.values():
            conn.close()
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read `ForwardProxy.log`."""

    def _refuse(self, method: str, target: str) -> None:
        self.server.proxy._note(method, target, 407)
        body = b"<html><body>Proxy Authentication Required</body></html>"
        self.send_response(407)
        self.send_header("Proxy-Authenticate", 'Basic realm="egress"')
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:
        proxy = self.server.proxy
        if not proxy._authorized(self.headers.get("Proxy-Authorization")):
            self._refuse("CONNECT", self.path)
            return
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            proxy._note("CONNECT", self.path, 502)
            self.send_error(502)
            return
        proxy._note("CONNECT", self.path, 200)
        self.send_response(200, "Connection established")
        self.end_headers()
        self.wfile.flush()
        self._pipe(self.connection, upstream)
        self.close_connection = True

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.closing(b):
            socks = [a, b]
            while True:
                ready, _, broken = select.select(socks, [], socks, 30)
                if broken or not ready:
                    return
                for s in ready:
                    try:
                        data = s.recv(65536)
                    except OSError:
                        return
                    if not data:
                        return
                    (b if s is a else a).sendall(data)

    def _forward(self) -> None:
        proxy = self.server.proxy
        method, target = self.command, self.path
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        if not proxy._authorized(self.headers.get("Proxy-Authorization")):
            self._refuse(method, target)
            return
        parts = urlsplit(target)
        if parts.scheme != "http" or not parts.hostname:
            proxy._note(method, target, 400)
            self.send_error(400, "absolute http:// URL expected")
            return
        headers = {
            k: v
            for k, v in self.headers.items()
            if k.lower() not in ("proxy-authorization", "proxy-connection", "connection")
        }
        key = (parts.hostname, parts.port or 80)
        conn = self.upstreams.get(key)
        if conn is None:
            conn = self.upstreams[key] = http.client.HTTPConnection(*key, timeout=30)
        try:
            if conn.sock is None:
                conn.connect()
                assert conn.sock is not None
                conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            conn.request(method, path or "/", body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            del self.upstreams[key]
            proxy._note(method, target, 502)
            self.send_error(502)
            return
        proxy._note(method, target, resp.status)
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_HEAD = do_PUT = _forward
