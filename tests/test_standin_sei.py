"""FakeSei answers like SEI's /v1/custom-cicd, so tests built on it mean something."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from poller.standins.sei import DROP, FakeSei

KEY = "sei-secret-key"
AUTH = {"Authorization": f"ApiKey {KEY}"}


def run(job: str = "team/app", number: int = 1, **extra: Any) -> dict[str, Any]:
    payload = {
        "pipeline": job.rsplit("/", 1)[-1],
        "job_full_name": job,
        "qualified_name": job,
        "instance_name": "Jenkins-1",
        "instance_guid": "666ba79b-3f3d-4236-ac04-4686ce526705",
        "build_number": number,
        "start_time": 1_700_000_000_000,
        "duration": 1000,
        "result": "SUCCESS",
    }
    payload.update(extra)
    return payload


@pytest.fixture
def sei() -> Iterator[FakeSei]:
    with FakeSei(api_key=KEY) as fake:
        yield fake


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.headers.update(AUTH)
        yield session


def test_urls(sei: FakeSei) -> None:
    """The endpoint is base_url + /v1/custom-cicd under SEI's prod2 path."""
    assert sei.url == sei.base_url + "/v1/custom-cicd"
    assert sei.base_url.startswith("http://127.0.0.1:")
    assert sei.base_url.endswith("/gratis/sei/api")


def test_accepts_run_with_202_and_records_it(sei: FakeSei, http: requests.Session) -> None:
    """A complete run is answered 202 and appears in received, keys and attempts."""
    resp = http.post(sei.url, json=run(number=7), timeout=5)
    assert resp.status_code == 202
    assert sei.received == [run(number=7)]
    assert sei.keys() == [("666ba79b-3f3d-4236-ac04-4686ce526705", "team/app", 7)]
    assert sei.attempts == [(202, run(number=7))]


def test_first_write_wins_in_runs(sei: FakeSei, http: requests.Session) -> None:
    """A re-send is accepted again but runs() keeps the first, as SEI stores it."""
    http.post(sei.url, json=run(result="FAILURE"), timeout=5)
    http.post(sei.url, json=run(result="SUCCESS"), timeout=5)
    assert len(sei.keys()) == 2
    (stored,) = sei.runs().values()
    assert stored["result"] == "FAILURE"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "ApiKey wrong"}, {"Authorization": f"Bearer {KEY}"}],
    ids=["none", "wrong-key", "wrong-scheme"],
)
def test_auth_required(sei: FakeSei, headers: dict[str, str]) -> None:
    """Anything but `ApiKey <key>` is 401 and nothing is received."""
    resp = requests.post(sei.url, json=run(), headers=headers, timeout=5)
    assert resp.status_code == 401
    assert sei.received == []
    assert sei.attempts == [(401, run())]


def test_empty_object_is_400_naming_a_field(sei: FakeSei, http: requests.Session) -> None:
    """`POST {}` is 400 (what `check` relies on to prove the key was accepted)."""
    resp = http.post(sei.url, json={}, timeout=5)
    assert resp.status_code == 400
    assert resp.json() == {"payload": "job_name/pipeline field is missing in request"}


@pytest.mark.parametrize(
    "field", ["pipeline", "instance_name", "instance_guid", "job_full_name", "qualified_name"]
)
def test_each_required_field(sei: FakeSei, http: requests.Session, field: str) -> None:
    """Each field SEI checks is required; the 400 body names it."""
    payload = run()
    del payload[field]
    resp = http.post(sei.url, json=payload, timeout=5)
    assert resp.status_code == 400
    assert field in resp.json()["payload"]
    assert sei.received == []


def test_empty_result_is_missing(sei: FakeSei, http: requests.Session) -> None:
    """SEI uses StringUtils.isEmpty: an empty string counts as missing."""
    resp = http.post(sei.url, json=run(result=""), timeout=5)
    assert resp.status_code == 400
    assert "result" in resp.json()["payload"]


def test_optional_fields_not_checked(sei: FakeSei, http: requests.Session) -> None:
    """start_time, duration and build_number are not validated (SEI stores 0)."""
    payload = run()
    for field in ("start_time", "duration", "build_number"):
        del payload[field]
    assert http.post(sei.url, json=payload, timeout=5).status_code == 202
    assert sei.keys()[0][2] == 0


def test_not_json_is_400(sei: FakeSei, http: requests.Session) -> None:
    resp = http.post(
        sei.url, data=b"{nope", headers={"Content-Type": "application/json"}, timeout=5
    )
    assert resp.status_code == 400
    assert sei.attempts == [(400, None)]


def test_content_type_required(sei: FakeSei, http: requests.Session) -> None:
    resp = http.post(sei.url, data=b"{}", headers={"Content-Type": "text/plain"}, timeout=5)
    assert resp.status_code == 415


def test_wrong_path_is_404_and_get_is_405(sei: FakeSei, http: requests.Session) -> None:
    assert http.post(sei.base_url + "/v1/custom-cicd/", json=run(), timeout=5).status_code == 404
    resp = http.get(sei.url, timeout=5)
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"


