"""The HTTP session settings every connector wants for reading a CI server."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from poller.errors import ConnectorError
from poller.model import ServerSpec

# GETs are idempotent, so transient gateway errors are retried here, briefly: a poll that
# still fails is retried by the next poll anyway, and a struggling server deserves a pause.
GET_RETRY = Retry(
    total=2,
    connect=2,
    read=1,
    status=2,
    backoff_factor=0.5,
    status_forcelist=(502, 503, 504),
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
