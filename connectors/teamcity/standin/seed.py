"""Demo and bulk data for the TeamCity stand-in, in the shapes of the recorded servers."""

from __future__ import annotations

from .controller import FakeTeamCity, now_ms

HOUR = 3_600_000
STEPS = [
    {"id": "RUNNER_264", "name": "Pre-build cleanup", "type": "simpleRunner"},
    {"id": "RUNNER_265", "name": "Run test suite", "type": "Maven2"},
    {"id": "RUNNER_266", "name": "", "type": "simpleRunner"},
]


def seed_demo(tc: FakeTeamCity) -> None:
    """A small server: a chain (composite head + two dependencies), a VCS-triggered build
    with two VCS roots, a canceled, a failed-to-start, a personal and a branch build."""
    t0 = now_ms() - 6 * HOUR
    tc.add_project("Backend", "Backend")
    tc.add_project("Backend_Services", "Services", parent="Backend")
    app = tc.add_vcs_root("Backend_App", "https://github.com/acme/app.git")
    lib = tc.add_vcs_root("Backend_Lib", "git@github.com:acme/lib.git", branch="refs/heads/main")
    tc.add_build_type("Backend_Build", "Build", "Backend", steps=STEPS, vcs_roots=[app, lib])
    tc.add_build_type("Backend_Services_Deploy", "Deploy", "Backend_Services", type="deployment")
    tc.add_build_type("Backend_RunAll", "--> Run :: All", "Backend", type="composite")
    tc.add_user("alice", "Alice Doe")
    rev: list[tuple[str, str, str | None]] = [
        (app, "a" * 40, "refs/heads/main"),
        (lib, "b" * 40, "refs/heads/main"),
    ]
    tc.add_build(
        "Backend_Build",
        queued=t0,
        started=t0 + 60_000,
        finished=t0 + 360_000,
        triggered={"type": "vcs", "details": "jetbrains.git"},
        branch="main",
        default_branch=True,
        revisions=rev,
        changes=[{"version": "a" * 40, "username": "alice", "root": app}],
        properties=[
            {"name": "env.JAVA_HOME", "value": "%env.JDK_17%"},
            {"name": "deploy.password", "type": "password display='hidden'"},
        ],
        statistics={
            "buildStageDuration:buildStepRUNNER_264": 1200,
            "buildStageDuration:buildStepRUNNER_265": 290_000,
        },
        artifacts=[{"name": "app.zip", "size": 52_000}],
    )
    head = tc.queue_build(
        "Backend_RunAll", at=t0 + HOUR, triggered={"type": "user", "user": "alice"}, composite=True
    )
    dep = tc.queue_build(
        "Backend_Build",
        at=t0 + HOUR,
        triggered={"type": "snapshotDependency", "build": head, "user": "alice"},
        branch="main",
        default_branch=True,
        revisions=rev,
    )
    tc.start_build(dep, at=t0 + HOUR + 30_000)
    tc.finish_build(
        dep, "FAILURE", at=t0 + HOUR + 400_000, status_text="Tests failed: 1, passed: 152"
    )
    tc.start_build(head, at=t0 + HOUR + 400_000)
    tc.finish_build(
        head, "FAILURE", at=t0 + HOUR + 401_000, status_text="Snapshot dependency failed"
    )
    deploy = tc.queue_build(
        "Backend_Services_Deploy", at=t0 + 2 * HOUR, triggered={"type": "buildType", "build": head}
    )
    tc.finish_build(
        deploy,
        "FAILURE",
        at=t0 + 2 * HOUR + 5_000,
        failed_to_start=True,
        status_text="Snapshot dependency failed: Backend :: Build",
    )
    canceled = tc.queue_build(
        "Backend_Build", at=t0 + 3 * HOUR, triggered={"type": "user", "user": "alice"}
    )
    tc.start_build(canceled, at=t0 + 3 * HOUR + 10_000)
    tc.cancel_build(canceled, at=t0 + 3 * HOUR + 60_000, user="alice", text="wrong branch")
    tc.finish_build(canceled, at=t0 + 3 * HOUR + 70_000)
    tc.add_build(
        "Backend_Build",
        queued=t0 + 4 * HOUR,
        started=t0 + 4 * HOUR + 5_000,
        finished=t0 + 4 * HOUR + 200_000,
        triggered={"type": "vcs", "details": "jetbrains.git"},
        branch="feature/login",
        default_branch=False,
        revisions=[(app, "c" * 40, "refs/heads/feature/login")],
    )
    tc.add_build(
        "Backend_Build",
        queued=t0 + 5 * HOUR,
        finished=t0 + 5 * HOUR + 90_000,
        personal=True,
        owner="alice",
        triggered={"type": "idePlugin", "details": "IntelliJ IDEA", "user": "alice"},
    )
    nightly = tc.queue_build(
        "Backend_Build",
        at=t0 + 5 * HOUR + 10_000,
        triggered={"type": "schedule", "details": "nightly"},
    )
    tc.start_build(nightly, at=t0 + 5 * HOUR + 20_000)  # still running: not sent yet


def seed_bulk(
    tc: FakeTeamCity,
    *,
    configs: int = 50,
    builds_per_config: int = 200,
    span_ms: int = 30 * 24 * HOUR,
) -> list[int]:
    """`configs` build configurations in 5 projects with `builds_per_config` finished builds
    each, interleaved so every configuration's ids have gaps; returns the ids."""
    now = now_ms()
    start = now - span_ms
    root = tc.add_vcs_root("Bulk_Repo", "https://git.example.com/bulk/repo.git")
    names = []
    for c in range(configs):
        project = f"Bulk{c % 5}"
        tc.add_project(project, f"Bulk {c % 5}")
        bt = f"{project}_Config{c:03d}"
        tc.add_build_type(bt, f"Config {c}", project, steps=STEPS[:2], vcs_roots=[root])
        names.append(bt)
    ids = []
    total = configs * builds_per_config
    step = span_ms // max(1, total)
    for k in range(total):
        bt = names[k % configs]
        at = start + k * step
        ids.append(
            tc.add_build(
                bt,
                "SUCCESS" if k % 7 else "FAILURE",
                queued=at,
                started=at + 1000,
                finished=at + 1000 + (k % 13) * 1000,
                triggered={"type": "vcs", "details": "jetbrains.git"},
                branch="main",
                default_branch=True,
                revisions=[(root, f"{k:040x}", "refs/heads/main")],
                statistics={
                    "buildStageDuration:buildStepRUNNER_264": 100,
                    "buildStageDuration:buildStepRUNNER_265": 900,
                },
            )
        )
    return ids
