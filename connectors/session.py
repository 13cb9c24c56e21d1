"""What every connector wants for reading a CI server: the HTTP session, capped reads, the
server's clock from its `Date` header, and a versioned server cursor."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from poller.errors import ConnectorError
from poller.model import ServerSpec

if TYPE_CHECKING:
    from connectors.throttle import Throttle

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


def get_capped(
    session: requests.Session,
    url: str,
    params: Any,
    *,
    timeout: float,
    throttle: Throttle,
    on_request: Callable[[int | None, float], None] | None,
    system: str,
    limit: int,
) -> tuple[requests.Response, bytes]:
    """One GET in a politeness slot of `throttle`: redirects not followed, the body read whole
    (at most `limit` bytes), the status and time taken reported to `on_request`.

    A failure to get an answer is a `ConnectorError` naming `system` ("TeamCity") for TLS; the
    caller judges the status.
    """
    where = redact_url(url)
    status: int | None = None
    with throttle.slot():
        started = time.monotonic()
        try:
            resp = session.get(
                url, params=params, timeout=timeout, stream=True, allow_redirects=False
            )
        except requests.exceptions.SSLError:
            raise ConnectorError(f"TLS error talking to {system}", url=where) from None
        except requests.RequestException as exc:
            raise ConnectorError(f"request failed: {type(exc).__name__}", url=where) from None
        try:
            status = resp.status_code
            body = read_capped(resp, where, limit)
        finally:
            resp.close()
            if on_request:
                on_request(status, time.monotonic() - started)
    return resp, body


def date_header(value: str | None) -> int | None:
    """A `Date` header in epoch ms: the server's clock, for cursors that compare with it."""
    if not value:
        return None
    try:
        return int(parsedate_to_datetime(value).timestamp() * 1000)
    except (TypeError, ValueError):
        return None


def load_cursor(text: str | None, version: int) -> dict[str, Any] | None:
    """A server cursor written by this connector version (`{"v": version, "at": ms, ...}`),
    or None for none, garbage or another version: the caller then scans everything once."""
    if not text:
        return None
    try:
        data = json.loads(text)
        if data.get("v") == version and isinstance(data.get("at"), int):
            return data
    except (ValueError, AttributeError):
        pass
    return None
