"""The toolkit connectors share (`connectors/kit/`): each piece on its own, with a fake clock
where time matters, so no test sleeps."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from connectors.kit.cursors import dump_cursor, fresh, load_cursor, low
from connectors.kit.held import Held
from connectors.kit.pacing import Pacer
from connectors.kit.paging import by_offset, follow, last_page, next_link, same_host
from poller.errors import ConnectorError


class FakeClock:
    """Time moves only when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# -- pacing -------------------------------------------------------------------------------


def test_pacing_spreads_what_is_left_below_half_the_limit_and_waits_at_the_reserve() -> None:
    clock = FakeClock()
    pacer = Pacer(reserve=10, clock=clock)
    assert pacer.before() == 0  # nothing known yet
    pacer.note({"RateLimit-Remaining": "150", "RateLimit-Limit": "200", "RateLimit-Reset": "60"})
    assert pacer.before() == 0  # above half: no pacing
    pacer.note({"RateLimit-Remaining": "70", "RateLimit-Limit": "200", "RateLimit-Reset": "60"})
    waits = [pacer.before() for _ in range(3)]
    # 60 s left for 70 - 10 requests: one a second, counted as each leaves
    assert waits[0] == pytest.approx(1.0)
    assert all(w > 0.9 for w in waits)
    pacer.note({"RateLimit-Remaining": "10", "RateLimit-Limit": "200", "RateLimit-Reset": "30"})
    assert pacer.before() == pytest.approx(30.0)  # the reserve is the other clients'


def test_pacing_reads_every_header_family_and_caps_the_wait() -> None:
    clock = FakeClock()
    pacer = Pacer(reserve=0, max_wait=5, clock=clock)
    assert pacer.note({"X-RateLimit-Remaining": "0", "Retry-After": "600"}) == 600
    assert pacer.before() == 5  # never longer than max_wait
    assert pacer.note({"Rate-Limit-Remaining": "x"}) is None


# -- held ---------------------------------------------------------------------------------


def test_held_builds_wait_until_released_or_their_deadline_across_runs() -> None:
    held = Held()
    assert held.hold("app#4", 1_000) == 1_000
    assert held.hold("app#4", 5_000) == 1_000  # held since the first time
    assert held.still_held("app#4", 2_000, max_age_ms=10_000)
    again = Held(held.as_dict())  # through the server cursor, into the next run
    assert list(again.expired(10_999, 10_000)) == []
    assert list(again.expired(11_000, 10_000)) == ["app#4"]
    assert again.as_dict() == {}
    held.release("app#4")
    assert not held.still_held("app#4", 2_000, max_age_ms=10_000)


# -- paging -------------------------------------------------------------------------------


def test_link_header_paging_follows_next_on_the_configured_host_only() -> None:
    base = "https://api.example.com/v2/"
    pages = {
        f"{base}builds": ([1, 2], {"Link": f'<{base}builds?page=2>; rel="next"'}),
        f"{base}builds?page=2": ([3], {"Link": f'<{base}builds?page=1>; rel="first"'}),
    }
    asked: list[tuple[str, Any]] = []

    def fetch(url: str, params: dict[str, Any] | None) -> tuple[list[int], dict[str, str]]:
        asked.append((url, params))
        return pages[url]

    got = list(
        follow(
            fetch,
            f"{base}builds",
            {"per_page": 2},
            items=lambda page: page,
            next_of=lambda _p, h: next_link(h) and same_host(next_link(h) or "", base),
        )
    )
    assert got == [1, 2, 3]
    assert asked == [(f"{base}builds", {"per_page": 2}), (f"{base}builds?page=2", None)]
    with pytest.raises(ConnectorError, match=r"another host \(evil\.example, not api"):
        same_host("https://evil.example/v2/builds?page=2", base)
    assert last_page({"Link": f'<{base}builds?page=40>; rel="last"'}) == 40


def test_a_listing_that_never_ends_stops_at_the_guard() -> None:
    endless = follow(
        lambda url, _p: ([url], {}), "u", None, items=lambda p: p, next_of=lambda p, _h: "u",
        max_pages=3,
    )  # fmt: skip
    with pytest.raises(ConnectorError, match="kept answering more pages"):
        list(endless)


def test_offset_paging_sizes_the_first_page_and_stops_at_a_short_one() -> None:
    rows = list(range(25))
    asked: list[tuple[int, int]] = []

    def fetch(offset: int, limit: int) -> list[int]:
        asked.append((offset, limit))
        return rows[offset : offset + limit]

    assert list(by_offset(fetch, 10, first=3)) == rows
    assert asked == [(0, 3), (3, 10), (13, 10), (23, 10)]
    asked.clear()
    taken = by_offset(fetch, 10)
    assert [next(taken) for _ in range(2)] == [0, 1]
    assert asked == [(0, 10)]  # the consumer stopped: nothing more was fetched


def test_offset_paging_under_a_server_cap_goes_on_until_an_empty_page() -> None:
    rows = list(range(23))
    asked: list[tuple[int, int]] = []

    def fetch(offset: int, limit: int) -> list[int]:
        asked.append((offset, limit))
        return rows[offset : offset + min(limit, 5)]  # the server gives at most 5

    assert list(by_offset(fetch, 100, capped=True)) == rows
    assert asked == [(0, 100), (5, 5), (10, 5), (15, 5), (20, 5), (23, 5)]
    asked.clear()
    # Without `capped`, the first capped page looks like the last one: 18 rows lost.
    assert list(by_offset(fetch, 100)) == rows[:5]


