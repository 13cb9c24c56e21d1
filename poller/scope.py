"""What a server's config will poll, for `sei-poller check`: jobs, and builds in the window.

`check` is the first command an operator runs against production, so a wrong glob or a
wrong `backfill_since` must show there, before the first `once` sends anything. Jobs come
from the discovery `check` already does; matching them against `include`, `exclude` and
`cd_jobs` costs nothing more. Builds inside `backfill_since` cost requests, so the count is
bounded:

- A job that never built costs nothing (a sequential connector's discovery says so).
- Up to `SAMPLE` jobs with builds are each asked for their newest `PER_JOB` builds, through
  the connector's optional `recent_builds(job, limit)` (Jenkins: one small
  `builds[number,timestamp]{0,100}` request) or else through its ordinary `scan()`, asking
  for nothing and stopped after `PER_JOB` builds (so it works with any connector).
- A job with more than `PER_JOB` builds in the window is not read further: its count is
  bounded, from below by `PER_JOB` and from above by build numbers (numbers only grow, so at
  most the oldest number read minus one builds are older).
- More jobs than `SAMPLE`: an even sample of `SAMPLE` of them is counted and the total scaled
  up, and the figure is labelled as an estimate.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.base import Connector, RecentBuilds
from poller.config import Server
from poller.errors import NotFound
from poller.globs import matches, selected
from poller.model import JobCursor, JobRef, Unfinished
from poller.timeparse import parse_since

SAMPLE = 50  # jobs whose builds are counted one by one; more are sampled
PER_JOB = 100  # builds read per job at most (Jenkins' `builds` holds the newest 100)


@dataclass
class Count:
    """Builds inside the window: at least `low`, at most `high` (None: no upper bound known)."""

    low: int = 0
    high: int | None = 0
    with_builds: int = 0  # polled jobs that have builds
    counted: int = 0  # of those, how many were read (all of them unless sampled)
    bounded: int = 0  # of those, how many had more than PER_JOB builds in the window
    per_job: int = PER_JOB  # builds read per job at most
    via: str = ""  # how the builds were read
    failed: list[str] = field(default_factory=list)  # "job: what went wrong"

    @property
    def sampled(self) -> bool:
        return self.counted < self.with_builds


@dataclass(frozen=True)
class Scope:
    discovered: int
    polled: tuple[JobRef, ...]
    deployments: int
    idle: tuple[str, ...]  # patterns that match nothing, as `include "x"`
    since: datetime | None
    builds: Count


def survey(
    connector: Connector,
    server: Server,
    jobs: Sequence[JobRef],
    *,
    sample: int | None = None,
    per_job: int | None = None,
    now: datetime | None = None,
) -> Scope:
    """Match discovered `jobs` against the server's globs and count builds in its window."""
    sample = SAMPLE if sample is None else sample
    per_job = PER_JOB if per_job is None else per_job
    cfg = server.config
    polled = tuple(j for j in jobs if selected(j.full_name, cfg.include, cfg.exclude))
    included = [j.full_name for j in jobs if matches(j.full_name, cfg.include)]
    names = [j.full_name for j in polled]
    idle = (
        *_idle("include", cfg.include, [j.full_name for j in jobs]),
        *_idle("exclude", cfg.exclude, included),
        *_idle("cd_jobs", cfg.cd_jobs, names),
        *(
            f"{r.where} {_globs(r.jobs)}"
            for r in cfg.payload_rules()
            if r.where not in ("cd_jobs", "project_name")
            and not any(matches(n, r.jobs) for n in names)
        ),
    )
    since = parse_since(cfg.backfill_since, now=now)
    since_ms = None if since is None else int(since.timestamp() * 1000)
    builds = _count_all(connector, server, polled, since_ms, sample, per_job)
    deployments = sum(1 for n in names if matches(n, cfg.cd_jobs))
    return Scope(len(jobs), polled, deployments, idle, since, builds)


def _idle(key: str, patterns: Iterable[str], names: list[str]) -> list[str]:
    return [f"{key} {json.dumps(p)}" for p in patterns if not any(matches(n, (p,)) for n in names)]


