"""HTTP for the GoCD stand-in: auth on every path, versioned `Accept` headers, routing,
cursor paging, the dashboard's ETag, GoCD's error answers.

- Auth comes first, on every path (GoCD's security filters run before any API):
  `Authorization: Bearer <token>` or HTTP basic, else 401 with `WWW-Authenticate`.
- Every API answers only the `Accept: application/vnd.go.cd.vN+json` it serves (or
  `application/vnd.go.cd+json`, "the latest", since 19.8); a missing or other version is
  answered with GoCD's HTML 404 page, as 20.1 and later do.
- History APIs page newest first by internal id: `page_size` (10 to 100, default 10), `after`
  and `before` take an id, `_links.next` / `_links.previous` carry one (GUESS: without the
  `page_size` of the request, so a client following them as they are gets pages of 10).
- `api/dashboard` answers `ETag`, and 304 to a matching `If-None-Match`; 202 while GoCD is
  still loading it after a start.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from poller.standins.http import StandinHandler, who

from .model import Instance, Render, StageRun

if TYPE_CHECKING:
    from .controller import FakeGoCD

# The Accept version each API serves (`data/api-docs/versions.yml`).
VERSIONS = {
    "dashboard": 4,
    "history": 1,  # pipeline_operations
    "instance": 1,  # pipeline_instance
    "stage": 3,  # stage_instances
    "stage_history": 3,
    "version": 1,
    "current_user": 1,
}
LATEST = "application/vnd.go.cd+json"
PAGE_MIN, PAGE_MAX, PAGE_DEFAULT = 10, 100, 10

# GoCD's page for a path it has no route for (what a wrong Accept version gets too); GUESS
# on the wording, the shape (HTML, status 404) is what the issues report.
NOT_FOUND_PAGE = (
    b"<!DOCTYPE html>\n<html>\n<head>\n<title>Page Not Found - Go</title>\n</head>\n<body>\n"
    b'<div class="error-page"><h1>404</h1><h2>The page you are looking for was not found.</h2>'
    b"</div>\n</body>\n</html>\n"
)


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Html404(Exception):
    pass


class _Handler(StandinHandler):
    server_version = "Jetty(9.4.z-SNAPSHOT)"  # GoCD runs in Jetty (GUESS on the exact string)

    def answer(
        self, method: str, path: str, raw_query: str, query: dict[str, str], extra: list[Any]
    ) -> tuple[int, str, bytes]:
        gocd = cast("FakeGoCD", self.server.standin)
        try:
            return _answer(gocd, method, path, query, self.headers, extra)
        except _Html404:
            return 404, "text/html; charset=utf-8", NOT_FOUND_PAGE
        except HttpError as exc:
            return _message(exc.status, exc.message)

    def error_answer(self, status: int, path: str, message: str | None) -> tuple[str, bytes]:
        text = "injected fault" if message is None else message
        return _message(status, text)[1:]


def _message(status: int, text: str) -> tuple[int, str, bytes]:
    """GoCD's API errors: `{"message": "..."}`."""
    body = json.dumps({"message": text}, indent=2).encode()
    return status, "application/vnd.go.cd.v1+json; charset=utf-8", body


def _who(gocd: FakeGoCD, headers: Any) -> str | None:
    return who(
        headers.get("Authorization"),
        token=gocd.token,
        username=gocd.username,
        password=gocd.password,
    )


def _accepts(headers: Any, version: int) -> str | None:
    """The media type the request accepts for an API serving `version`, or None."""
    accept = str(headers.get("Accept") or "")
    wanted = f"application/vnd.go.cd.v{version}+json"
    types = [t.split(";")[0].strip() for t in accept.split(",")]
    if wanted in types:
        return wanted
    if LATEST in types:
        return wanted  # "latest" is the version this stand-in serves
    return None


