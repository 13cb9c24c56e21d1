"""`sei-poller explain SERVER JOB BUILD`: what SEI would get for one build, and is it enough.

The build is read through the server's connector exactly as a poll reads it (its optional
`get_build(job, number)` when it has one, else its ordinary `scan()` with a `wanted` that
selects only this build), turned into the payload by the same `payload.to_sei` that `once`
uses, and judged by the rules in `poller.quality`. Nothing is sent and nothing is written:
the state database is only read, and only when it exists.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.base import Connector, GetBuild
from poller import logs, wiring
from poller import rules as rulebook
from poller.config import Config, Server
from poller.errors import ConfigError, ConnectorError, NotFound, SeiPollerError
from poller.globs import selected
from poller.model import Broken, Build, JobCursor, JobRef, Unfinished, Unlisted
from poller.payload import to_sei
from poller.quality import Context, Finding, Handled, findings
from poller.state import StateError, lookup
from poller.timeparse import since_ms

OK, FINDINGS = 0, 1


class Missing(SeiPollerError):
    """The job or the build is not on the server: one line, with the URL asked."""


@dataclass(frozen=True)
class Explained:
    server: str
    job: str
    number: int
    url: str
    payload: dict[str, Any] | None
    findings: list[Finding]
    rules: list[dict[str, Any]] = field(default_factory=list)
    deployment: bool | None = None  # the connector's own idea, before the rules

    def as_json(self) -> dict[str, Any]:
        return {
            "server": self.server,
            "job": self.job,
            "build": self.number,
            "url": self.url,
            "payload": self.payload,
            "rules": self.rules,
            "connector_deployment": self.deployment,
            "findings": [asdict(f) for f in self.findings],
            "complete": not self.findings,
        }


def run(cfg: Config, server_name: str, job_name: str, number: int, *, as_json: bool) -> int:
    server = _server(cfg, server_name)
    try:
        result = explain(cfg, server, job_name, number)
    except Missing as exc:
        raise SeiPollerError(str(exc)) from None
    except ConnectorError as exc:
        where = f": {exc.url}" if exc.url else ""
        raise SeiPollerError(f"{server.name}: {exc}{where}") from None
    text = json.dumps(result.as_json(), indent=2, ensure_ascii=False) if as_json else render(result)
    print(logs.REDACTOR.scrub(text))
    return FINDINGS if result.findings else OK


def explain(cfg: Config, server: Server, job_name: str, number: int) -> Explained:
    """Fetch the build through the connector, build its payload, and judge it."""
    connector = wiring.connector(server)
    try:
        job = _job(connector, server, job_name)
        item = _fetch(connector, job, number)
    finally:
        connector.close()
    build: Build | None = None
    broken: str | None = None
    running = isinstance(item, Unfinished)
    if isinstance(item, Broken):
        build, broken = item.fallback, item.error
    elif isinstance(item, Build):
        build = item
    payload = to_sei(build, server.config) if build is not None else None
    row, unreadable = None, None
    try:
        row = lookup(cfg.state_path, server.name, job.full_name, number)
    except StateError as exc:  # another user's state file, say: the rest still holds
        unreadable = str(exc)
    c = server.config
    ctx = Context(
        polled=selected(job.full_name, c.include, c.exclude),
        stages_on=c.stages,
        running=running,
        broken=broken,
        give_up_after=c.give_up_after,
        handled=Handled(**row) if row else None,
        state_error=unreadable,
        since_ms=since_ms(c.backfill_since),
        since_text=str(c.backfill_since),
    )
    url = build.url if build is not None and build.url else (getattr(item, "url", "") or job.url)
    found = findings(build, payload, ctx)
    matched = rulebook.apply(c.payload_rules(), job.full_name).matched
    applied = [
        {"rule": r.where, "jobs": list(r.jobs), **{f: _plain(getattr(r, f)) for f in r.sets()}}
        for r in matched
    ]
    deployment = build.deployment if build is not None else None
    return Explained(server.name, job.full_name, number, url, payload, found, applied, deployment)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def render(result: Explained) -> str:
    lines = [f"{result.server}  {result.job} #{result.number}  {result.url}"]
    if result.payload is None:
        lines.append("no payload: nothing would be sent for this build now")
    else:
        lines.append("payload, exactly as `once` would send it (nothing was sent or written):")
        lines.append(json.dumps(result.payload, indent=2, ensure_ascii=False))
    if result.deployment is not None:
        kind = "a deployment" if result.deployment else "not a deployment"
        lines.append(f"the connector calls it {kind}; the rules below may say otherwise")
    if result.rules:
        lines.append(f"rules matching {result.job} ({len(result.rules)}), the last one wins:")
        for r in result.rules:
            sets = ", ".join(
                f"{k} = {json.dumps(v)}" for k, v in r.items() if k not in ("rule", "jobs")
            )
            lines.append(f"  {r['rule']} {json.dumps(r['jobs'])}: {sets}")
    if not result.findings:
        lines.append("complete: SEI can use all of it, lead time included")
    else:
        lines.append(f"findings ({len(result.findings)}):")
        width = max(len(f.code) for f in result.findings)
        lines.extend(f"  {f.code.ljust(width)}  {f.message}" for f in result.findings)
    return "\n".join(lines)


def _server(cfg: Config, name: str) -> Server:
    for server in cfg.servers:
        if server.name == name:
            return server
    names = ", ".join(s.name for s in cfg.servers)
    raise ConfigError(f"no server named {name!r} (configured: {names})", where="explain SERVER")


def _job(connector: Connector, server: Server, name: str) -> JobRef:
    """The job as discovery sees it (any job, whatever include/exclude say)."""
    jobs, unlisted = [], []
    for item in connector.discover():
        if isinstance(item, Unlisted):
            unlisted.append(item.name)
        elif item.full_name == name:
            return item
        else:
            jobs.append(item.full_name)
    close = difflib.get_close_matches(name, jobs, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    if unlisted:
        hint += f" ({len(unlisted)} folder(s) could not be listed: {', '.join(unlisted[:3])})"
    raise Missing(f"no job {name!r} on {server.name}: {server.config.url}{hint}")


def _fetch(connector: Connector, job: JobRef, number: int) -> Build | Broken | Unfinished:
    if isinstance(connector, GetBuild):
        try:
            return connector.get_build(job, number)
        except NotFound as exc:
            raise Missing(
                f"{job.full_name} #{number}: no such build: {exc.url or job.url}"
            ) from None
    return _scan_for(connector, job, number)


def _scan_for(connector: Connector, job: JobRef, number: int) -> Build | Broken | Unfinished:
    """The connector's ordinary scan, stopped at this build and asking for it alone."""
    asked: list[int] = []

    def wanted(n: int) -> bool:
        if n == number:
            asked.append(n)
            return True
        return False

    sequential = connector.sequential
    # Below the build nothing matters; a time-cursored connector's numbers are not ordered.
    cursor = JobCursor(watermark=number - 1 if sequential else None)
    scan = connector.scan(job, cursor, wanted)
    try:
        for item in scan:
            if isinstance(item, Build | Broken | Unfinished) and item.number == number:
                return item
    finally:
        close = getattr(scan, "close", None)
        if callable(close):
            close()
    if asked:
        raise Missing(
            f"{job.full_name} #{number} is finished, but the connector sends nothing for it"
            " (its log says why: a build whose re-run is sent instead, say):"
            f" {job.url}"
        )
    raise Missing(f"{job.full_name} #{number}: no such build: {job.url}")
