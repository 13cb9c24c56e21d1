"""What a GoCD poll costs and what it survives: the idle poll, cursor paging, counters that
start again, renamed pipelines, backfill, versioned Accept headers, old servers, login
pages, credentials, details that keep failing."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.gocd.standin import FakeGoCD, changes, commit, forced, now_ms
from poller.standins.sei import FakeSei
from tests.connectors.gocd.env import DAY, GEN, HOUR, MINUTE, SECOND, Env
from tests.connectors.gocd.test_connector import ALICE, APP

T0 = (now_ms() - 2 * DAY) // SECOND * SECOND


@pytest.fixture()
def env(tmp_path: Path) -> Iterator[Env]:
    with FakeGoCD() as gocd, FakeSei() as sei:
        e = Env(gocd, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        yield e


def paths(env: Env) -> list[tuple[str, int]]:
    return [(r.path, r.status) for r in env.gocd.requests]


# -- cost ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("granularity", ["pipeline", "stage"])
def test_an_idle_poll_costs_one_request_however_many_pipelines(env: Env, granularity: str) -> None:
    g = env.gocd
    for k in range(30):
        g.add_pipeline(f"p{k:02d}", f"g{k % 3}", ["build", "test"], [APP])
        g.run(f"p{k:02d}", forced("alice"), at=T0 + k * MINUTE)
    env.write(granularity=granularity)
    assert env.once() == 0
    assert len(env.sei.received) == 30 * (1 if granularity == "pipeline" else 2)
    for _ in range(2):
        g.reset_requests()
        assert env.once() == 0
        assert paths(env) == [("/go/api/dashboard", 304)]


def test_a_poll_reads_only_the_pipeline_that_moved(env: Env) -> None:
    g = env.gocd
    for name in ("a", "b", "c"):
        g.add_pipeline(name, "g", ["build", "test"], [APP])
        g.run(name, forced("alice"), at=T0)
    assert env.once() == 0
    g.run("b", forced("bob"), at=now_ms() - HOUR)
    g.reset_requests()
    assert env.once() == 0
    assert paths(env) == [
        ("/go/api/dashboard", 200),
        ("/go/api/pipelines/b/history", 200),  # page 1, at discovery, reused by the scan
        ("/go/api/stages/b/build/history", 200),  # re-runs of older instances show here
        ("/go/api/stages/b/test/history", 200),
        ("/go/api/stages/b/2/build/1", 200),  # job times: one per stage of what is sent
        ("/go/api/stages/b/2/test/1", 200),
    ]
    assert env.sent("b") == [1, 2]


def test_history_pages_by_internal_id_with_our_page_size(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("big", "g", ["build"], [APP])
    g.add_pipeline("other", "g", ["build"], [APP])
    for k in range(250):
        g.run("big", forced("alice"), at=T0 + k * MINUTE)
        if k % 2:
            g.run("other", forced("alice"), at=T0 + k * MINUTE + SECOND)  # ids interleave
    assert env.once() == 0
    assert env.sent("big") == list(range(1, 251))
    pages = [r for r in g.requests if r.path == "/go/api/pipelines/big/history"]
    assert [r.query.get("page_size") for r in pages] == ["100", "100", "100"]
    afters = [int(r.query["after"]) for r in pages if "after" in r.query]
    # the cursor is the instance id (big's 151st newest instance has id 226, not 151)
    ids = {i.counter: i.id for i in g.instances if i.pipeline == "big"}
    assert afters == [ids[151], ids[51]]
    assert afters != [151, 51]


# -- counters that start again, renamed pipelines -------------------------------------------------


@pytest.mark.parametrize("granularity", ["pipeline", "stage"])
def test_a_recreated_pipeline_counts_from_1_again_and_nothing_is_lost(
    env: Env, granularity: str, capsys: pytest.CaptureFixture[str]
) -> None:
    g = env.gocd
    env.write(granularity=granularity)
    job = "app" if granularity == "pipeline" else "app/build"
    unit = 1 if granularity == "pipeline" else 1000
    g.add_pipeline("app", "g", ["build"], [APP])
    for k in range(3):
        g.run("app", forced("alice"), at=T0 + k * HOUR)
    assert env.once() == 0
    assert env.sent(job) == [
        unit + (unit == 1000),
        2 * unit + (unit == 1000),
        3 * unit + (unit == 1000),
    ]
    g.recreate_pipeline("app")  # GoCD keeps the old instances; its history shows them too
    now = now_ms() // SECOND * SECOND
    g.run("app", forced("bob"), at=now - 2 * HOUR)
    g.run("app", forced("bob"), at=now - HOUR)
    assert env.once() == 0
    new = [GEN + unit + (unit == 1000), GEN + 2 * unit + (unit == 1000)]
    assert env.sent(job)[3:] == new
    assert len(env.sei.received) == 5  # the old ones were not sent again
    assert [env.runs()[(job, n)]["user_id"] for n in new] == ["bob", "bob"]
    assert "pipeline counter started again" in capsys.readouterr().err
    g.reset_requests()
    assert env.once() == 0 and paths(env) == [("/go/api/dashboard", 304)]
    g.run("app", forced("carol"), at=now - MINUTE)
    assert env.once() == 0
    assert env.sent(job)[-1] == GEN + 3 * unit + (unit == 1000)


def test_a_renamed_pipeline_is_a_new_job(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("app", "g", ["build"], [APP])
    g.run("app", forced("alice"), at=T0)
    g.run("app", forced("alice"), at=T0 + HOUR)
    assert env.once() == 0
    g.rename_pipeline("app", "app-v2")
    g.run("app-v2", forced("bob"), at=now_ms() - HOUR)
    assert env.once() == 0
    assert sorted(env.runs()) == [("app", 1), ("app", 2), ("app-v2", 1)]
    assert env.cursor()["pipelines"]["app"]["gone"] is True
    assert env.once() == 0 and len(env.sei.received) == 3


# -- backfill -------------------------------------------------------------------------------------


def test_backfill_since_then_further_back_resumably(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("app", "g", ["build"], [APP])
    now = now_ms() // SECOND * SECOND
    for days in (40, 20, 10):
        g.run("app", forced("alice"), at=now - days * DAY)
    env.write(backfill_since="30d")
    assert env.once() == 0
    assert env.sent("app") == [2, 3]
    assert env.run("backfill", "--since", "60d") == 0
    assert env.sent("app") == [1, 2, 3]
    g.reset_requests()
    assert env.run("backfill", "--since", "60d") == 0  # done already: nothing read again
    assert [p for p, _ in paths(env)] == ["/go/api/dashboard"]
    assert len(env.sei.received) == 3


# -- versions, pages that are not the API, credentials -------------------------------------------


def test_an_api_version_the_server_does_not_serve_is_one_clear_line(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    g = env.gocd
    g.served["stage"] = 2  # a GoCD older than 20.9 serves stage instance v2 only
    g.add_pipeline("app", "g", ["build"], [APP])
    g.run("app", forced("alice"), at=T0)
    env.write(give_up_after="never")
    assert env.once() == 1
    err = capsys.readouterr().err
    assert "stages/app/1/build/1 answered HTTP 404 with a page, not JSON" in err
    assert "application/vnd.go.cd.v3+json, served since GoCD 20.9.0" in err
    assert "Traceback" not in err and "JSONDecodeError" not in err


def test_check_refuses_a_server_too_old(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with FakeGoCD(version="20.1.0") as gocd, FakeSei() as sei:
        e = Env(gocd, sei, tmp_path, tmp_path / "config.toml")
        e.write()
        assert e.run("check") == 1
        out = capsys.readouterr().out
        assert "GoCD 20.1.0 is too old: sei-poller needs GoCD 20.9.0 or later" in out
        assert "FAILED" in out


def test_check_reports_version_user_and_pipelines(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("a", "b"):
        env.gocd.add_pipeline(name, "g", ["build"], [APP])
    assert env.run("check") == 0
    assert "GoCD 23.1.0, 2 pipelines visible as sei-bot, 2 jobs" in capsys.readouterr().out


def test_a_login_page_in_front_of_gocd_is_one_line(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.gocd.faults.page(r"^/go/api/")
    assert env.once() == 1
    err = capsys.readouterr().err
    assert "api/dashboard answered HTTP 200 with an HTML page titled" in err
    assert "Traceback" not in err


def test_url_with_or_without_go_and_basic_auth(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("app", "g", ["build"], [APP])
    g.run("app", forced("alice"), at=T0)
    root = g.url.removesuffix("go/")
    env.write(url=root, token=None, username=g.username, password=g.password)
    assert env.once() == 0
    assert env.sent("app") == [1]
    assert env.runs()[("app", 1)]["web_url"] == f"{g.url}pipelines/value_stream_map/app/1"


def test_wrong_token_is_refused_in_one_line_and_never_logged(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    env.write(token="not-the-token")
    assert env.once() == 1
    err = capsys.readouterr().err
    assert "GoCD refused the credentials (HTTP 401): You are not authenticated!" in err
    assert "not-the-token" not in err


def test_a_dashboard_still_loading_is_tried_again(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    g = env.gocd
    g.add_pipeline("app", "g", ["build"], [APP])
    g.run("app", forced("alice"), at=T0)
    g.loading = True
    assert env.once() == 1
    assert "GoCD is still loading its dashboard (HTTP 202)" in capsys.readouterr().err
    g.loading = False
    assert env.once() == 0 and env.sent("app") == [1]


def test_details_that_keep_failing_park_the_instance_not_the_pipeline(env: Env) -> None:
    g = env.gocd
    g.add_pipeline("app", "g", ["build"], [APP])
    g.run("app", forced("alice"), at=T0)
    g.run("app", forced("alice"), at=T0 + HOUR)
    g.faults.break_path(r"^/go/api/stages/app/1/build/1$")
    assert env.once() == 1
    assert env.sent("app") == [2]
    with sqlite3.connect(env.dir / "state.db") as db:
        parked = db.execute("SELECT job, number FROM problems").fetchall()
    assert parked == [("app", 1)]
    g.faults.clear()
    with sqlite3.connect(env.dir / "state.db") as db:
        db.execute("UPDATE problems SET retry_at = 0")
    assert env.once() == 0
    assert env.sent("app") == [1, 2]
    assert env.runs()[("app", 1)]["duration"] == 60 * SECOND


def test_secrets_stay_out_of_state_and_logs(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    g = env.gocd
    g.add_pipeline("app", "g", ["build"], [APP])
    g.run("app", changes((APP, [commit("a" * 40, ALICE, T0)])), at=T0)
    assert env.once() == 0
    blob = (env.dir / "state.db").read_bytes()
    assert g.token.encode() not in blob and b"s3cret" not in blob
    assert g.token not in capsys.readouterr().err


def test_a_reset_before_sei_poller_came_is_seen_on_page_1_or_stops_the_walk(
    env: Env, capsys: pytest.CaptureFixture[str]
) -> None:
    g = env.gocd
    g.add_pipeline("near", "g", ["build"], [APP])
    g.add_pipeline("far", "g", ["build"], [APP])
    for k in range(5):
        g.run("near", forced("alice"), at=T0 + k * MINUTE)
        g.run("far", forced("alice"), at=T0 + k * MINUTE)
    g.recreate_pipeline("near")
    g.recreate_pipeline("far")
    for k in range(3):
        g.run("near", forced("bob"), at=T0 + HOUR + k * MINUTE)
    for k in range(105):  # the reset lies beyond the first page
        g.run("far", forced("bob"), at=T0 + HOUR + k * MINUTE)
    assert env.once() == 0
    # near: the jump shows on page 1, the new runs are a generation of their own
    assert env.sent("near") == [1, 2, 3, 4, 5, GEN + 1, GEN + 2, GEN + 3]
    # far: found while walking back, past it nothing is read (its numbers would collide)
    assert env.sent("far") == list(range(1, 106))
    assert "counter was reset before sei-poller saw it" in capsys.readouterr().err