def _answer(
    gocd: FakeGoCD,
    method: str,
    path: str,
    query: dict[str, str],
    headers: Any,
    extra: list[tuple[str, str]],
) -> tuple[int, str, bytes]:
    if _who(gocd, headers) is None:
        extra.append(("WWW-Authenticate", 'Basic realm="GoCD"'))
        raise HttpError(401, "You are not authenticated!")
    rel = gocd.within(path)
    if rel is None:
        raise _Html404
    segs = [unquote(s) for s in rel.strip("/").split("/")]
    if segs[:1] != ["api"]:
        raise _Html404
    kind, args = _route(segs[1:])
    media = _accepts(headers, gocd.served.get(kind, VERSIONS[kind]))
    if media is None:
        raise _Html404  # a wrong or missing version: no route matches
    if method not in ("GET", "HEAD"):
        raise HttpError(405, f"Method {method} is not allowed")
    with gocd._lock:
        if kind == "dashboard":
            if gocd.loading:
                body = json.dumps(
                    {
                        "message": "Dashboard is being processed, this may take a few"
                        " seconds. Please check back later."
                    }
                ).encode()
                return 202, f"{media}; charset=utf-8", body
            etag = _etag(gocd)
            asked = str(headers.get("If-None-Match") or "").strip()
            extra.append(("ETag", f'"{etag}"'))
            if asked in (f'"{etag}"', etag, f'W/"{etag}"'):
                return 304, f"{media}; charset=utf-8", b""
        data = _data(gocd, kind, args, query)
    return 200, f"{media}; charset=utf-8", json.dumps(data, indent=2).encode()


def _route(rest: list[str]) -> tuple[str, list[str]]:
    match rest:
        case ["dashboard"]:
            return "dashboard", []
        case ["version"]:
            return "version", []
        case ["current_user"]:
            return "current_user", []
        case ["pipelines", name, "history"]:
            return "history", [name]
        case ["pipelines", name, counter] if counter.isdigit():
            return "instance", [name, counter]
        case ["stages", name, stage, "history"]:
            return "stage_history", [name, stage]
        case ["stages", name, counter, stage, stage_counter]:
            return "stage", [name, counter, stage, stage_counter]
    raise _Html404


def _etag(gocd: FakeGoCD) -> str:
    """As `DashboardControllerV4.calcEtag`: the user, then each group's pipelines by name
    and `last_updated_timestamp`."""
    groups: dict[str, list[str]] = {}
    for p in gocd.pipelines.values():
        groups.setdefault(p.group, []).append(f"{p.name}:{p.updated}")
    segment = "/".join(",".join(v) for _, v in sorted(groups.items()))
    return hashlib.md5(f"{gocd.username}/{segment}/".encode()).hexdigest()  # noqa: S324


def _data(gocd: FakeGoCD, kind: str, args: list[str], query: dict[str, str]) -> Any:
    r = Render(gocd.url)
    if kind == "version":
        return {
            "_links": {
                "self": {"href": f"{gocd.url}api/version"},
                "doc": {"href": "https://api.gocd.org/#version"},
            },
            "version": gocd.version,
            "build_number": "16079",
            "git_sha": "a7a5717cbd60c30006314fb8dd529796c93adaf0",
            "full_version": f"{gocd.version} (16079-a7a5717cbd60c30006314fb8dd529796c93adaf0)",
            "commit_url": "https://github.com/gocd/gocd/commits/"
            "a7a5717cbd60c30006314fb8dd529796c93adaf0",
        }
    if kind == "current_user":
        return {
            "_links": {
                "doc": {"href": "https://api.gocd.org/#users"},
                "self": {"href": f"{gocd.url}api/users/{gocd.username}"},
                "find": {"href": f"{gocd.url}api/users/:login_name"},
            },
            "login_name": gocd.username,
            "display_name": gocd.display_name,
            "enabled": True,
            "email": None,
            "email_me": False,
            "checkin_aliases": [],
        }
    if kind == "dashboard":
        return _dashboard(gocd, r)
    name = args[0]
    if name not in gocd.pipelines:
        raise HttpError(404, f"Pipeline with name '{name}' was not found!")
    if kind == "history":
        rows = gocd.history(name)
        page, links = _page(rows, query, lambda i: i.id, f"{gocd.url}api/pipelines/{name}/history")
        history: dict[str, Any] = {"_links": links} if links else {}
        history["pipelines"] = [r.instance(i) for i in page]
        return history
    if kind == "instance":
        try:
            inst = gocd.instance(name, int(args[1]))
        except LookupError:
            raise HttpError(
                404, f"Pipeline with name '{name}' and counter '{args[1]}' was not found!"
            ) from None
        return r.instance(inst)
    if kind == "stage":
        _, counter, stage, stage_counter = args
        found = _stage_run(gocd, name, counter, stage, stage_counter)
        if found is None:
            raise HttpError(
                404,
                f"Not Found {{ Stage '{stage}' with counter '{stage_counter}' for pipeline"
                f" '{name}' with counter '{counter}' not found. }}",
            )
        inst, run = found
        return r.stage(inst, run)
    # stage history: every run of the stage, newest (highest stage id) first
    stage = args[1]
    runs = sorted(
        ((i, s) for i in gocd.history(name) for s in i.runs if s.name == stage),
        key=lambda pair: pair[1].id,
        reverse=True,
    )
    page, links = _page(
        runs, query, lambda pair: pair[1].id, f"{gocd.url}api/stages/{name}/{stage}/history"
    )
    out: dict[str, Any] = {"_links": links} if links else {}
    out["stages"] = [r.stage_history_item(i, s) for i, s in page]
    return out


