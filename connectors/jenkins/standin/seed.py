"""Seeders: a small realistic controller (``seed_demo``) and a large cheap one (``seed_bulk``)."""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from .fixtures import _fixtures
from .model import _Job, _Lazy
from .names import _DAY_MS, _WF_STATUS, USER_CAUSE, _now_ms, _sha

if TYPE_CHECKING:
    from .controller import FakeJenkins


def seed_demo(fj: FakeJenkins, *, now_ms: int | None = None) -> None:
    """A small, realistic controller for the demo command and for end-to-end tests.

    Contents (timestamps within the last week before ``now_ms``):

    - ``team/api`` freestyle, #1-#6 (SUCCESS, FAILURE, SUCCESS, UNSTABLE, SUCCESS, SUCCESS):
      string/boolean/password (no value)/file parameters, ``UserIdCause``, git BuildData whose
      remote carries credentials (``https://ci-bot:ghp_secret@github.com/acme/api``), change
      ids, one artifact.
    - ``team/deploy`` pipeline, #1-#5 started by ``UpstreamCause`` from ``team/api`` builds;
      #2 ABORTED, #4 FAILURE, #5 still building; explicit Checkout/Build/Deploy stages; two
      BuildData actions (the shared library's first, then the project's).
    - ``team/docs`` freestyle with no builds (``color: notbuilt``).
    - ``svc`` multibranch with branch jobs ``main`` (#1-#4, #3 FAILURE) and ``feature%2Fx``
      (#1-#3, #2 NOT_BUILT): ``BranchIndexingCause``/``BranchEventCause``, remote
      ``git@github.com:acme/svc.git``, generated stages.
    - ``nightly-cleanup`` freestyle at the top level, #1-#3 started by ``TimerTriggerCause``.
    """
    now = _now_ms() if now_ms is None else now_ms
    day, hour, minute = _DAY_MS, 3_600_000, 60_000
    fj.add_folder("team")
    fj.add_job("team/api", "freestyle")
    fj.add_job("team/deploy", "pipeline")
    fj.add_job("team/docs", "freestyle")
    fj.add_folder("svc", "multibranch")
    fj.add_job("svc/main", "pipeline")
    fj.add_job("svc/feature%2Fx", "pipeline")
    fj.add_job("nightly-cleanup", "freestyle")

    api_remote = "https://ci-bot:ghp_secret@github.com/acme/api"
    api_results = ["SUCCESS", "FAILURE", "SUCCESS", "UNSTABLE", "SUCCESS", "SUCCESS"]
    api_users = [("alice", "Alice Example"), ("bob", "Bob Builder")]
    for i, result in enumerate(api_results, start=1):
        uid, name = api_users[i % 2]
        sha = _sha("acme/api", i)
        fj.add_build(
            "team/api",
            i,
            result=result,
            timestamp=now - (7 - i) * day - 2 * hour,
            duration=95_000 + 7_000 * i,
            causes=[{"_class": USER_CAUSE, "userId": uid, "userName": name}],
            parameters=[
                {"_class": "hudson.model.StringParameterValue", "name": "GIT_REF", "value": "main"},
                {
                    "_class": "hudson.model.BooleanParameterValue",
                    "name": "RUN_E2E",
                    "value": i % 2 == 0,
                },
                {"_class": "hudson.model.PasswordParameterValue", "name": "DEPLOY_TOKEN"},
                {"_class": "hudson.model.FileParameterValue", "name": "release-notes.md"},
            ],
            git={"sha": sha, "branch": "refs/remotes/origin/main", "remote": api_remote},
            change_ids=[_sha("acme/api", i, "c1"), _sha("acme/api", i, "c2")][: 1 + i % 2],
            artifacts=[f"build/libs/api-1.4.{i}.jar"],
        )

    lib = {
        "sha": _sha("acme/jenkins-shared-lib", 3),
        "branch": "refs/remotes/origin/main",
        "remote": "https://github.com/acme/jenkins-shared-lib.git",
    }
    deploy: list[tuple[int, str | None]] = [
        (1, "SUCCESS"),
        (3, "ABORTED"),
        (5, "SUCCESS"),
        (6, "FAILURE"),
        (6, None),
    ]
    for n, (upstream, outcome) in enumerate(deploy, start=1):
        building = outcome is None
        start = now - 2 * minute if building else now - (7 - upstream) * day - hour
        dur = 240_000
        fj.add_build(
            "team/deploy",
            n,
            result=outcome,
            building=building,
            timestamp=start,
            duration=dur,
            causes=[
                {
                    "_class": "hudson.model.Cause$UpstreamCause",
                    "upstreamBuild": upstream,
                    "upstreamProject": "team/api",
                    "upstreamUrl": "job/team/job/api/",
                }
            ],
            parameters=[
                {"_class": "hudson.model.StringParameterValue", "name": "ENV", "value": "staging"}
            ],
            git=[
                lib,
                {
                    "sha": _sha("acme/deploy", n),
                    "branch": "refs/remotes/origin/main",
                    "remote": "https://github.com/acme/deploy.git",
                },
            ],
            change_ids=[_sha("acme/deploy", n, "c")] if n % 2 else None,
            stages=_deploy_stages(start, now - start if building else dur, outcome),
        )

    svc_remote = "git@github.com:acme/svc.git"
    branches = {
        "svc/main": ("main", ["SUCCESS", "SUCCESS", "FAILURE", "SUCCESS"]),
        "svc/feature%2Fx": ("feature/x", ["SUCCESS", "NOT_BUILT", "SUCCESS"]),
    }
    for job, (branch, results) in branches.items():
        for n, result in enumerate(results, start=1):
            if n == 1:
                cause = {"_class": "jenkins.branch.BranchIndexingCause"}
            else:
                cause = {
                    "_class": "jenkins.branch.BranchEventCause",
                    "shortDescription": f"Push event to branch {branch}",
                }
            fj.add_build(
                job,
                n,
                result=result,
                timestamp=now - (5 - n) * day - 5 * hour,
                duration=31_000 + 1_500 * n,
                causes=[cause],
                git={"sha": _sha(svc_remote, branch, n), "branch": branch, "remote": svc_remote},
                change_ids=[_sha(svc_remote, branch, n, "c")] if n > 1 else None,
            )

    for n, result in enumerate(["SUCCESS", "SUCCESS", "FAILURE"], start=1):
        fj.add_build(
            "nightly-cleanup",
            n,
            result=result,
            timestamp=now - (4 - n) * day - 20 * hour,
            duration=12_000,
            causes=[{"_class": "hudson.triggers.TimerTrigger$TimerTriggerCause"}],
        )


