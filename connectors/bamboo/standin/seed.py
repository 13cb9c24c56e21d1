"""Demo and bulk data for the Bamboo stand-in, in the shapes of the recorded servers."""

from __future__ import annotations

from .controller import FakeBamboo, now_ms

MINUTE = 60_000
HOUR = 60 * MINUTE
STAGES: list[tuple[str, bool, list[str]]] = [
    ("Build", False, ["Compile", "Unit tests"]),
    ("Package", False, ["Docker image"]),
    ("Release", True, ["Tag"]),  # a manual stage: the result waits for a person
]


def seed_demo(fb: FakeBamboo) -> None:
    """A small server: a plan built by a person with variables, by code changes in two
    repositories, failed then restarted, stopped, waiting at a manual stage; a plan branch;
    a child plan; a deployment project whose releases come from the plan's results."""
    t0 = now_ms() - 6 * HOUR
    api = "SHOP-API"
    fb.add_plan(
        api, "API", project_name="Shop", stages=STAGES, repositories=["shop-api", "shop-lib"]
    )
    fb.add_plan("SHOP-E2E", "End to end", project_name="Shop", repositories=["shop-api"])
    first = fb.add_result(
        api,
        started=t0,
        completed=t0 + 6 * MINUTE,
        trigger="user",
        user="alice",
        revisions={"shop-api": "a" * 40, "shop-lib": "b" * 40},
        variables={"target": "staging", "deploy.password": "hunter2"},
        artifacts=[{"name": "api.jar", "size": 52_000, "job": "JOB1"}],
    )
    fb.continue_stage(api, first, user="alice", at=t0 + 10 * MINUTE)
    fb.finish(api, first, at=t0 + 11 * MINUTE)
    changed = fb.add_result(
        api,
        "Failed",
        started=t0 + HOUR,
        completed=t0 + HOUR + 4 * MINUTE,
        trigger="code",
        revisions={"shop-api": "c" * 40, "shop-lib": "b" * 40},
        changes=[{"id": "c" * 40, "author": "bob", "comment": "Fix the cart total"}],
        failed_jobs=["Unit tests"],
    )
    fb.restart(api, changed, at=t0 + HOUR + 20 * MINUTE)
    fb.finish(api, changed, at=t0 + HOUR + 25 * MINUTE)
    fb.continue_stage(api, changed, user="alice", at=t0 + HOUR + 28 * MINUTE)
    fb.finish(api, changed, at=t0 + HOUR + 29 * MINUTE)
    stopped = fb.trigger(api, trigger="user", user="bob", at=t0 + 2 * HOUR)
    fb.stop_result(api, stopped, at=t0 + 2 * HOUR + 3 * MINUTE)
    fb.add_result(
        "SHOP-E2E",
        started=t0 + HOUR + 26 * MINUTE,
        completed=t0 + HOUR + 40 * MINUTE,
        trigger="child",
        parent=f"{api}-{changed}",
        revisions={"shop-api": "c" * 40},
    )
    branch = fb.add_branch(api, "feature/login")
    fb.add_result(
        branch,
        "Failed",
        started=t0 + 3 * HOUR,
        completed=t0 + 3 * HOUR + 5 * MINUTE,
        trigger="code",
        revisions={"shop-api": "d" * 40, "shop-lib": "b" * 40},
    )
    waiting = fb.add_result(
        api,
        started=t0 + 4 * HOUR,
        completed=t0 + 4 * HOUR + 5 * MINUTE,
        trigger="code",
        revisions={"shop-api": "e" * 40, "shop-lib": "b" * 40},
    )
    assert fb.result(api, waiting).continuable  # held: its manual stage has not run
    shop = fb.add_deployment_project("Shop API", api, ["staging", "production"])
    release = fb.create_version(shop, "release-2", [(api, changed)], artifact="api.jar")
    staging, production = shop.environments
    fb.add_deployment(
        staging,
        release,
        started=t0 + HOUR + 30 * MINUTE,
        finished=t0 + HOUR + 32 * MINUTE,
        child_of=f"{api}-{changed}",
    )
    fb.add_deployment(
        production,
        release,
        "FAILED",
        started=t0 + 5 * HOUR,
        finished=t0 + 5 * HOUR + 2 * MINUTE,
        user="alice",
    )
    fb.trigger("SHOP-E2E", trigger="schedule", at=now_ms() - MINUTE)  # still running


def seed_bulk(
    fb: FakeBamboo,
    *,
    plans: int = 50,
    results_per_plan: int = 200,
    span_ms: int = 30 * 24 * HOUR,
) -> list[tuple[str, int]]:
    """`plans` plans in 5 projects with `results_per_plan` finished results each, one
    repository, one stage of two jobs; returns (plan key, number) of every result."""
    now = now_ms()
    start = now - span_ms
    keys = []
    for c in range(plans):
        key = f"BULK{c % 5}-PLAN{c:03d}"
        fb.add_plan(
            key,
            f"Plan {c}",
            project_name=f"Bulk {c % 5}",
            stages=[("Build", False, ["Compile", "Test"])],
            repositories=["bulk-repo"],
        )
        keys.append(key)
    out = []
    total = plans * results_per_plan
    step = span_ms // max(1, total)
    for k in range(total):
        key = keys[k % plans]
        at = start + k * step
        n = fb.add_result(
            key,
            "Successful" if k % 7 else "Failed",
            started=at,
            completed=at + 1000 + (k % 13) * 1000,
            trigger="code",
            revisions={"bulk-repo": f"{k:040x}"},
        )
        out.append((key, n))
    return out
