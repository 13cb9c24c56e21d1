"""FakeJenkins' fault injection and finish log, over real HTTP, for chaos tests built on them."""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from connectors.jenkins.standin import FakeJenkins, seed_bulk

USER, TOKEN = "sei-bot", "jenkins-secret-token"


@pytest.fixture
def fj() -> Iterator[FakeJenkins]:
    with FakeJenkins() as fake:
        fake.add_build("app", 1)
        fake.add_build("team/svc", 1)
        yield fake


@pytest.fixture
def s() -> Iterator[requests.Session]:
    with requests.Session() as session:
        session.auth = (USER, TOKEN)
        yield session


def statuses(fj: FakeJenkins, s: requests.Session, path: str, n: int) -> list[int]:
    return [s.get(fj.url + path, timeout=5).status_code for _ in range(n)]


def test_flaky_replays_the_same_schedule_for_the_same_seed() -> None:
    """Same seed, same sequence of requests: the same requests fail; another seed differs."""
    runs = []
    for seed in (7, 7, 8):
        with FakeJenkins() as fj, requests.Session() as s:
            s.auth = (USER, TOKEN)
            fj.add_build("app", 1)
            fj.flaky(0.3, seed=seed, status=503, path_regex=r"^/job/app/")
            runs.append(statuses(fj, s, "job/app/1/api/json", 60))
            assert statuses(fj, s, "api/json", 10) == [200] * 10  # path_regex: only app
            flaky = [r for r in fj.requests if r.fault == "flaky"]
            assert len(flaky) == runs[-1].count(503) and all(r.status == 503 for r in flaky)
    assert runs[0] == runs[1] != runs[2]
    assert set(runs[0]) == {200, 503} and 8 <= runs[0].count(503) <= 30


def test_flaky_rate_bounds_and_clear(fj: FakeJenkins, s: requests.Session) -> None:
    fj.flaky(1.0, seed=1)
    assert statuses(fj, s, "api/json", 5) == [500] * 5
    fj.clear_faults()
    fj.flaky(0.0, seed=1)
    assert statuses(fj, s, "api/json", 5) == [200] * 5
    with pytest.raises(ValueError):
        fj.flaky(1.5, seed=1)


def test_break_path_is_permanent_until_healed(fj: FakeJenkins, s: requests.Session) -> None:
    """One build's wfapi and one folder's listing stay broken; everything else answers."""
    fj.add_build("team/deploy", 1)
    wfapi = r"^/job/team/job/deploy/1/wfapi/describe$"
    folder = r"^/job/team/api/json$"
    fj.break_path(wfapi)
    fj.break_path(folder, status=502)
    assert statuses(fj, s, "job/team/job/deploy/1/wfapi/describe", 3) == [500] * 3
    assert statuses(fj, s, "job/team/api/json", 3) == [502] * 3
    assert statuses(fj, s, "job/team/job/deploy/1/api/json", 2) == [200] * 2
    assert statuses(fj, s, "job/team/job/svc/api/json", 2) == [200] * 2
    assert fj.heal(wfapi) == 1
    assert fj.heal(wfapi) == 0
    assert s.get(fj.url + "job/team/job/deploy/1/wfapi/describe", timeout=5).status_code == 404
    assert s.get(fj.url + "job/team/api/json", timeout=5).status_code == 502  # still broken
    fj.clear_faults()
    assert s.get(fj.url + "job/team/api/json", timeout=5).status_code == 200
    assert [r.fault for r in fj.requests].count("break") == 7


def test_fail_times_counts_only_requests_it_fired_on(fj: FakeJenkins, s: requests.Session) -> None:
    fj.fail(r"/api/json$", 503, times=2)
    assert statuses(fj, s, "api/json", 4) == [503, 503, 200, 200]


def test_hang_sends_nothing_past_the_client_timeout(fj: FakeJenkins) -> None:
    """A hang is silence then a closed connection; a delay is slow but answers."""
    fj.hang(r"^/api/json$", 3.0)
    started = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        requests.get(fj.url + "api/json", auth=(USER, TOKEN), timeout=0.3)
    assert time.monotonic() - started < 2
    assert fj.requests[-1].status == 0 and fj.requests[-1].fault == "hang"
    assert requests.get(fj.url + "job/app/api/json", auth=(USER, TOKEN), timeout=5).ok
    fj.clear_faults()
    fj.hang(r"^/api/json$", 0.3, times=1)
    with pytest.raises(requests.ConnectionError):  # waited it out: closed, no answer
        requests.get(fj.url + "api/json", auth=(USER, TOKEN), timeout=5)
    assert requests.get(fj.url + "api/json", auth=(USER, TOKEN), timeout=5).ok  # times=1
    fj.delay(r"^/api/json$", 0.3)
    started = time.monotonic()
    assert requests.get(fj.url + "api/json", auth=(USER, TOKEN), timeout=5).ok
    assert time.monotonic() - started >= 0.3
    assert fj.requests[-1].fault == "delay"