def test_registration_returns_guid(sei: FakeSei, http: requests.Session) -> None:
    """A registration body gets 200 and a fresh GUID as a JSON string."""
    body = {"integration_id": "4242", "name": "Custom CI/CD Integration", "type": "jenkins"}
    resp = http.post(sei.url, json=body, timeout=5)
    assert resp.status_code == 200
    guid = resp.json()
    assert isinstance(guid, str)
    assert len(guid) == 36
    assert sei.registered == [{**body, "guid": guid}]
    assert sei.received == []
    second = http.post(sei.url, json=body, timeout=5).json()
    assert second != guid


def test_script_queue_in_order(sei: FakeSei, http: requests.Session) -> None:
    """Scripted answers are used one per POST in order, with their headers, then normal."""
    sei.script((503, None), (503, None), (429, {"Retry-After": "1"}))
    answers = [http.post(sei.url, json=run(), timeout=5) for _ in range(4)]
    assert [r.status_code for r in answers] == [503, 503, 429, 202]
    assert answers[2].headers["Retry-After"] == "1"
    assert "Retry-After" not in answers[3].headers
    assert [status for status, _ in sei.attempts] == [503, 503, 429, 202]
    assert len(sei.received) == 1


def test_script_applies_before_auth(sei: FakeSei) -> None:
    """A forced answer is given whatever the request; it is consumed all the same."""
    sei.script((500, None))
    assert requests.post(sei.url, json={}, timeout=5).status_code == 500
    assert requests.post(sei.url, json={}, timeout=5).status_code == 401


def test_script_drop_is_a_connection_error(sei: FakeSei, http: requests.Session) -> None:
    """Status 0 closes the connection unanswered, then service resumes."""
    sei.script((DROP, None))
    with pytest.raises(requests.ConnectionError):
        http.post(sei.url, json=run(), timeout=5)
    assert http.post(sei.url, json=run(), timeout=5).status_code == 202
    assert [status for status, _ in sei.attempts] == [DROP, 202]


def test_reject_one_build(sei: FakeSei, http: requests.Session) -> None:
    """reject() answers its status for that build every time and leaves others alone."""
    sei.reject("team/app", 2, 400, '{"payload":"bad stage"}')
    for _ in range(2):
        resp = http.post(sei.url, json=run(number=2), timeout=5)
        assert resp.status_code == 400
        assert resp.json() == {"payload": "bad stage"}
    assert http.post(sei.url, json=run(number=3), timeout=5).status_code == 202
    assert http.post(sei.url, json=run("other", 2), timeout=5).status_code == 202
    received = sei.keys()
    assert [(job, number) for _, job, number in received] == [("team/app", 3), ("other", 2)]


def test_refuse_key(sei: FakeSei, http: requests.Session) -> None:
    """refuse_key() makes every POST 401 until it is lifted."""
    sei.refuse_key()
    assert http.post(sei.url, json=run(), timeout=5).status_code == 401
    sei.refuse_key(False)
    assert http.post(sei.url, json=run(), timeout=5).status_code == 202


def test_keep_alive_reuses_one_connection(sei: FakeSei, http: requests.Session) -> None:
    """HTTP/1.1 keep-alive: a session's POSTs share one TCP connection, and stay fast."""
    started = time.perf_counter()
    for n in range(50):
        assert http.post(sei.url, json=run(number=n), timeout=5).status_code == 202
    elapsed = time.perf_counter() - started
    assert sei.connections == 1
    # 40 ms per request would mean Nagle + delayed ACK; 50 requests must take far less.
    assert elapsed < 1.0


def test_latency_served_in_parallel() -> None:
    """With latency, concurrent clients are answered in parallel, not one by one."""
    with FakeSei(latency=0.2) as sei, ThreadPoolExecutor(8) as pool:
        started = time.perf_counter()
        codes = list(
            pool.map(
                lambda n: requests.post(sei.url, json=run(number=n), headers=AUTH, timeout=5),
                range(8),
            )
        )
        elapsed = time.perf_counter() - started
    assert [r.status_code for r in codes] == [202] * 8
    assert 0.2 <= elapsed < 1.0


def test_latency_settable_at_runtime(sei: FakeSei, http: requests.Session) -> None:
    sei.latency = 0.15
    started = time.perf_counter()
    http.post(sei.url, json=run(), timeout=5)
    assert time.perf_counter() - started >= 0.15


def test_wait_for_and_reset(sei: FakeSei, http: requests.Session) -> None:
    assert not sei.wait_for(1, timeout=0.05)
    http.post(sei.url, json=run(), timeout=5)
    assert sei.wait_for(1, timeout=1)
    sei.reset()
    assert sei.received == sei.attempts == []


def test_stop_is_idempotent_and_closes_keep_alive() -> None:
    """stop() returns promptly even with an idle keep-alive client, and twice is fine."""
    sei = FakeSei().start()
    url = sei.url
    with requests.Session() as session:
        session.post(url, json=run(), headers=AUTH, timeout=5)
        started = time.perf_counter()
        sei.stop()
        sei.stop()
        assert time.perf_counter() - started < 1.0
        with pytest.raises(requests.ConnectionError):
            session.post(url, json=run(), headers=AUTH, timeout=2)
