"""The HTTP session settings every connector wants for reading a CI server."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from poller.errors import ConnectorError
from poller.model import ServerSpec

# A poller only reads, and a GET is safe to repeat: a 500 from a controller under load (or a
# proxy in front of it), a gateway error or a reset connection is retried a few times, with
# growing, jittered pauses (0.5 s, 1 s, 2 s + up to 0.5 s), inside the request's politeness
# slot. A server that refuses connections is given up on after one retry, so a poll of a
# server that is down ends quickly; the next poll tries again anyway.
GET_RETRY = Retry(
    total=4,
    connect=1,
    read=2,
    status=3,
    other=1,
    backoff_factor=0.5,
    backoff_jitter=0.5,
    backoff_max=8.0,
    status_forcelist=(500, 502, 503, 504),
    allowed_methods=("GET",),
    raise_on_status=False,
    respect_retry_after_header=True,
)


def prepare(session: requests.Session, spec: ServerSpec) -> requests.Session:
    """TLS verification as configured, GET retries, a pool as wide as `max_concurrency`."""
    session.verify = spec.verify_tls
    adapter = HTTPAdapter(max_retries=GET_RETRY, pool_maxsize=spec.max_concurrency + 1)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def redact_url(url: str) -> str:
    """Scheme, host and path only: no `user:token@`, no query string, for errors and logs."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def read_capped(resp: requests.Response, where: str, limit: int) -> bytes:
    """The body of a streamed answer, refusing one larger than `limit` bytes."""
    chunks, size = [], 0
    for chunk in resp.iter_content(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ConnectorError(f"answer larger than {limit >> 20} MB", url=where)
        chunks.append(chunk)
    return b"".join(chunks)
