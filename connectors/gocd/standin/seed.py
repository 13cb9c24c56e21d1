"""Demo and bulk data for the GoCD stand-in, in the shapes of the recorded servers."""

from __future__ import annotations

import re

from .controller import FakeGoCD, changes, dependency, forced, now_ms, timer
from .fixtures import captured_cause
from .model import BuildCause, Material, Modification, Revision, StageConfig

HOUR = 3_600_000
MINUTE = 60_000
A_STAGES = (  # A-PIPELINE's stages and jobs, as `gocd-api/history-a-pipeline.json` shows them
    StageConfig("build", jobs=("both",)),
    StageConfig("integration-test", jobs=("backend-integration",)),
    StageConfig("deploy-dev", jobs=("backend", "client")),
    StageConfig("smoke-test-dev", jobs=("backend",)),
    StageConfig("functional-test", jobs=("both",)),
    StageConfig("deploy-showcase", manual=True, jobs=("backend", "client")),
    StageConfig("smoke-test-showcase", jobs=("backend",)),
)
_URL = re.compile(r"URL: (?P<url>.+?), Branch: (?P<branch>.+)$")


def recorded_cause(rel: str, counter: int, at: int) -> BuildCause:
    """A captured build cause, its modifications moved to end just before `at`."""
    message, revisions = captured_cause(rel, counter)
    latest = max((m["modified_time"] for _, _, mods in revisions for m in mods), default=0)
    revs = []
    for material, changed, mods in revisions:
        m = _URL.match(str(material.get("description") or ""))
        mat = Material(m["url"], m["branch"]) if m else Material(str(material.get("name")))
        revs.append(
            Revision(
                mat,
                tuple(
                    Modification(
                        x["revision"],
                        at - MINUTE - (latest - x["modified_time"]),
                        x["user_name"],
                        x["comment"],
                    )
                    for x in mods
                ),
                changed,
            )
        )
    return BuildCause(message, False, "changes", tuple(revs))


def seed_demo(gocd: FakeGoCD) -> None:
    """A small server in the recorded servers' shapes: A-PIPELINE (seven stages, two Git
    materials, a manual gate before deploy-showcase: one instance has waited there eight
    days, one a few hours), DOWNSTREAM-PIPELINE triggered by it (its label the upstream's),
    helm-images forced by admin, a nightly timer build."""
    t0 = now_ms() - 8 * HOUR
    a_file = "gocd-api/history-a-pipeline_3.json"
    gocd.add_pipeline(
        "A-PIPELINE",
        "A-GROUP",
        A_STAGES,
        (
            Material("git@github.com:A-PIPELINE/repo.git"),
            Material("git@github.com:A-PIPELINE/repo-2.git"),
        ),
    )
    gocd.pipelines["A-PIPELINE"].counter = 2060  # continue the capture's numbering
    # 2061: waiting at the manual gate for eight days (past max_pending_age: sent with
    # deploy-showcase NOT_BUILT), 2062: functional-test failed (the capture), 2063: waiting
    # at the gate for a few hours (held)
    old = t0 - 8 * 24 * HOUR
    gocd.run("A-PIPELINE", recorded_cause("gocd-api/history-a-pipeline.json", 2064, old), at=old)
    gocd.run(
        "A-PIPELINE",
        recorded_cause(a_file, 2062, t0),
        at=t0,
        results={"functional-test": "Failed"},
    )
    a = gocd.run("A-PIPELINE", recorded_cause(a_file, 2063, t0 + HOUR), at=t0 + HOUR)
    gocd.add_pipeline(
        "DOWNSTREAM-PIPELINE",
        "A-GROUP",
        (StageConfig("deploy"), StageConfig("smoke-test")),
        (Material("A-PIPELINE", "smoke-test-dev", type="Pipeline"),),
        label="${A-PIPELINE}",
    )
    gocd.pipelines["DOWNSTREAM-PIPELINE"].counter = 264
    up = gocd.instance("A-PIPELINE", a).latest("smoke-test-dev")
    assert up is not None
    gocd.run(
        "DOWNSTREAM-PIPELINE",
        dependency("A-PIPELINE", a, "smoke-test-dev", 1, at=up.last_ms),
        at=up.last_ms + MINUTE,
        results={"smoke-test": "Cancelled"},
    )
    helm = "https://github.com/nikhilsbhat/helm-images"
    gocd.add_pipeline("helm-images", "helm", ("build",), (Material(helm),))
    mod = Modification(
        "53e460445e7c9cd51815ae6b956cd911843678f8",
        t0 - 24 * HOUR,
        "nikhilsbhat <nikhilsbhat93@gmail.com>",
        "Add release downloads shields to README",
    )
    gocd.run("helm-images", changes((Material(helm), [mod])), at=t0 + 2 * HOUR)
    gocd.run(
        "helm-images",
        forced("admin", (Revision(Material(helm), (mod,), False),)),
        at=t0 + 3 * HOUR,
    )
    gocd.add_pipeline("nightly", "helm", ("build", "test"), (Material(helm),))
    gocd.run("nightly", timer((Revision(Material(helm), (mod,), False),)), at=t0 + 4 * HOUR)
    running = gocd.trigger("helm-images", forced("admin"), at=now_ms() - MINUTE)
    gocd.begin("helm-images", running, "build", at=now_ms() - 30_000)  # not sent yet


def seed_bulk(
    gocd: FakeGoCD,
    *,
    pipelines: int = 50,
    instances: int = 200,
    stages: tuple[str, ...] = ("build", "test"),
    span_ms: int = 20 * 24 * HOUR,
) -> None:
    """`pipelines` pipelines in 5 groups with `instances` finished instances each, started
    by material changes, interleaved in time so instance ids interleave across pipelines."""
    start = now_ms() - span_ms
    url = "https://git.example.com/bulk/repo.git"
    names = [f"bulk-{k:03d}" for k in range(pipelines)]
    for k, name in enumerate(names):
        gocd.add_pipeline(name, f"group-{k % 5}", stages, (Material(url, "main"),))
    total = pipelines * instances
    step = span_ms // max(1, total)
    for k in range(total):
        name = names[k % pipelines]
        at = start + k * step
        mod = Modification(f"{k:040x}", at - MINUTE, "Dev <dev@example.com>", f"change {k}")
        gocd.run(
            name,
            changes((Material(url, "main"), [mod])),
            at=at,
            results={stages[-1]: "Failed"} if k % 7 == 0 else None,
            seconds=1 + k % 13,
        )
