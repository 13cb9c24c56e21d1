"""What every connector wants for reading a CI server over HTTP: a session that goes the
configured way (`poller.network`), retried GETs, capped reads, one-line failures."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import MaxRetryError, SSLError
from urllib3.util.retry import Retry

from connectors.kit.throttle import Throttle
from poller import network
from poller.errors import ConnectorError, NotFound
from poller.model import ServerSpec


# A poller only reads, and a GET is safe to repeat: a 500 from a controller under load (or a
# proxy in front of it), a gateway error or a reset connection is retried a few times, with
# growing, jittered pauses (0.5 s, 1 s, 2 s + up to 0.5 s), inside the request's politeness
# slot. A server that refuses connections is given up on after one retry, so a poll of a
# server that is down ends quickly; the next poll tries again anyway.
class _Retry(Retry):
    """Retries as configured, except a failed TLS handshake: a certificate the client does
    not trust will not be trusted a second later, so it is the operator's to fix at once."""

    def increment(  # type: ignore[override]  # the same call, typed loosely upstream
        self, *args: Any, **kwargs: Any
    ) -> Retry:
        error = kwargs.get("error")
        if isinstance(error, SSLError):
            pool: Any = kwargs.get("_pool")
            raise MaxRetryError(pool, kwargs.get("url") or "", error) from error
        return super().increment(*args, **kwargs)


