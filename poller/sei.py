"""Everything that talks to SEI: one `requests.Session`, one place that reads its answers.

A POST is safe to repeat only because SEI keeps the first write per (instance_guid,
job_full_name, build_number): that is why delivery is at-least-once and retries freely.
"""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from typing import Any

import requests
import urllib3

from poller import __version__, network

# Backoff for retryable answers: 2 s doubling to 5 min, with jitter so that many pollers
# recovering from one SEI outage do not knock together.
BACKOFF_BASE = 2.0
BACKOFF_MAX = 300.0
# A Retry-After beyond this is treated as this: SEI's gateway never needs hours.
RETRY_AFTER_MAX = 3600.0
RETRYABLE = frozenset({408, 425, 429}) | frozenset(range(500, 600))
AUTH_REFUSED = frozenset({401, 403})
# Answers that stop delivery for the cycle, everything left pending: the operator's to fix
# (the key, a certificate, a login page or proxy in front of SEI), not SEI's to recover from,
# so retrying each payload would only repeat the same failure hundreds of times.
HALTS = frozenset({"auth", "tls", "not_sei"})


@dataclass(frozen=True)
class Outcome:
    """`sent`, `retry` (try again after `retry_after` if given), `dead` (never will), or a
    halt (`HALTS`): `auth` (key refused), `tls` (certificate), `not_sei` (someone else
    answered: a login page, a portal, a redirect)."""

    kind: str
    status: int | None = None
    detail: str = ""
    retry_after: float | None = None
    seconds: float = 0.0


def classify(status: int, headers: dict[str, str] | Any, body: str, url: str = "SEI") -> Outcome:
    """SEI's answer → what to do with the payload. Pure, so every branch is unit-tested.

    SEI accepts with `202` and a JSON body; a `2xx` that is not JSON comes from something in
    front of SEI (a login page, a captive portal), so it is no acceptance.
    """
    ctype = headers.get("Content-Type")
    raw = body.encode()
    if 200 <= status < 300:
        if _is_json(body) and not network.looks_like_html(raw, ctype):
            return Outcome("sent", status)
        return Outcome("not_sei", status, network.not_json(url, status, ctype, raw, "SEI"))
    if network.looks_like_html(raw, ctype):
        title = network.page_title(raw)
        detail = f"HTTP {status}: an HTML page" + (f" titled {title!r}" if title else "")
    else:
        detail = f"HTTP {status}: {body.strip()[:500]}"
    if status in AUTH_REFUSED:
        return Outcome("auth", status, detail)
    if 300 <= status < 400:
        # A wrong `sei.url`, or a login page in front of SEI: not a bad payload, and not
        # something retrying fixes. Say where it pointed; everything stays pending.
        where = network.redact(headers.get("Location", "?"))
        return Outcome(
            "not_sei",
            status,
            f"{network.redact(url)} redirected (HTTP {status}) to {where}:"
            " check [sei] url and proxy; nothing was marked sent",
        )
    if status in RETRYABLE:
        return Outcome("retry", status, detail, parse_retry_after(headers.get("Retry-After")))
    return Outcome("dead", status, detail)


def _is_json(body: str) -> bool:
    try:
        json.loads(body)
    except ValueError:
        return False
    return True


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), capped."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        from datetime import UTC, datetime

        seconds = (when - datetime.now(UTC)).total_seconds()
    return max(0.0, min(seconds, RETRY_AFTER_MAX))


