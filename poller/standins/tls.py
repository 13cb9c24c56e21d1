"""HTTPS for the stand-ins: a server-side TLS context wrapped around each accepted socket.

The handshake runs in the connection's own thread (not the accept loop), so a client that
never finishes one holds up nobody. A failed handshake (a client that does not trust the
certificate, or brings none when one is required) is counted in `handshake_failures` and
ends that connection quietly, as a real server's would.
"""

from __future__ import annotations

import ssl
import threading
from typing import Any


class TLSServer:
    """Mixed in before a `socketserver` server class: `tls` set means HTTPS."""

    tls: ssl.SSLContext | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.handshake_failures = 0
        self._tls_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()  # type: ignore[misc]
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A failed handshake is counted; other errors stay as quiet as the base's."""
        import sys

        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
            with self._tls_lock:
                self.handshake_failures += 1


def server_context(cert: Any, *, client_ca: Any = None) -> ssl.SSLContext:
    """A server context for a `trustme` leaf certificate; `client_ca` (a `trustme.CA`) makes
    a client certificate signed by it required."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    if client_ca is not None:
        client_ca.configure_trust(context)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