GET_RETRY = _Retry(
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
    """The server's route and trust (`poller.network`), GET retries, a pool as wide as
    `max_concurrency`. The environment is read once, by `network.endpoint`, not again by
    requests on each request: the session goes where the endpoint says and nowhere else."""
    return endpoint_of(spec).mount(
        session, max_retries=GET_RETRY, pool_maxsize=spec.max_concurrency + 1
    )


def endpoint_of(spec: ServerSpec) -> network.Endpoint:
    """The spec's endpoint; a spec built by hand (tests, third parties) gets the default."""
    if spec.network is not None:
        return spec.network
    return network.endpoint(spec.url, verify_tls=spec.verify_tls, key=spec.name)


def failure(exc: requests.RequestException, url: str, spec: ServerSpec) -> ConnectorError:
    """A request that got no answer, as one line: a TLS failure names host, reason and fix."""
    ep = endpoint_of(spec)
    if network.is_tls_failure(exc):
        return ConnectorError(network.tls_problem(exc, ep, url), url=redact_url(url))
    host = urlsplit(url).netloc.rsplit("@", 1)[-1]
    if isinstance(exc, requests.exceptions.ProxyError):
        return ConnectorError(f"the proxy failed ({ep.route}): {_reason(exc)}", url=redact_url(url))
    if isinstance(exc, requests.exceptions.Timeout):
        return ConnectorError(f"no answer from {host}: timed out", url=redact_url(url))
    if isinstance(exc, requests.exceptions.ConnectionError):
        return ConnectorError(f"cannot reach {host}: {_reason(exc)}", url=redact_url(url))
    return ConnectorError(f"request failed: {type(exc).__name__}", url=redact_url(url))


def _reason(exc: BaseException) -> str:
    """The innermost cause in words (`connection refused`), not a chain of class names."""
    seen: list[BaseException] = []
    stack: list[BaseException] = [exc]
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.append(e)
        linked = [getattr(e, "reason", None), e.__cause__, e.__context__, *e.args]
        stack.extend(x for x in linked if isinstance(x, BaseException))
    for e in reversed(seen):
        if isinstance(e, OSError) and e.strerror:
            return e.strerror.lower()
    return type(seen[-1]).__name__


def json_answer(body: bytes, resp: requests.Response, url: str, system: str) -> Any:
    """The answer's JSON, or one line saying what came instead (a login page, say)."""
    try:
        return json.loads(body)
    except ValueError:
        raise ConnectorError(
            network.not_json(url, resp.status_code, resp.headers.get("Content-Type"), body, system),
            url=redact_url(url),
            status=resp.status_code,
        ) from None


def status_error(
    status: int,
    system: str,
    where: str,
    detail: str = "",
    *,
    who: str = "credentials",
    hint: str = "",
) -> ConnectorError:
    """The error an answer other than 200 means: 404 is `NotFound` (the core forgets what is
    gone), 401 and 403 say who refused, anything else names the status. `detail` is the
    server's own message, `hint` what to do about a refusal."""
    if status == 404:
        return NotFound(f"not found (404){detail}", url=where, status=404)
    if status in (401, 403):
        what = f"refused the {who}" if status == 401 else "denied access"
        return ConnectorError(
            f"{system} {what} (HTTP {status}){hint}{detail}", url=where, status=status
        )
    return ConnectorError(f"HTTP {status} from {system}{detail}", url=where, status=status)


def foreign_redirect(resp: requests.Response, base: str) -> ConnectorError | None:
    """A redirect is never followed; this says where it pointed, naming both hosts."""
    if not resp.is_redirect:
        return None
    target = urlsplit(requests.compat.urljoin(resp.url, resp.headers.get("Location", "")))
    ours = urlsplit(base).netloc.rsplit("@", 1)[-1]
    theirs = target.netloc.rsplit("@", 1)[-1]
    if theirs and theirs != ours:
        what = f"redirected to another host, {theirs} (from {ours})"
    else:
        what = f"redirected to {redact_url(target.geturl())}"
    return ConnectorError(
        f"HTTP {resp.status_code} {what}; not followed (credentials go only where url points):"
        " set url to the server's own address, scheme and context path included",
        url=redact_url(resp.url),
        status=resp.status_code,
    )


def redact_url(url: str) -> str:
    """Scheme, host and path only: no `user:token@`, no query string, for errors and logs."""
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return f"{parts.scheme}://{host}{parts.path}"


def read_capped(resp: requests.Response, where: str, limit: int) -> bytes:
    """The body of a streamed answer, refusing one larger than `limit` bytes; a connection
    broken mid-answer is the server's failure like any other (retried next poll)."""
    chunks, size = [], 0
    try:
        for chunk in resp.iter_content(1 << 16):
            size += len(chunk)
            if size > limit:
                raise ConnectorError(f"answer larger than {limit >> 20} MB", url=where)
            chunks.append(chunk)
    except requests.exceptions.ContentDecodingError:
        # Seen from a real Buildbot 4.3 (Twisted 26.10) while other clients dropped their
        # connections mid-answer: a gzip body without its gzip header.
        encoding = resp.headers.get("Content-Encoding", "")
        raise ConnectorError(
            f"answer does not decode as its Content-Encoding ({encoding}) says", url=where
        ) from None
    except requests.RequestException as exc:
        raise ConnectorError(
            f"connection broken mid-answer: {type(exc).__name__}", url=where
        ) from None
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
    spec: ServerSpec,
    headers: Mapping[str, str] | None = None,
) -> tuple[requests.Response, bytes]:
    """One GET in a politeness slot of `throttle`: redirects not followed, the body read whole
    (at most `limit` bytes), the status and time taken reported to `on_request`. `headers`
    are added to the session's for this request alone (a versioned `Accept`, an
    `If-None-Match`), so threads sharing the session never see each other's.

    A failure to get an answer is a `ConnectorError` of one line (`failure`); the caller
    judges the status.
    """
    where = redact_url(url)
    status: int | None = None
    with throttle.slot():
        started = time.monotonic()
        try:
            resp = session.get(
                url,
                params=params,
                timeout=timeout,
                stream=True,
                allow_redirects=False,
                headers=dict(headers) if headers else None,
            )
        except requests.RequestException as exc:
            raise failure(exc, url, spec) from None
        try:
            status = resp.status_code
            body = read_capped(resp, where, limit)
        finally:
            resp.close()
            if on_request:
                on_request(status, time.monotonic() - started)
    return resp, body


class Client:
    """One CI server's HTTP as a connector holds it: a `prepare`d session (route, trust, GET
    retries), the server's politeness throttle, and what every `get_capped` to it shares.
    Connectors add their credentials and headers to `session`."""

    def __init__(
        self,
        spec: ServerSpec,
        system: str,
        *,
        limit: int,
        on_request: Callable[[int | None, float], None] | None = None,
        accept: str | None = "application/json",
    ) -> None:
        self.spec = spec
        self.system = system
        self.limit = limit
        self.on_request = on_request
        self.session = prepare(requests.Session(), spec)
        if accept:
            self.session.headers["Accept"] = accept
        self.throttle = Throttle(spec.max_concurrency, spec.requests_per_second)

    def get(
        self, url: str, params: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[requests.Response, bytes]:
        """`get_capped` with this server's session, throttle, timeout and body limit."""
        return get_capped(
            self.session,
            url,
            params,
            timeout=self.spec.timeout,
            throttle=self.throttle,
            on_request=self.on_request,
            system=self.system,
            limit=self.limit,
            spec=self.spec,
            headers=headers,
        )

    def close(self) -> None:
        self.session.close()