def _deploy_stages(start: int, dur: int, result: str | None) -> list[dict[str, Any]]:
    """Checkout/Build/Deploy stages for ``team/deploy``, statuses following ``result``."""
    errors = _fixtures().errors
    plan = [
        (
            "Checkout",
            0.15,
            [("Check out from version control", "https://github.com/acme/deploy.git")],
        ),
        ("Build", 0.35, [("Shell Script", "make image")]),
        ("Deploy", 0.5, [("Shell Script", "./deploy.sh staging"), ("Print Message", "deployed")]),
    ]
    stages: list[dict[str, Any]] = []
    t = start + 50
    nid = 5
    for i, (name, share, steps) in enumerate(plan):
        last = i == len(plan) - 1
        d = int(dur * share)
        status = "SUCCESS"
        if last and result is None:
            status = "IN_PROGRESS"
        elif last and result is not None:
            status = _WF_STATUS[result]
        stage: dict[str, Any] = {"id": str(nid), "name": name, "status": status}
        if status in errors:
            stage["error"] = dict(errors[status])
        stage.update(startTimeMillis=t, durationMillis=d, stageFlowNodes=[])
        parent = str(nid)
        st = t
        for j, (step, desc) in enumerate(steps):
            sid = str(nid + 1 + j)
            sd = d // len(steps)
            node: dict[str, Any] = {
                "id": sid,
                "name": step,
                "status": status if j == len(steps) - 1 else "SUCCESS",
                "parameterDescription": desc,
                "startTimeMillis": st,
                "durationMillis": sd,
                "parentNodes": [parent],
            }
            stage["stageFlowNodes"].append(node)
            parent, st = sid, st + sd
        stages.append(stage)
        t += d
        nid += 1 + len(steps) + 2
    return stages


def seed_bulk(
    fj: FakeJenkins,
    *,
    folders: int,
    jobs_per_folder: int,
    builds_per_job: int,
    pipeline_share: float = 0.3,
    now_ms: int | None = None,
) -> None:
    """A large controller for benchmarks, cheap to build and to hold.

    ``folder-NNN/job-NNN``; a ``pipeline_share`` of each folder's jobs are pipelines. Builds
    #1..N spread over the 30 days before ``now_ms``, mostly SUCCESS with some FAILURE, UNSTABLE,
    ABORTED and NOT_BUILT. Every 20th job's newest build is still running; every 50th job
    (offset 7) has its second-newest build running while the newest has finished (out-of-order
    completion). Builds are stored as a few numbers each and turned into JSON (with the same
    actions, BuildData, change sets and stages as ``add_build`` builds) only when requested.
    """
    now = _now_ms() if now_ms is None else now_ms
    rng = random.Random(20240501)  # deterministic: benchmarks compare runs
    span = 30 * _DAY_MS
    weights = (("SUCCESS", 80), ("FAILURE", 10), ("UNSTABLE", 5), ("ABORTED", 4), ("NOT_BUILT", 1))
    table = [r for r, w in weights for _ in range(w)]
    with fj._lock:
        seeded = time.time()
        serial = 0
        for f in range(folders):
            folder = fj._container(f"folder-{f:03d}")
            for j in range(jobs_per_folder):
                pipeline = int((j + 1) * pipeline_share) > int(j * pipeline_share)
                job = _Job(fj, folder, f"job-{j:03d}", "pipeline" if pipeline else "freestyle")
                folder.put(job)
                base_dur = rng.randrange(30_000, 600_000)
                job.estimated = base_dur
                job.queue_base = 10_000 + serial * (builds_per_job + 1)
                step = span // max(1, builds_per_job)
                running = set()
                if serial % 20 == 0:
                    running.add(builds_per_job)
                if serial % 50 == 7 and builds_per_job > 1:
                    running.add(builds_per_job - 1)
                runs = job.runs
                rand = rng.random
                for n in range(1, builds_per_job + 1):
                    ts = now - span + (n - 1) * step + int(rand() * step * 0.2)
                    dur = int(base_dur * (0.6 + 0.8 * rand()))
                    if n in running:
                        ts = now - int(dur * 0.5)
                        runs[n] = _Lazy(job, n, None, True, ts, dur)
                    else:
                        runs[n] = _Lazy(job, n, table[int(rand() * 100)], False, ts, dur)
                job.nums = list(range(1, builds_per_job + 1))
                job.next_number = builds_per_job + 1
                fj._bulk_seeded[job.full_name] = seeded
                serial += 1