def _stage_run(
    gocd: FakeGoCD, name: str, counter: str, stage: str, stage_counter: str
) -> tuple[Instance, StageRun] | None:
    if not (counter.isdigit() and stage_counter.isdigit()):
        return None
    try:
        inst = gocd.instance(name, int(counter))
    except LookupError:
        return None
    for run in inst.runs:
        if run.name == stage and run.counter == int(stage_counter):
            return inst, run
    return None


def _page(
    rows: list[Any], query: dict[str, str], key: Any, href: str
) -> tuple[list[Any], dict[str, Any]]:
    """One page of `rows` (sorted by id, newest first) per `page_size` / `after` / `before`."""
    size_text = query.get("page_size")
    if size_text is None:
        size = PAGE_DEFAULT
    else:
        if not size_text.isdigit() or not PAGE_MIN <= int(size_text) <= PAGE_MAX:
            raise HttpError(
                422,
                f"The query parameter 'page_size', if specified must be a number between"
                f" {PAGE_MIN} and {PAGE_MAX}.",
            )
        size = int(size_text)
    after, before = query.get("after"), query.get("before")
    for name, value in (("after", after), ("before", before)):
        if value is not None and not value.lstrip("-").isdigit():
            raise HttpError(
                400, f"The query parameter '{name}', if specified must be a positive integer."
            )
    if after is not None:
        chosen = [row for row in rows if key(row) < int(after)][:size]
    elif before is not None:
        chosen = [row for row in rows if key(row) > int(before)][-size:]
    else:
        chosen = rows[:size]
    links: dict[str, Any] = {}
    if chosen:
        if any(key(row) < key(chosen[-1]) for row in rows):
            links["next"] = {"href": f"{href}?after={key(chosen[-1])}"}
        if any(key(row) > key(chosen[0]) for row in rows):
            links["previous"] = {"href": f"{href}?before={key(chosen[0])}"}
    return chosen, links


def _dashboard(gocd: FakeGoCD, r: Render) -> dict[str, Any]:
    """The latest instance of each pipeline and every instance with a stage still running
    (GUESS: what GoCD's dashboard model calls its active instances), newest first."""
    groups: dict[str, list[str]] = {}
    pipelines = []
    for p in gocd.pipelines.values():
        groups.setdefault(p.group, []).append(p.name)
        mine = gocd.history(p.name)
        shown = [i for i in mine if i.active()]
        if mine and mine[0] not in shown:
            shown.insert(0, mine[0])
        pipelines.append(r.dashboard_pipeline(p, shown))
    return {
        "_links": {
            "self": {"href": f"{gocd.url}api/dashboard"},
            "doc": {"href": "https://api.go.cd/current/#dashboard"},
        },
        "_personalization": hashlib.sha256(gocd.username.encode()).hexdigest(),
        "_embedded": {
            "pipeline_groups": [
                {
                    "_links": {
                        "doc": {"href": "https://api.go.cd/current/#pipeline-groups"},
                        "self": {"href": f"{gocd.url}api/config/pipeline_groups"},
                    },
                    "name": name,
                    "pipelines": names,
                    "can_administer": True,
                }
                for name, names in groups.items()
            ],
            "environments": [],
            "pipelines": pipelines,
        },
    }
