"""`sei-poller demo`: the `once` code path against built-in stand-ins on 127.0.0.1.

A newcomer sees the whole product work (connector, state, payload, delivery) without a
Jenkins or an SEI account: a stand-in Jenkins (or, with `--ci teamcity` / `--ci buildkite` /
`--ci bamboo` / `--ci gocd`, TeamCity, Buildkite, Bamboo or GoCD serving recorded builds) seeded
from recorded answers, and a stand-in SEI that checks what SEI checks.
"""

from __future__ import annotations

import argparse
import json
import ssl
import tempfile
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from connectors.jenkins.standin import FakeJenkins, seed_demo
from poller.oneshot import RunOptions
from poller.standins.sei import FakeSei

DEMO_GUID = "666ba79b-3f3d-4236-ac04-4686ce526705"


def _jenkins_server(jenkins: FakeJenkins) -> str:
    return f"""name = "demo-jenkins"
type = "jenkins"
url = "{jenkins.url}"
username = "{jenkins.username}"
token = "{jenkins.token}"
instance_name = "Demo Jenkins"
cd_jobs = ["team/deploy"]"""


def _teamcity_server(tc: Any) -> str:
    return f"""name = "demo-teamcity"
type = "teamcity"
url = "{tc.url}"
token = "{tc.token}"
instance_name = "Demo TeamCity"
cd_jobs = ["**/*_Deploy"]"""


def _buildkite_server(bk: Any) -> str:
    return f"""name = "demo-buildkite"
type = "buildkite"
url = "{bk.url}"
organization = "{bk.org}"
token = "{bk.token}"
instance_name = "Demo Buildkite"
""".rstrip()


def _bamboo_server(fb: Any) -> str:
    return f"""name = "demo-bamboo"
type = "bamboo"
url = "{fb.url}"
token = "{fb.token}"
instance_name = "Demo Bamboo"
repo_urls = {{ "shop-api" = "https://bitbucket.example.com/scm/shop/api.git" }}"""


def _gocd_server(gocd: Any) -> str:
    return f"""name = "demo-gocd"
type = "gocd"
url = "{gocd.url}"
token = "{gocd.token}"
instance_name = "Demo GoCD"
cd_jobs = ["DOWNSTREAM-PIPELINE"]"""


def write_config(directory: Path, sei: FakeSei, server: str, ci: str) -> Path:
    """The demo's config: what an operator writes, with `server`'s own keys."""
    path = directory / "config.toml"
    path.write_text(
        f"""# written by `sei-poller demo --ci {ci}`
[sei]
url = "{sei.url}"
api_key = "{sei.api_key}"
concurrency = 2
retry_window = "10s"

[state]
path = "state.db"

[[servers]]
{server}
instance_guid = "{DEMO_GUID}"
backfill_since = "all"
""",
        encoding="utf-8",
    )
    path.chmod(0o600)
    return path


def _stand_in(
    ci: str, tls: ssl.SSLContext | None = None
) -> tuple[str, AbstractContextManager[Any], Callable[[Any], str]]:
    """The CI stand-in to run, seeded, and its `[[servers]]` keys (`tls`: served over HTTPS,
    as the network tests run every connector)."""
    if ci == "buildkite":
        from connectors.buildkite.standin import FakeBuildkite

        bk = FakeBuildkite(org="dean-test", tls=tls)  # the organisation the recordings come from
        for p in bk.recorded("buildkiterb/test_pipeline_list.extracted.json"):
            bk.add_recorded_pipeline(p)
        for b in bk.recorded("buildkiterb/test_build_list_org.extracted.json"):
            bk.add_recorded_build(b)
        return "Buildkite", bk, _buildkite_server
    if ci == "bamboo":
        from connectors.bamboo.standin import FakeBamboo
        from connectors.bamboo.standin import seed_demo as seed_bamboo

        fb = FakeBamboo(context_path="/bamboo", tls=tls)
        seed_bamboo(fb)
        return "Bamboo", fb, _bamboo_server
    if ci == "gocd":
        from connectors.gocd.standin import FakeGoCD
        from connectors.gocd.standin import seed_demo as seed_gocd

        gocd = FakeGoCD(tls=tls)
        seed_gocd(gocd)
        return "GoCD", gocd, _gocd_server
    if ci == "teamcity":
        from connectors.teamcity.standin import FakeTeamCity
        from connectors.teamcity.standin import seed_demo as seed_teamcity

        tc = FakeTeamCity(context_path="/teamcity", tz="+0300", tls=tls)
        seed_teamcity(tc)
        return "TeamCity", tc, _teamcity_server
    jenkins = FakeJenkins(context_path="/jenkins", tls=tls)
    seed_demo(jenkins)
    return "Jenkins", jenkins, _jenkins_server


def run_demo(
    args: argparse.Namespace,
    collect: Callable[[RunOptions], int],
    status: Callable[[argparse.Namespace], int],
) -> int:
    keep = Path(args.keep) if args.keep else None
    which = getattr(args, "ci", "jenkins")
    label, server, keys = _stand_in(which)
    with tempfile.TemporaryDirectory() as tmp, server as ci, FakeSei() as sei:
        directory = keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        cfg = write_config(directory, sei, keys(ci), which)
        print(f"stand-in {label} at {ci.url}, stand-in SEI at {sei.url}\n")
        code = collect(RunOptions(config=str(cfg)))
        print(f"\nSEI received {len(sei.received)} payloads:")
        for run in sorted(sei.received, key=lambda r: (r["job_full_name"], r["build_number"])):
            name = f"{run['job_full_name']}#{run['build_number']}"
            stages = len((run.get("job_run") or {}).get("stages", []))
            print(
                f"  {name:<40} {run['result']:<9} user={run.get('user_id')!s:<12} "
                f"stages={stages} commits={len(run.get('scm_commit_ids', []))}"
            )
        if sei.received:
            example = max(sei.received, key=lambda r: len(json.dumps(r)))
            print("\nthe richest payload, as SEI received it:")
            print(json.dumps(example, indent=2, sort_keys=True))
        print()
        status(argparse.Namespace(config=str(cfg), json=False))
        if keep:
            print(f"\nconfig and state kept in {keep}")
    return code