def test_reset_cuts_the_answer_off_mid_body(fj: FakeJenkins, s: requests.Session) -> None:
    """Status line and headers arrive, then half the body, then a connection reset."""
    fj.reset(r"^/job/app/api/json$", times=1)
    host, port = fj.url.split("//")[1].rstrip("/").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    auth = {"Authorization": requests.auth._basic_auth_str(USER, TOKEN)}
    conn.request("GET", "/job/app/api/json", headers=auth)
    resp = conn.getresponse()
    assert resp.status == 200
    length = int(resp.headers["Content-Length"])
    with pytest.raises((http.client.IncompleteRead, ConnectionResetError)):
        resp.read()
    conn.close()
    rec = fj.requests[-1]
    assert rec.fault == "reset" and rec.status == 200 and 0 < rec.size < length
    assert s.get(fj.url + "job/app/api/json", timeout=5).ok  # times=1: the next one is whole
    fj.reset(r"^/job/app/api/json$")
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        requests.get(fj.url + "job/app/api/json", auth=(USER, TOKEN), timeout=5)


def test_finish_log_records_when_and_how_each_build_finished(fj: FakeJenkins) -> None:
    before = time.time()
    fj.add_build("app", 2, building=True, result=None)
    assert fj.finished("app", 2) is None and fj.finished_at("app", 2) is None
    time.sleep(0.01)
    fj.finish_build("app", 2, "FAILURE")
    after = time.time()
    at = fj.finished_at("app", 2)
    assert at is not None and before < at <= after
    assert fj.final_result("app", 2) == "FAILURE"
    fj.finish_build("app", 2, "ABORTED")  # again: the first finish time stays
    assert fj.finished("app", 2) == (at, "ABORTED")
    assert fj.final_result("app", 1) == "SUCCESS"  # added finished
    assert fj.final_result("/team/svc/", 1) == "SUCCESS"
    assert fj.finished("app", 99) is None and fj.finished("nope", 1) is None
    fj.delete_build("app", 2)
    assert fj.finished_at("app", 2) == at  # history survives retention
    fj.recreate_job("app")
    fj.add_build("app", 1, building=True, result=None)
    assert fj.finished("app", 1) is None  # the new #1 is running


def test_finish_log_covers_bulk_builds() -> None:
    with FakeJenkins() as fj:
        before = time.time()
        seed_bulk(fj, folders=1, jobs_per_folder=1, builds_per_job=3)
        job = "folder-000/job-000"  # serial 0: its newest build is running
        assert fj.final_result(job, 1) is not None
        assert before <= (fj.finished_at(job, 1) or 0) <= time.time()
        assert fj.finished(job, 3) is None
        fj.finish_build(job, 3, "SUCCESS")
        assert fj.final_result(job, 3) == "SUCCESS"
        assert (fj.finished_at(job, 3) or 0) >= (fj.finished_at(job, 1) or 0)


def test_model_changes_under_concurrent_requests(fj: FakeJenkins) -> None:
    """Builds added, finished and deleted and jobs deleted and recreated while four clients
    read: every answer is whole (200 with JSON, or 404 for what just went away)."""
    stop = threading.Event()
    bad: list[tuple[str, int]] = []

    def writer() -> None:
        n = 2
        while not stop.is_set() and n < 300:
            fj.add_build("app", n, building=True, result=None)
            fj.finish_build("app", n, "SUCCESS" if n % 3 else "FAILURE")
            if n % 5 == 0:
                fj.delete_build("app", n - 1)
            if n % 40 == 0:
                fj.delete_job("team/svc")
                fj.add_build("team/svc", 1, building=True, result=None)
                fj.recreate_job("team/svc")
                fj.add_build("team/svc", 1)
            n += 1

    def reader() -> None:
        with requests.Session() as s:
            s.auth = (USER, TOKEN)
            for i in range(60):
                path = (
                    "job/app/api/json?tree=builds[number,result,building]{0,50}",
                    "job/team/job/svc/1/api/json",
                    "job/team/api/json?tree=jobs[name,lastBuild[number]]",
                    f"job/app/{2 + i}/api/json",
                )[i % 4]
                resp = s.get(fj.url + path, timeout=10)
                if resp.status_code == 200:
                    resp.json()
                elif resp.status_code != 404:
                    bad.append((path, resp.status_code))

    w = threading.Thread(target=writer)
    readers = [threading.Thread(target=reader) for _ in range(4)]
    w.start()
    for r in readers:
        r.start()
    for r in readers:
        r.join()
    stop.set()
    w.join()
    assert bad == []
    assert all(r.status in (200, 404) for r in fj.requests)
