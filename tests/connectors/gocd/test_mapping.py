"""The pure half of the GoCD connector (`connectors/gocd/mapping.py`) on the recorded answers:
what finished, who triggered, what was built, how long, how runs are numbered."""

from __future__ import annotations

import connectors.gocd.mapping as m
from connectors.gocd.standin.fixtures import captured_instances, read_json
from poller.model import Cause

A = "gocd-api/history-a-pipeline.json"
A3 = "gocd-api/history-a-pipeline_3.json"
DOWN = "gocd-api/history-downstream-pipeline.json"
SDK = "gocd-sdk-go/pipeline_history.json"


def by_counter(rel: str, counter: int) -> dict:
    return next(i for i in captured_instances(rel) if i["counter"] == counter)


def test_progress_of_the_captured_instances() -> None:
    # 2066: jobs still `Building` (the capture says so, whatever `result` says): running
    assert m.progress(by_counter(A, 2066)).state == "running"
    # 2065: every stage passed, the manual deploy-showcase too, but a job is still
    # `Scheduled` in the capture (edited, perhaps): not finished until every job completed
    assert m.progress(by_counter(A, 2065)).state == "running"
    assert m.progress(by_counter(SDK, 3)) == m.Progress("done")
    # 2063: stopped in front of the manual deploy-showcase, waited on since the last
    # stage's jobs were scheduled
    waiting = m.progress(by_counter(A3, 2063))
    last = by_counter(A3, 2063)["stages"][4]["jobs"][0]["scheduled_date"]
    assert waiting == m.Progress("waiting", last, "deploy-showcase")
    # 2062: functional-test failed, nothing after it runs on its own: finished
    assert m.progress(by_counter(A3, 2062)) == m.Progress("done")
    assert m.result_of(by_counter(A3, 2062)["stages"]) == ("FAILURE", "Failed")
    # a cancelled stage
    assert m.result_of(by_counter(DOWN, 265)["stages"]) == ("ABORTED", "Cancelled")
    assert m.result_of(by_counter(SDK, 3)["stages"]) == ("SUCCESS", "Passed")


def test_triggers_of_the_captured_instances() -> None:
    assert m.own_trigger(by_counter(SDK, 3)["build_cause"]) == (
        "admin",
        [Cause("UserIdCause", "admin")],
    )
    assert m.own_trigger(by_counter(SDK, 2)["build_cause"]) == (
        "SCMTrigger",
        [Cause("SCMTriggerCause", "SCMTrigger")],
    )
    down = by_counter(DOWN, 265)["build_cause"]
    assert m.trigger_kind(down) == "upstream"
    assert m.upstreams(down) == [m.Upstream("A-PIPELINE", 2066, "smoke-test-dev", 1, 1450893276621)]
    timer = {"trigger_message": "Forced by timer", "trigger_forced": True, "approver": "timer"}
    assert m.own_trigger(timer) == ("TimerTrigger", [Cause("TimerTriggerCause", "timer")])
    assert m.approver_trigger("changes") is None
    assert m.approver_trigger("bob") == ("bob", [Cause("UserIdCause", "bob")])


def test_two_git_materials() -> None:
    scm = m.scm(by_counter(A3, 2062)["build_cause"])
    assert scm.commits == (
        "c1ea2cb484b7a3eb8851994d3908adcfead773a1",
        "f8d6e56f31505863ea87c76f716a9418bee29205",
        "41b4b36cad8684b88ba1866d660bc675dc50e7ed",
    )
    assert (scm.repo_url, scm.branch) == ("git@github.com:A-PIPELINE/repo.git", "master")
    # a dependency material gives no commit and no repository
    assert m.scm(by_counter(DOWN, 265)["build_cause"]) == m.Scm((), None, None)


def test_stage_times_and_lost_agents() -> None:
    stage = read_json("api-docs/stage_instance.extracted.json")
    # the doc example's transitions (its Scheduled time is later than the rest: kept as is)
    assert m.span(stage) == (1436509542522, 1436509642631)
    lost = read_json("gocd-sdk-go/agent_run_history.json")["jobs"][0]
    assert m.transitions(lost)["Building"] == 1573518139000  # ISO strings read too
    assert m.live_jobs({"jobs": [{**lost, "state": "Rescheduled", "name": "jasmine"}]}) == []


def test_numbers_and_generations() -> None:
    assert m.number([], 5, 12) == 12
    assert m.number([100], 99, 12) == 12 and m.number([100], 100, 3) == m.GEN + 3
    assert m.decode(2 * m.GEN + 4002) == (2, 4002)
    assert m.stage_base(4, 2) == 4002 and m.stage_base(4, 1000) is None
    newest_first = [
        {"counter": 2, "scheduled_date": 300},
        {"counter": 1, "scheduled_date": 200},
        {"counter": 50, "scheduled_date": 100},
    ]
    assert m.reset_boundary(newest_first) == 200
    assert m.reset_boundary(newest_first[:2]) is None
    assert m.reset_boundary(captured_instances(A)) is None  # 2066, 2065, 2064
