"""`/app/rest/builds?locator=...`: which builds a locator finds, in TeamCity's order and with
TeamCity's defaults and limits.

From the REST plugin's `BuildPromotionFinder` (JetBrains/teamcity-rest):

- **Order**: queued builds first (newest first), then running builds, then finished builds,
  each by start date, newest first, ties by id (`BuildPromotionComparator`). Not id order:
  ids are handed out at queue time, and builds start and finish out of that order.
- **Default filter** (`setLocatorDefaults`): unless `defaultFilter:false`, a locator without
  `state` lists finished builds only, and gets `personal:false`, `canceled:false`,
  `failedToStart:false` and `branch:default:true` when it does not name them (the
  "varying defaults": not when it names `user` or `agent`, nor when it asks only for queued
  or running builds).
- **lookupLimit**: at most this many builds are looked at, counted from the first, filtered
  or not (default `rest.request.builds.defaultLookupLimit`, 5,000); a filtered query over a
  long history silently returns nothing older. The build type, personal, canceled and
  branch choices narrow what is looked at; date conditions do not.
- **Cut-off**: `startDate:(date:D,condition:after)` stops the walk at the first finished
  build that started before D (history is in start order); `finishDate` has no cut-off.
- **Paging**: `count` (default 100) and `start`; `nextHref` is given when a page is full,
  as the locator with `start` moved on. When the limit was reached, older servers say
  nothing (the default here: the case a client must survive); with
  `lookup_limit_next_href=True` the stand-in answers like TeamCity 2022+, with a `nextHref`
  that looks further (a larger `lookupLimit`), even after a page with no builds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from .locator import Locator, LocatorError, parse_locator
from .model import Build, parse_tc_time

if TYPE_CHECKING:
    from .controller import FakeTeamCity

# BuildPromotionFinder's dimensions, as TeamCity lists them (hidden ones left out of the
# message, but accepted), then FinderImpl's paging dimensions.
SUPPORTED = (
    "id",
    "taskId",
    "project",
    "affectedProject",
    "buildType",
    "branch",
    "agent",
    "agentTypeId",
    "user",
    "personal",
    "state",
    "tag",
    "property",
    "compatibleAgent",
    "number",
    "status",
    "canceled",
    "pinned",
    "queuedDate",
    "startDate",
    "finishDate",
    "sinceBuild",
    "sinceDate",
    "untilBuild",
    "untilDate",
    "failedToStart",
    "snapshotDependency",
    "artifactDependency",
    "hanging",
    "composite",
    "history",
    "defaultFilter",
    "count",
    "start",
    "lookupLimit",
    "item",
)
HIDDEN = ("running", "agentName", "tags", "sinceBuildIdLookAheadCount", "revision", "buildId")
KNOWN = SUPPORTED + HIDDEN
IMPLEMENTED = frozenset(
    {
        "id",
        "taskId",
        "buildType",
        "branch",
        "personal",
        "state",
        "running",
        "number",
        "canceled",
        "failedToStart",
        "composite",
        "queuedDate",
        "startDate",
        "finishDate",
        "defaultFilter",
        "count",
        "start",
        "lookupLimit",
    }
)
DEFAULT_COUNT = 100


def _bool(loc: Locator, name: str) -> bool | str | None:
    """`true`/`false`/`any`: True, False or None; absent: the string "absent"."""
    value = loc.get(name)
    if value is None:
        return "absent"
    v = value.lower()
    if v in ("true", "yes", "on"):
        return True
    if v in ("false", "no", "off"):
        return False
    if v in ("any", "all"):
        return None
    raise LocatorError(
        f"Error processing locator '{loc.text}': Invalid value of dimension '{name}':"
        f" '{value}'. Should be 'true', 'false' or 'any'."
    )


def _number(loc: Locator, name: str) -> int | None:
    value = loc.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise LocatorError(
            f"Error processing locator '{loc.text}': Invalid value of dimension '{name}':"
            f" '{value}'. Should be a number."
        ) from None


def _states(loc: Locator) -> set[str]:
    state = loc.get("state")
    if state is None:
        running = loc.get("running")  # compatibility with pre-9.1
        if running is None:
            return {"queued", "running", "finished"}
        return {"running"} if running == "true" else {"finished"}
    if ":" in state:
        sub = parse_locator(state)
        sub.check(("queued", "running", "finished"), frozenset({"queued", "running", "finished"}))
        return {s for s in ("queued", "running", "finished") if sub.get(s) == "true"}
    if state == "any":
        return {"queued", "running", "finished"}
    if state not in ("queued", "running", "finished"):
        raise LocatorError(
            f"Error processing locator '{loc.text}': Unsupported value of 'state' dimension:"
            f" '{state}'. Supported are: queued, running, finished, any"
        )
    return {state}


def _defaults(loc: Locator) -> None:
    """`setLocatorDefaults`: what a locator means when it leaves dimensions out."""
    if loc.single is not None:
        return
    flag = loc.get("defaultFilter")
    if flag is not None and flag.lower() == "false":
        return
    if flag is None and (loc.get("id") or loc.get("taskId")):
        return
    if "state" not in loc.dims and "running" not in loc.dims:
        loc.dims["state"] = ["finished"]
    if flag is None:
        if "user" in loc.dims or "agent" in loc.dims:
            return
        if "finished" not in _states(loc):
            return
    for name, value in (
        ("personal", "false"),
        ("canceled", "false"),
        ("failedToStart", "false"),
        ("branch", "default:true"),
    ):
        loc.dims.setdefault(name, [value])


def _branch_filter(loc: Locator) -> Callable[[Build], bool]:
    text = loc.get("branch")
    if text is None:
        return lambda b: True
    sub = parse_locator(text)
    if sub.single is not None:
        name = sub.single
        return lambda b: (b.branch or "<default>") == name or (name == "<default>" and not b.branch)
    sub.check(
        ("name", "default", "unspecified", "branched", "policy"),
        frozenset({"name", "default"}),
    )
    default = _bool(sub, "default")
    wanted = sub.get("name")

    def ok(b: Build) -> bool:
        is_default = b.branch is None or bool(b.default_branch)
        if default is True and not is_default:
            return False
        if default is False and is_default:
            return False
        return not (wanted is not None and b.branch != wanted)

    return ok


def _time_filters(loc: Locator) -> tuple[list[Callable[[Build], bool]], int | None]:
    """Date conditions, and the start date the walk may stop at (`condition:after`)."""
    filters: list[Callable[[Build], bool]] = []
    cut: int | None = None
    for dim, attr in (
        ("queuedDate", "queued_ms"),
        ("startDate", "start_ms"),
        ("finishDate", "finish_ms"),
    ):
        for text in loc.all(dim):
            sub = parse_locator(text)
            if sub.single is not None:
                sub = parse_locator(f"date:{sub.single}")
            sub.check(
                ("date", "build", "condition", "includeInitial"),
                frozenset({"date", "condition", "build"}),
            )
            date = sub.get("date")
            ref = sub.get("build")
            if date is not None:
                try:
                    when = parse_tc_time(date)
                except ValueError as exc:
                    raise LocatorError(
                        f"Error processing '{dim}' locator '{text}': {exc}"
                    ) from None
            elif ref is not None:
                raise LocatorError("the TeamCity stand-in does not implement build:(...) dates")
            else:
                raise LocatorError(
                    f"Error processing '{dim}' locator '{text}': Invalid locator: should contain"
                    " 'date' or 'build' dimensions or be relative time offset starting with '-'."
                )
            condition = sub.get("condition") or "after"
            if condition not in ("after", "before", "equals"):
                raise LocatorError(
                    f"Error processing '{dim}' locator '{text}': Invalid condition name"
                    f" '{condition}'. Supported names are: [after, before, equals]"
                )
            # Second precision, as the dates themselves.
            bound = when // 1000

            def check(b: Build, attr: str = attr, bound: int = bound, c: str = condition) -> bool:
                value = getattr(b, attr)
                if value is None or (attr == "finish_ms" and b.state != "finished"):
                    return False
                s = int(value) // 1000
                return s > bound if c == "after" else s < bound if c == "before" else s == bound

            filters.append(check)
            if dim == "startDate" and condition == "after":
                cut = when if cut is None else max(cut, when)
    return filters, cut


def _order_key(b: Build) -> tuple[int, int, int]:
    rank = {"queued": 0, "running": 1, "finished": 2}[b.state]
    if b.state == "queued":
        return (rank, -b.id, 0)
    start = b.start_ms if b.start_ms is not None else (b.finish_ms or b.queued_ms)
    return (rank, -start, -b.id)


def find_builds(tc: FakeTeamCity, text: str | None) -> tuple[list[Build], str | None]:
    """The page a locator selects, and the locator of the next page (None: no more)."""
    loc = parse_locator(text) if text else Locator("", dims={})
    if loc.single is not None:
        loc = parse_locator(f"id:{loc.single}")
    loc.check(SUPPORTED, IMPLEMENTED, HIDDEN)
    _defaults(loc)
    count = _number(loc, "count")
    count = DEFAULT_COUNT if count is None else count
    start = _number(loc, "start") or 0
    limit = _number(loc, "lookupLimit")
    if limit is None:
        limit = max(tc.default_lookup_limit, count)

    wanted_id = _number(loc, "id")
    if wanted_id is None:
        wanted_id = _number(loc, "taskId")
    states = _states(loc)
    bt_filter = _build_type_filter(tc, loc)
    personal = _bool(loc, "personal")
    canceled = _bool(loc, "canceled")
    fts = _bool(loc, "failedToStart")
    composite = _bool(loc, "composite")
    number = loc.get("number")
    branch_ok = _branch_filter(loc)
    time_filters, cut = _time_filters(loc)

    def source(b: Build) -> bool:
        """What TeamCity narrows before looking (BuildQueryOptions): not counted."""
        if b.state not in states or not bt_filter(b):
            return False
        if personal is False or personal == "absent":
            if b.personal:
                return False
        elif personal is True and not b.personal:
            return False
        both_off = canceled is False and fts is False
        if b.state == "finished" and both_off and (b.canceled or b.failed_to_start):
            return False
        return branch_ok(b)

    def match(b: Build) -> bool:
        if wanted_id is not None and b.id != wanted_id:
            return False
        if canceled in (True, False) and bool(b.canceled) != canceled:
            return False
        if fts in (True, False) and b.failed_to_start != fts:
            return False
        if composite in (True, False) and b.composite != composite:
            return False
        if number is not None and b.number != number:
            return False
        return all(f(b) for f in time_filters)

    candidates: Iterator[Build] = (
        b for b in sorted(tc.builds.values(), key=_order_key) if source(b)
    )
    page: list[Build] = []
    processed = matched = 0
    reached = False
    for b in candidates:
        if processed >= limit:
            reached = True
            break
        processed += 1
        if cut is not None and b.state == "finished" and (b.start_ms or 0) < cut:
            break
        if not match(b):
            continue
        if matched >= start:
            page.append(b)
        matched += 1
        if len(page) >= count:
            break
    nxt = None
    if len(page) >= count and count > 0:
        nxt = _with(loc.text or f"count:{count}", start=start + count, count=count)
    if reached and tc.lookup_limit_next_href:
        # TeamCity 2022+ (PagerDataImpl.adjustLookupLimitForNextPage): go on past what was
        # served, looking at up to twice as many builds (at most 5,000 more).
        nxt = _with(
            loc.text or f"count:{count}",
            start=start + len(page),
            count=count,
            lookupLimit=limit + min(limit, 5000),
        )
    return page, nxt


def _build_type_filter(tc: FakeTeamCity, loc: Locator) -> Callable[[Build], bool]:
    text = loc.get("buildType")
    if text is None:
        return lambda b: True
    sub = parse_locator(text)
    if sub.single is not None:
        wanted = sub.single
        return lambda b: b.bt.id == wanted
    sub.check(
        ("id", "internalId", "name", "project", "affectedProject"), frozenset({"id", "internalId"})
    )
    bt_id, internal = sub.get("id"), sub.get("internalId")
    if bt_id is not None and not any(bt.id == bt_id for bt in tc.build_types.values()):
        raise LookupError(f"No build type or template is found by id '{bt_id}'.")
    return lambda b: (
        (bt_id is None or b.bt.id == bt_id) and (internal is None or b.bt.internal_id == internal)
    )


def _with(text: str, **dims: int) -> str:
    """The locator with these dimensions set (replaced or appended), as PagerDataImpl does."""
    loc = parse_locator(text)
    parts = []
    seen = set()
    from .locator import _split

    for part in _split(text):
        name = part.partition(":")[0]
        if name in dims:
            parts.append(f"{name}:{dims[name]}")
            seen.add(name)
        else:
            parts.append(part)
    for name, value in dims.items():
        if name not in seen:
            parts.append(f"{name}:{value}")
    del loc
    return ",".join(parts)