def next_delay(attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next try of a payload that has failed `attempts` times."""
    if retry_after is not None:
        return retry_after
    ceiling = min(BACKOFF_MAX, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return float(ceiling / 2 + random.random() * ceiling / 2)


class Sender:
    """Posts payloads to SEI. Thread-safe for concurrent `post` calls (one pool per sender)."""

    def __init__(
        self,
        endpoint: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        concurrency: int = 2,
        verify_tls: bool | str = True,
        net: network.Endpoint | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.net = net or network.endpoint(endpoint, verify_tls=verify_tls, key="sei")
        self._timeout = (connect_timeout, timeout)
        # The hot path, one POST per build, goes through urllib3 directly: it is what
        # requests runs on, and skipping requests' per-request machinery (hooks, cookie
        # jar, environment merging, adapters) halves the CPU each POST costs. `register`,
        # rare, keeps the friendlier requests session. Both go the endpoint's way (its
        # proxy, by CONNECT for https) trusting what it trusts, with pooled connections.
        self._pool = self.net.pool(
            maxsize=max(concurrency, 1) + 1,
            timeout=urllib3.Timeout(connect=connect_timeout, read=timeout),
        )
        self._session = self.net.mount(
            requests.Session(), pool_connections=1, pool_maxsize=max(concurrency, 1) + 1
        )
        self._headers = {
            "Authorization": f"ApiKey {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": f"sei-poller/{__version__}",
        }
        self._session.headers.update(self._headers)

    @property
    def longest_post(self) -> float:
        """Seconds one POST can take before its timeouts end it (connect, then read)."""
        return float(sum(self._timeout))

    @classmethod
    def from_config(cls, sei: Any, net: network.Endpoint | None = None) -> Sender:
        return cls(
            sei.endpoint,
            sei.api_key.get_secret_value(),
            timeout=sei.timeout,
            connect_timeout=sei.connect_timeout,
            concurrency=sei.concurrency,
            verify_tls=sei.verify_tls,
            net=net,
        )

    def post(self, body: str | bytes) -> Outcome:
        """One POST; network failures are retryable outcomes, never exceptions."""
        started = time.monotonic()
        outcome = self._post(body)
        return replace(outcome, seconds=time.monotonic() - started)

    def _post(self, body: str | bytes) -> Outcome:
        try:
            resp = self._pool.request(
                "POST",
                self.endpoint,
                body=body if isinstance(body, bytes) else body.encode(),
                headers=self._headers,
                redirect=False,
            )
        except urllib3.exceptions.NewConnectionError as exc:  # a ConnectTimeoutError, by lineage
            return Outcome("retry", None, f"connection failed: {_reason(exc)}")
        except urllib3.exceptions.TimeoutError:
            return Outcome("retry", None, "timed out")
        except urllib3.exceptions.HTTPError as exc:
            if network.is_tls_failure(exc):
                return Outcome("tls", None, network.tls_problem(exc, self.net, self.endpoint))
            if isinstance(exc, urllib3.exceptions.ProxyError):
                return Outcome(
                    "retry", None, f"the proxy failed ({self.net.route}): {_reason(exc)}"
                )
            return Outcome("retry", None, f"connection failed: {_reason(exc)}")
        body_text = resp.data.decode("utf-8", "replace")
        return classify(resp.status, resp.headers, body_text, self.endpoint)

    def probe(self) -> Outcome:
        """Prove the endpoint is reachable and the key accepted without storing anything.

        SEI answers 400 to `{}` (required fields missing) once the key passed, 401/403 if not.
        """
        outcome = self.post(b"{}")
        if outcome.status == 400 and outcome.kind == "dead":
            return Outcome("sent", 400, "endpoint reachable, API key accepted")
        if outcome.kind == "sent":
            return Outcome("sent", outcome.status, "endpoint reachable, API key accepted")
        return outcome

    def register(self, integration_id: str, name: str, type_: str) -> tuple[Outcome, str | None]:
        """Create a CI/CD instance in SEI; returns the GUID its answer holds."""
        body = json.dumps({"integration_id": integration_id, "name": name, "type": type_})
        try:
            resp = self._session.post(
                self.endpoint, data=body.encode(), timeout=self._timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            if network.is_tls_failure(exc):
                return Outcome("tls", None, network.tls_problem(exc, self.net, self.endpoint)), None
            return Outcome("retry", None, f"connection failed: {type(exc).__name__}"), None
        outcome = classify(resp.status_code, resp.headers, resp.text, self.endpoint)
        if outcome.kind != "sent":
            return outcome, None
        return outcome, guid_from(resp.text)

    def close(self) -> None:
        self._pool.clear()
        self._session.close()


def _reason(exc: Exception) -> str:
    """`NewConnectionError`, `ProtocolError`...: the class names what went wrong, not the URL."""
    inner = getattr(exc, "reason", None)
    return type(inner if isinstance(inner, Exception) else exc).__name__


def guid_from(text: str) -> str | None:
    """SEI answers a JSON string, or an object holding the id: find the UUID either way."""
    try:
        data = json.loads(text)
    except ValueError:
        data = text.strip()
    stack = [data]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                return str(uuid.UUID(value.strip()))
            except ValueError:
                continue
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return None