def _count_all(
    connector: Connector,
    server: Server,
    polled: Sequence[JobRef],
    since_ms: int | None,
    sample: int,
    per_job: int,
) -> Count:
    sequential = connector.sequential
    # A sequential connector's discovery knows a job that never built: it costs nothing.
    todo = sorted(
        (j for j in polled if not (sequential and j.last_build is None)),
        key=lambda j: j.full_name,
    )
    count = Count(with_builds=len(todo), per_job=per_job)
    count.via = (
        "one request per job"
        if isinstance(connector, RecentBuilds)
        else f"reading up to {per_job} builds per job"
    )
    if not todo:
        return count
    picked = todo if len(todo) <= sample else [todo[i * len(todo) // sample] for i in range(sample)]
    count.counted = len(picked)
    workers = max(1, min(server.spec.max_concurrency, len(picked)))

    def one(job: JobRef) -> tuple[JobRef, tuple[int, int | None] | Exception]:
        try:
            return job, _count_job(connector, job, since_ms, per_job, sequential)
        except NotFound:
            return job, (0, 0)  # gone since discovery: nothing to send
        except Exception as exc:
            return job, exc

    low, high = 0, 0
    unbounded = False
    with ThreadPoolExecutor(workers, thread_name_prefix="check-count") as pool:
        for job, result in pool.map(one, picked):
            if isinstance(result, Exception):
                count.failed.append(f"{job.full_name}: {result}")
                continue
            lo, hi = result
            low += lo
            if hi is None:
                unbounded = True
            else:
                high += hi
            if hi != lo:
                count.bounded += 1
    read = count.counted - len(count.failed)
    # Sampled: scale the jobs read up to all jobs with builds. Jobs that failed are not
    # guessed at: the figure then covers the jobs that could be read, and says so.
    scale = count.with_builds / read if count.sampled and read else 1.0
    count.low = round(low * scale)
    count.high = None if unbounded else round(high * scale)
    return count


class _Enough(Exception):
    """Raised from `wanted` to stop a scan once PER_JOB builds are counted."""


def _count_job(
    connector: Connector, job: JobRef, since_ms: int | None, per_job: int, sequential: bool
) -> tuple[int, int | None]:
    """(at least, at most) builds of `job` started at or after `since_ms`: equal when exact."""
    if isinstance(connector, RecentBuilds):
        builds = list(connector.recent_builds(job, per_job))
        n = 0
        for _number, start in builds:
            if since_ms is not None and start < since_ms:
                return n, n  # newest first: the rest started earlier still
            n += 1
        if len(builds) < per_job:
            return n, n
        oldest = min(number for number, _ in builds)
        return n, (n + max(0, oldest - 1)) if sequential else None

    seen = 0

    def wanted(_number: int) -> bool:
        nonlocal seen
        seen += 1
        if seen >= per_job:
            raise _Enough
        return False  # count it, fetch nothing more

    try:
        for item in connector.scan(job, JobCursor(since_ms=since_ms), wanted):
            if isinstance(item, Unfinished):
                seen += 1
                if seen >= per_job:
                    raise _Enough
    except _Enough:
        return seen, (max(seen, job.last_build) if sequential and job.last_build else None)
    return seen, seen


def report(server: Server, scope: Scope) -> tuple[str, list[str]]:
    """The check's status for what the server will poll ("ok", "WARN", "FAILED") and its lines."""
    cfg = server.config
    jobs = (
        f"polls {len(scope.polled):,} of {_n(scope.discovered, 'job')} "
        f"(include {_globs(cfg.include)}, exclude {_globs(cfg.exclude)})"
    )
    if cfg.cd_jobs:
        jobs += f"; cd_jobs {_globs(cfg.cd_jobs)} makes {scope.deployments:,} of them deployments"
    lines = [jobs]
    lines.extend(f"{p} matches no job" for p in scope.idle)
    lines.extend(_overridden(cfg.payload_rules()))
    window = "all history" if scope.since is None else f"since {_when(scope.since)}"
    lines.append(
        f"backfill_since {json.dumps(_since_text(cfg.backfill_since))} ({window}): "
        f"{_builds(scope.builds)}"
    )
    status = "ok"
    if scope.builds.failed:
        status = "FAILED"
        first, more = scope.builds.failed[0], len(scope.builds.failed) - 1
        lines.append(
            f"cannot read the builds of {_n(len(scope.builds.failed), 'job')}: {first}"
            + (f" (and {more:,} more)" if more else "")
        )
    if not scope.polled:
        status = "WARN" if status == "ok" else status
        lines.append("nothing to poll: no job matches include/exclude")
    return status, lines


def _overridden(rules: list[Any]) -> list[str]:
    """Where `cd_jobs` or `project_name` and a rule both set a field: the rule wins."""
    out = []
    for old in (r for r in rules if r.where in ("cd_jobs", "project_name")):
        field = "cd" if old.where == "cd_jobs" else "project_name"
        later = [
            r.where
            for r in rules
            if r.where not in ("cd_jobs", "project_name") and getattr(r, field) is not None
        ]
        if later:
            out.append(
                f"{old.where} and {', '.join(later)} all set {field}: where a rule matches a"
                " job, the last matching rule wins"
            )
    return out


def _builds(c: Count) -> str:
    """`14 builds (counted exactly, ...)`, a range when some jobs hold more, `about` if sampled."""
    if not c.with_builds:
        return "no builds"
    if c.counted == len(c.failed):
        return "not counted"
    if c.high == c.low:
        amount = _n(c.low, "build")
    elif c.high is None:
        amount = f"at least {c.low:,} builds"
    else:
        amount = f"{c.low:,} to {c.high:,} builds"
    if c.sampled:
        how = (
            f"an estimate: counted {c.counted:,} of the {c.with_builds:,} jobs with builds, "
            f"an even sample, {c.via}, and scaled up"
        )
    else:
        how = f"counted{' exactly' if c.high == c.low else ''}, {c.via}"
    if c.bounded:
        rest = "the rest not counted" if c.high is None else "the rest bounded by build numbers"
        how += f"; {_n(c.bounded, 'job')} with more than {c.per_job} builds in the window: {rest}"
    if c.failed and not c.sampled:
        how += f"; not counting {_n(len(c.failed), 'job')} that could not be read"
    return f"{'about ' if c.sampled else ''}{amount} ({how})"


def _n(count: int, word: str) -> str:
    return f"{count:,} {word}{'' if count == 1 else 's'}"


def _globs(patterns: Iterable[str]) -> str:
    return json.dumps(list(patterns))


def _since_text(value: Any) -> str:
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
