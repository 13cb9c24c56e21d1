"""What SEI can do with a payload: the rules behind `explain` and the readiness in `status`.

Pure, like `payload.py`: a payload, its build and a few facts in, findings out, no I/O and no
clock (the caller passes the time bounds). The SEI behaviour modelled here comes from SEI's
backend (research notes, `../shared/research/sei.md`):

- Lead time links a run to commits only through `scm_commit_ids` *and* a `repo_url` whose
  repository SEI can name. Its parser (`LocalCiCdService.parseRepoIdFromScmUrl`) knows three
  shapes: an http(s) URL whose path ends `<org>/<repo>.git`, `git@host:<path>.git`, and
  Azure's `.../_git/<repo>`. Anything else is kept as an opaque id that matches no repository.
- Runs are keyed on (instance, job, build number) and the first write wins, so what was sent
  first is what SEI keeps; a later, better payload changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from poller.model import Build

REPO_FORMS = "https://host/org/repo.git or git@host:org/repo.git"
# Causes that mean a person started the build (a user cause, a forced build's form).
PERSON_CAUSES = frozenset(["UserIdCause", "UserCause", "ForceScheduler"])


class Facts(NamedTuple):
    """What `status` needs to know of a payload after it is gone: recorded at enqueue time."""

    commits: bool  # carries scm_commit_ids
    repo: bool  # carries a repo_url SEI's parser names a repository from
    pipeline: bool  # a build of a kind that has stages
    stages: bool  # carries stages


def facts(build: Build, payload: dict[str, Any]) -> Facts:
    return Facts(
        commits=bool(payload.get("scm_commit_ids")),
        repo=repo_parsed(payload.get("repo_url")),
        pipeline=build.expects_stages,
        stages=bool((payload.get("job_run") or {}).get("stages")),
    )


def repo_parsed(url: str | None) -> bool:
    """Whether SEI's repo parser finds a repository in `url` (a payload's `repo_url`)."""
    if not url:
        return False
    if "/_git/" in url:
        return True  # Azure DevOps
    if url.startswith("git@"):
        return ":" in url and url.endswith(".git")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    segments = [s for s in parts.path.split("/") if s]
    return len(segments) >= 2 and parts.path.endswith(".git")


@dataclass(frozen=True)
class Finding:
    """One thing that decides what SEI can do with the build, and why, in one line."""

    code: str
    message: str


@dataclass(frozen=True)
class Handled:
    """What the state database knows of the build: its outbox row."""

    status: str  # pending | sent | dead
    created_at: float
    sent_at: float | None = None
    attempts: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class Context:
    """Everything besides the payload that the findings depend on."""

    polled: bool = True  # include/exclude select the job
    stages_on: bool = True  # the server's `stages` setting
    running: bool = False
    broken: str | None = None  # why the build's details keep failing, when they do
    give_up_after: float | None = None
    handled: Handled | None = None
    state_error: str | None = None  # the state database could not be read
    since_ms: int | None = None  # the server's backfill_since, as a time
    since_text: str = ""


def findings(build: Build | None, payload: dict[str, Any] | None, ctx: Context) -> list[Finding]:
    """Everything that keeps SEI from using this build fully; empty: the payload is complete."""
    out: list[Finding] = []
    if not ctx.polled:
        out.append(
            Finding("not-polled", "include/exclude leave this job out: SEI gets nothing from it")
        )
    if ctx.running:
        out.append(
            Finding(
                "running",
                "still running: nothing is sent until it finishes (SEI keeps the first"
                " write, so a run sent half-done would stay half-done)",
            )
        )
    if ctx.broken is not None:
        then = (
            'it stays parked until they come (give_up_after = "never")'
            if ctx.give_up_after is None
            else "after give_up_after"
            f" ({_duration(ctx.give_up_after)}) it is sent as shown, without them"
        )
        out.append(
            Finding(
                "broken",
                f"its details keep failing ({ctx.broken}): it is parked and retried; {then}",
            )
        )
    if build is None or payload is None:
        out.extend(_handled(ctx))
        return out
    out.extend(_lead_time(build, payload))
    out.extend(_user(payload))
    stageless = build.expects_stages and not (payload.get("job_run") or {}).get("stages")
    if stageless and ctx.broken is None:  # a broken build's finding says why already
        reason = (
            "stages = false in this server's config"
            if not ctx.stages_on
            else "the server reported none for it (the plugin or API that reports stages is"
            " missing, or the run never reached a stage)"
        )
        out.append(Finding("no-stages", f"a pipeline build without stages: {reason}"))
    out.extend(_handled(ctx))
    unknown = ctx.handled is not None or ctx.state_error is not None
    if not unknown and ctx.since_ms is not None and build.start_ms < ctx.since_ms:
        day = _day(ctx.since_ms)
        out.append(
            Finding(
                "outside-window",
                f"started {_day(build.start_ms)}, before backfill_since {ctx.since_text!r}"
                f" ({day}): a poll does not read it; `sei-poller backfill --since"
                f" {_day(build.start_ms)}` sends it",
            )
        )
    return out


def _lead_time(build: Build, payload: dict[str, Any]) -> list[Finding]:
    out = []
    if not payload.get("scm_commit_ids"):
        out.append(
            Finding(
                "no-commits",
                "no scm_commit_ids: the server named no commit for this build, so SEI cannot"
                " link it to commits and lead time leaves it out",
            )
        )
    url = payload.get("repo_url")
    if url is None and not build.repo_url:
        out.append(
            Finding(
                "no-repo-url",
                "no repo_url: the server named no repository for this build, so SEI cannot"
                " tell whose commits these are",
            )
        )
    elif url is None:
        out.append(
            Finding(
                "repo-url-unparsed",
                f"repo_url left out: {build.repo_url!r} is not an http(s), ssh or scp-style"
                f" git URL, and SEI's repo parser only matches {REPO_FORMS}",
            )
        )
    elif not repo_parsed(url):
        out.append(
            Finding(
                "repo-url-unparsed",
                f"repo_url {url!r} has no org/repo path: SEI's repo parser only matches"
                f" {REPO_FORMS}, so lead time cannot find the repository",
            )
        )
    return out


def _user(payload: dict[str, Any]) -> list[Finding]:
    if payload.get("user_id") != "SYSTEM":
        return []
    for cause in payload.get("trigger_chain") or []:
        if cause.get("type") in PERSON_CAUSES:
            who = cause.get("id")
            why = (
                "names no user (started anonymously, or by a user since deleted)"
                if who in (None, "", "unknown")
                else f"names {who!r}, but the root of its upstream chain was started by no"
                " one, and the user is taken from the root"
            )
            return [
                Finding(
                    "system-user",
                    f"user_id is SYSTEM although a person started this build: its"
                    f" {cause.get('type')} {why}",
                )
            ]
    return []


def _handled(ctx: Context) -> list[Finding]:
    h = ctx.handled
    if ctx.state_error is not None:
        return [
            Finding(
                "state-unreadable",
                "whether it was sent already is unknown: the state database could not be"
                f" read ({ctx.state_error})",
            )
        ]
    if h is None:
        return []
    if h.status == "sent":
        when = _moment(h.sent_at) if h.sent_at else "an unknown time"
        return [
            Finding(
                "already-sent",
                f"already sent, on {when}: SEI keeps that first write, so this payload would"
                " change nothing",
            )
        ]
    if h.status == "dead":
        return [
            Finding(
                "dead-lettered",
                f"SEI refused it ({h.last_error or 'no answer kept'}): `sei-poller dead-letters"
                " retry` queues it again",
            )
        ]
    error = f", last error: {h.last_error}" if h.last_error else ""
    return [
        Finding(
            "pending",
            f"queued on {_moment(h.created_at)}, not yet accepted by SEI"
            f" ({h.attempts} attempt(s){error})",
        )
    ]


def _moment(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"
