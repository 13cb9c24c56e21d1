"""poller.quality is pure: which repo URLs SEI names, what a payload carries, what is missing."""

from __future__ import annotations

import pytest

from poller.config import ServerConfig
from poller.model import Build, Cause, Stage
from poller.payload import to_sei
from poller.quality import Context, Facts, Handled, facts, findings, repo_parsed

SERVER = ServerConfig(
    name="jenkins-1",
    type="jenkins",
    instance_name="Jenkins-1",
    instance_guid="666ba79b-3f3d-4236-ac04-4686ce526705",
    url="https://jenkins.example.com/",
)


def _build(**kw) -> Build:
    base = dict(
        job_full_name="team/api",
        pipeline="api",
        number=42,
        result="SUCCESS",
        start_ms=1_700_000_000_000,
        duration_ms=1_000,
        user_id="alice",
        commit_ids=("a" * 40,),
        repo_url="https://github.com/acme/api.git",
    )
    base.update(kw)
    return Build(**base)


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("https://github.com/acme/api.git", True),
        ("https://bitbucket.example.com:8443/scm/proj/api.git", True),
        ("git@github.com:acme/api.git", True),
        ("git@git.example.com:api.git", True),  # SEI's ssh pattern takes any path
        ("https://dev.azure.com/org/project/_git/api", True),
        ("https://git.example.com/api.git", False),  # no org/ part
        ("https://github.com/acme/api", False),  # no .git
        ("svn://svn.example.com/repo/trunk", False),
        ("", False),
        (None, False),
    ],
)
def test_repo_parsed(url: str | None, parsed: bool) -> None:
    assert repo_parsed(url) is parsed


def test_facts_of_a_payload() -> None:
    stage = Stage("1", "build", "build", "SUCCESS", "FINISHED", None, 10)
    b = _build(expects_stages=True, stages=(stage,))
    assert facts(b, to_sei(b, SERVER)) == Facts(commits=True, repo=True, pipeline=True, stages=True)
    b = _build(commit_ids=(), repo_url="https://git.example.com/api")
    assert facts(b, to_sei(b, SERVER)) == Facts(False, False, False, False)


def test_a_complete_build_has_no_findings() -> None:
    b = _build()
    assert findings(b, to_sei(b, SERVER), Context()) == []


def test_person_cause_with_a_user_behind_a_system_root() -> None:
    b = _build(
        user_id="SYSTEM",
        triggers=(Cause("UpstreamCause", "nightly", 3), Cause("UserIdCause", "alice")),
    )
    [f] = findings(b, to_sei(b, SERVER), Context())
    assert f.code == "system-user"
    assert f.message.endswith(
        "its UserIdCause names 'alice', but the root of its upstream chain was started by no"
        " one, and the user is taken from the root"
    )


def test_pending_and_dead_lettered() -> None:
    b = _build()
    p = to_sei(b, SERVER)
    pending = Handled("pending", created_at=1_700_000_000.0, attempts=3, last_error="HTTP 503")
    [f] = findings(b, p, Context(handled=pending))
    assert (f.code, f.message) == (
        "pending",
        "queued on 2023-11-14 22:13 UTC, not yet accepted by SEI (3 attempt(s), last error:"
        " HTTP 503)",
    )
    dead = Handled("dead", created_at=0.0, attempts=1, last_error="HTTP 400: missing pipeline")
    [f] = findings(b, p, Context(handled=dead))
    assert (f.code, f.message) == (
        "dead-lettered",
        "SEI refused it (HTTP 400: missing pipeline): `sei-poller dead-letters retry` queues it"
        " again",
    )