# -- cursors ------------------------------------------------------------------------------


def test_a_cursor_of_another_version_reads_as_none() -> None:
    text = dump_cursor(2, 5_000, seen=["a#1@4900"])
    assert load_cursor(text, 2) == {"v": 2, "at": 5_000, "seen": ["a#1@4900"]}
    assert load_cursor(text, 1) is None
    assert load_cursor("garbage", 2) is None
    assert load_cursor(None, 2) is None


def test_windows_reach_back_by_the_overlap_and_remember_what_they_saw() -> None:
    assert low(10_000, now=9_000, overlap=500) == 8_500  # a cursor in the future: now
    assert low(10_000, now=20_000, overlap=500) == 9_500
    assert fresh([("a", 19_600), ("b", 19_400)], now=20_000, overlap=500) == ["a"]


# -- http -----------------------------------------------------------------------------------


def test_get_capped_sends_per_request_headers_beside_the_sessions() -> None:
    """A versioned Accept on one request, another on the next: threads sharing a session
    never see each other's headers (GoCD's APIs each want their own version)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import requests

    from connectors.kit.http import get_capped, prepare
    from connectors.kit.throttle import Throttle
    from poller.model import ServerSpec

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({k: self.headers.get(k) for k in ("Accept", "X-Token")}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    spec = ServerSpec(name="s", type="t", url=url)
    session = prepare(requests.Session(), spec)
    session.headers["X-Token"] = "kept"
    try:
        seen = []
        for accept in ("application/vnd.go.cd.v4+json", None):
            _, body = get_capped(
                session,
                url,
                None,
                timeout=5,
                throttle=Throttle(1, None),
                on_request=None,
                system="Echo",
                limit=1 << 20,
                spec=spec,
                headers={"Accept": accept} if accept else None,
            )
            seen.append(json.loads(body))
    finally:
        server.shutdown()
        session.close()
    assert seen[0] == {"Accept": "application/vnd.go.cd.v4+json", "X-Token": "kept"}
    assert seen[1]["Accept"] == "*/*" and seen[1]["X-Token"] == "kept"  # not left behind


def test_a_gzip_answer_that_does_not_decode_is_one_line_not_a_traceback(httpserver: Any) -> None:
    """What a real Buildbot served, rarely, while other clients dropped their connections:
    `Content-Encoding: gzip` on a body missing its gzip header."""
    import gzip

    import requests

    from connectors.kit.http import get_capped, prepare
    from connectors.kit.throttle import Throttle
    from poller.model import ServerSpec

    headerless = gzip.compress(b'{"builds": []}' * 50)[10:]
    httpserver.expect_request("/api").respond_with_data(
        headerless, headers={"Content-Encoding": "gzip"}, content_type="application/json"
    )
    spec = ServerSpec(name="s", type="t", url=httpserver.url_for("/"))
    with prepare(requests.Session(), spec) as session, pytest.raises(ConnectorError) as caught:
        get_capped(
            session,
            httpserver.url_for("/api"),
            None,
            timeout=5,
            throttle=Throttle(1, None),
            on_request=None,
            system="Buildbot",
            limit=1 << 20,
            spec=spec,
        )
    assert "does not decode as its Content-Encoding (gzip) says" in str(caught.value)
    assert "\n" not in str(caught.value)


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("keys", "error"),
    [
        ({}, "set 'token' (an access token), or 'username' and 'password'"),
        ({"username": "u"}, "set both 'username' and 'password', or neither"),
        ({"token": "t", "username": "u", "password": "p"}, "not both"),
    ],
)
def test_credentials_are_a_token_or_a_user_and_password_never_both(
    keys: dict[str, str], error: str
) -> None:
    from pydantic import ValidationError

    from connectors.kit.settings import TokenOrPassword

    with pytest.raises(ValidationError, match=re.escape(error)):
        TokenOrPassword(**keys)  # type: ignore[arg-type]


def test_credentials_reach_the_server_as_bearer_or_basic(httpserver: Any) -> None:
    import requests

    from connectors.kit.settings import TokenOrPassword

    basic = "Basic " + base64.b64encode(b"sei-bot:pa:ss").decode()
    httpserver.expect_request("/t", headers={"Authorization": "Bearer tok"}).respond_with_data("t")
    httpserver.expect_request("/b", headers={"Authorization": basic}).respond_with_data("b")
    for path, keys in (
        ("/t", {"token": "tok"}),
        ("/b", {"username": "sei-bot", "password": "pa:ss"}),
    ):
        with requests.Session() as s:
            TokenOrPassword(**keys).authorise(s)  # type: ignore[arg-type]
            assert s.get(httpserver.url_for(path), timeout=5).text == path[1:]


def test_a_status_other_than_200_is_one_line_naming_the_system_and_who_refused() -> None:
    from connectors.kit.http import status_error
    from poller.errors import NotFound

    gone = status_error(404, "GoCD", "https://ci/x", ": no such pipeline")
    assert isinstance(gone, NotFound) and str(gone).startswith("not found (404): no such")
    refused = status_error(401, "Buildkite", "https://ci/x", who="token", hint=" (needs scope a)")
    assert "Buildkite refused the token (HTTP 401) (needs scope a)" in str(refused)
    assert "TeamCity denied access (HTTP 403)" in str(status_error(403, "TeamCity", "u"))
    failed = status_error(502, "Bamboo", "u", ": bad gateway")
    assert not isinstance(failed, NotFound) and failed.status == 502
    assert "HTTP 502 from Bamboo: bad gateway" in str(failed)
