"""Payload rules: per job, the project, themes, deployment flag and change-failure status SEI's
DORA views read. Pure: a job's name in, the fields out.

Rules come in order: a server's `cd_jobs` and `project_name` (as if they were the first
rules), then `[[defaults.rules]]`, then the server's own `[[servers.rules]]`. For each field,
the last matching rule that sets it wins. `project_name` may hold `{1}`, `{2}`, ... (the
job name's segments) and `{name}` (its last segment); a segment the name does not have
leaves the field unset rather than guessed, since SEI keeps the first write of every run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from poller.globs import matches

CfrStatus = bool | Literal["result"]
FIELDS = ("project_name", "themes", "cd", "cfr_status")
_SLOT = re.compile(r"\{(\d+|name)\}")


@dataclass(frozen=True)
class Rule:
    jobs: tuple[str, ...]
    project_name: str | None = None
    themes: tuple[str, ...] | None = None
    cd: bool | None = None
    cfr_status: CfrStatus | None = None
    where: str = ""  # how the config names it: "servers[0] (main).rules[1]", "cd_jobs"
    literal: bool = False  # the server's old `project_name`: no `{1}` slots in it

    def sets(self) -> tuple[str, ...]:
        return tuple(f for f in FIELDS if getattr(self, f) is not None)


@dataclass(frozen=True)
class Outcome:
    """The fields the rules give one job, and the rules that matched it, in order."""

    project_name: str | None = None
    themes: tuple[str, ...] | None = None
    cd: bool | None = None
    cfr_status: CfrStatus | None = None
    matched: tuple[Rule, ...] = field(default=())
    decided_by: dict[str, str] = field(default_factory=dict)  # field -> rule's `where`


def apply(rules: Sequence[Rule], job: str) -> Outcome:
    values: dict[str, object] = {}
    decided: dict[str, str] = {}
    matched = []
    for rule in rules:
        if not matches(job, rule.jobs):
            continue
        matched.append(rule)
        for name in rule.sets():
            value = getattr(rule, name)
            if name == "project_name" and not rule.literal:
                value = render(value, job)
            values[name] = value
            decided[name] = rule.where
    return Outcome(
        project_name=_str(values.get("project_name")),
        themes=values.get("themes"),  # type: ignore[arg-type]
        cd=values.get("cd"),  # type: ignore[arg-type]
        cfr_status=values.get("cfr_status"),  # type: ignore[arg-type]
        matched=tuple(matched),
        decided_by=decided,
    )


def render(template: str, job: str) -> str | None:
    """`{1}/{name}` over `team/api/deploy` → `team/deploy`; None when a segment is missing."""
    segments = job.split("/")
    missing = False

    def fill(m: re.Match[str]) -> str:
        nonlocal missing
        key = m.group(1)
        if key == "name":
            return segments[-1]
        i = int(key)
        if 1 <= i <= len(segments):
            return segments[i - 1]
        missing = True
        return ""

    out = _SLOT.sub(fill, template)
    return None if missing or not out else out


def cfr(status: CfrStatus | None, result: str) -> bool | None:
    """The `cfr_status` sent: `"result"` is true for a run that did not succeed."""
    if status == "result":
        return result != "SUCCESS"
    return status


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def legacy(cd_jobs: Sequence[str], project_name: str) -> list[Rule]:
    """`cd_jobs` and the server's `project_name`, as the first rules."""
    out = []
    if project_name:
        out.append(
            Rule(jobs=("**",), project_name=project_name, where="project_name", literal=True)
        )
    if cd_jobs:
        out.append(Rule(jobs=tuple(cd_jobs), cd=True, where="cd_jobs"))
    return out
