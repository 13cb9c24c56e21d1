"""``FaultProxy``: the stand-ins' faults in front of a real server.

A reverse proxy on 127.0.0.1 that forwards every request to ``target`` (method, path, query,
headers, body) and its answer back (status, headers, body), through the same fault flow as
the stand-ins: hangs, delays, error pages and connection resets on the paths chosen. The
Buildbot tests put it in front of a real master, so the seeded fault schedule every
stand-in plays reaches Buildbot too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from .http import Standin, StandinHandler

# Hop-by-hop headers and the ones `requests` sets again: never forwarded as they came.
_DROPPED = frozenset(
    {
        "host",
        "content-length",
        "content-encoding",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "te",
        "upgrade",
    }
)


class FaultProxy(Standin):
    """Forwards to ``target`` (a base URL); ``url`` is the proxy's own, same path."""

    thread_prefix = "fault-proxy"

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        super().__init__(parts.path, _Handler)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.http = requests.Session()

    def stop(self) -> None:
        super().stop()
        self.http.close()


class _Handler(StandinHandler):
    server_version = "FaultProxy"

    def answer(
        self, method: str, path: str, raw_query: str, query: dict[str, str], extra: list[Any]
    ) -> tuple[int, str, bytes]:
        proxy = self.server.standin
        assert isinstance(proxy, FaultProxy)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROPPED}
        resp = proxy.http.request(
            method,
            proxy.origin + path + (f"?{raw_query}" if raw_query else ""),
            headers=headers,
            data=self.body or None,
            allow_redirects=False,
            timeout=30,
        )
        for k, v in resp.raw.headers.items():
            if k.lower() not in _DROPPED and k.lower() != "content-type":
                extra.append((k, v))
        ctype = resp.headers.get("Content-Type", "application/octet-stream")
        return resp.status_code, ctype, resp.content

    def error_answer(self, status: int, path: str, message: str | None) -> tuple[str, bytes]:
        text = message or "injected fault"
        return "text/html", f"<html><body><h1>{status}</h1><p>{text}</p></body></html>".encode()
