"""HTTP for the Bamboo stand-in: auth on every path, routing, paging, JSON or XML.

Paths live under `<context>/rest/api/latest/` (or `/rest/api/1.0/`). JSON is served when the
path ends in `.json` or the request sends `Accept: application/json`; otherwise XML, as
Bamboo does. Errors are Bamboo's `{"message": ..., "status-code": N}` (in XML when XML).

Paging, as Bamboo pages: `start-index` (default 0) and `max-result` (singular; default 25),
capped by the server (`max_page`, default 25, as the Bamboo 2.x-5.x docs say: "limited to
25, even if you specify max-result to be greater than 25"). `max-results` (plural) is not
a parameter and is ignored (atlassian-python-api#346). A collection's `size` counts what
the answer holds (BAM-17961), so only an empty page says the listing ended.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import connectors.bamboo.standin.model as m
from poller.standins.http import StandinHandler, who

if TYPE_CHECKING:
    from .controller import FakeBamboo

_JSON = "application/json;charset=UTF-8"
_XML = "application/xml;charset=UTF-8"
DEFAULT_PAGE = 25
_RESULT_KEY = re.compile(r"^(?P<plan>[A-Z0-9]+-[A-Z0-9]+)-(?P<n>[0-9]+)$")
_JOB_RESULT_KEY = re.compile(r"^(?P<job>[A-Z0-9]+-[A-Z0-9]+-[A-Z0-9]+)-(?P<n>[0-9]+)$")


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class _Handler(StandinHandler):
    server_version = "Apache-Coyote/1.1"  # GUESS: what Bamboo's Tomcat sends

    def answer(
        self, method: str, path: str, raw_query: str, query: dict[str, str], extra: list[Any]
    ) -> tuple[int, str, bytes]:
        fb = cast("FakeBamboo", self.server.standin)
        as_json = _wants_json(path, self.headers)
        try:
            status, root, body = _answer(fb, method, path, query, self.headers, extra)
        except HttpError as exc:
            status, root, body = exc.status, "status", _error(exc.status, exc.message)
        return status, *_render(root, body, as_json)

    def error_answer(self, status: int, path: str, message: str | None) -> tuple[str, bytes]:
        body = _error(status, "injected fault" if message is None else message)
        return _render("status", body, _wants_json(path, self.headers))

    def site_headers(self) -> list[tuple[str, str]]:
        return [("Cache-Control", "no-cache, no-store, no-transform"), ("X-ASEN", "SEN-L0000")]


def _error(status: int, message: str) -> dict[str, Any]:
    return {"message": message, "status-code": status}


def _wants_json(path: str, headers: Any) -> bool:
    if path.endswith(".json"):
        return True
    if path.endswith(".xml"):
        return False
    return "application/json" in (headers.get("Accept") or "")


def _render(root: str, body: Any, as_json: bool) -> tuple[str, bytes]:
    if as_json:
        return _JSON, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    xml = ET.tostring(_xml(root, body), encoding="unicode")
    return _XML, ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + xml).encode()


def _xml(tag: str, value: Any) -> ET.Element:
    """JSON → XML the way Bamboo's JAXB entities look: scalars as attributes, objects as
    child elements, a list as repeated elements named by its key."""
    el = ET.Element(tag)
    if isinstance(value, list):
        for item in value:
            el.append(_xml(tag.rstrip("s") or "item", item))
        return el
    if not isinstance(value, dict):
        el.text = _scalar(value)
        return el
    for k, v in value.items():
        if isinstance(v, dict):
            el.append(_xml(k, v))
        elif isinstance(v, list):
            for item in v:
                el.append(_xml(k, item))
        elif v is not None:
            el.set(k, _scalar(v))
    return el


def _scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _who(fb: FakeBamboo, headers: Any) -> str | None:
    """`Authorization: Bearer <personal access token>` (Bamboo 6.10+) or HTTP basic."""
    return who(
        headers.get("Authorization"),
        token=fb.token,
        username=fb.username,
        password=fb.password,
    )


def _answer(
    fb: FakeBamboo,
    method: str,
    path: str,
    query: dict[str, str],
    headers: Any,
    extra: list[tuple[str, str]],
) -> tuple[int, str, Any]:
    rel = fb.within(path)
    if rel is None:
        raise HttpError(404, f"path {path} is outside the context path {fb.context_path or '/'}")
    if _who(fb, headers) is None:
        # GUESS: anonymous access off; Bamboo then refuses the request outright.
        extra.append(("WWW-Authenticate", 'OAuth realm="bamboo"'))
        raise HttpError(401, "Client must be authenticated to access this resource.")
    if method not in ("GET", "HEAD"):
        raise HttpError(405, f"HTTP method {method} is not supported here")
    segs = [unquote(s) for s in rel.strip("/").split("/")]
    if segs[:2] != ["rest", "api"] or len(segs) < 3 or segs[2] not in ("latest", "1.0"):
        raise HttpError(404, f"No resource at {path}")
    rest = segs[3:]
    if rest:
        rest[-1] = re.sub(r"\.(json|xml)$", "", rest[-1])
    with fb._lock:
        return _route(fb, rest, query)


def _page(query: dict[str, str], fb: FakeBamboo) -> tuple[int, int]:
    """(start, size): `start-index` and `max-result`, the latter capped by the server."""
    try:
        start = max(0, int(query.get("start-index") or 0))
    except ValueError:
        start = 0
    try:
        asked = int(query.get("max-result") or DEFAULT_PAGE)
    except ValueError:
        asked = DEFAULT_PAGE
    return start, max(0, min(asked, fb.max_page))


def _expand(query: dict[str, str]) -> set[str]:
    return {e.strip() for e in (query.get("expand") or "").split(",") if e.strip()}


def _route(fb: FakeBamboo, rest: list[str], query: dict[str, str]) -> tuple[int, str, Any]:
    expand = _expand(query)
    match rest:
        case ["info"]:
            return 200, "info", fb.info()
        case ["currentUser"]:
            return 200, "user", fb.current_user()
        case ["plan"] | ["plan", ""]:
            plans = [p for p in fb.plans.values() if p.master is None]
            plans.sort(key=lambda p: p.key)
            start, size = _page(query, fb)
            page = plans[start : start + size]
            items = [m.plan(fb, p) for p in page] if "plans.plan" in expand else None
            return (
                200,
                "plans",
                {
                    "expand": "plans",
                    "link": m.link(fb, "plan"),
                    "plans": m.collection(items, "plan", len(page), start),
                },
            )
        case ["plan", key]:
            return 200, "plan", m.plan(fb, _plan(fb, key))
        case ["plan", key, "branch"]:
            p = _plan(fb, key)
            branches = [fb.plans[b] for b in p.branches if b in fb.plans]
            start, size = _page(query, fb)
            page = branches[start : start + size]
            return (
                200,
                "branches",
                {
                    "expand": "branches",
                    "link": m.link(fb, f"plan/{key}/branch"),
                    "branches": m.collection(
                        [m.branch(fb, b) for b in page], "branch", len(page), start
                    ),
                },
            )
        case ["result", key]:
            if found := _RESULT_KEY.match(key):
                return 200, "result", _one_result(fb, found["plan"], int(found["n"]), expand)
            if found := _JOB_RESULT_KEY.match(key):
                return 200, "result", _one_job_result(fb, found["job"], int(found["n"]))
            return 200, "results", _results(fb, _plan(fb, key), query, expand)
        case ["search", "jobs", key]:
            p = _plan(fb, key)
            rows = [m.search_entity(p, s.name, j) for s in p.stages for j in s.jobs]
            start, size = _page(query, fb)
            entities = rows[start : start + size]
            return (
                200,
                "searchResults",
                {
                    "size": len(entities),
                    "start-index": start,
                    "max-result": len(entities),
                    "searchResults": entities,
                },
            )
        case ["deploy", "project", "all"]:
            return (
                200,
                "deploymentProjects",
                [m.deployment_project(fb, d) for d in fb.deployments.values()],
            )
        case ["deploy", "environment", env_id, "results"]:
            env = fb.environments.get(_int(env_id))
            if env is None:
                raise HttpError(404, f"Environment with id {env_id} not found")
            deployed = sorted(env.results.values(), key=lambda d: -d.id)
            start, size = _page(query, fb)
            shown = deployed[start : start + size]
            return (
                200,
                "results",
                {
                    "size": len(shown),
                    "expand": "results",
                    "start-index": start,
                    "max-result": len(shown),
                    "results": [m.deploy_result(fb, d) for d in shown],
                },
            )
        case ["deploy", "result", result_id]:
            for env in fb.environments.values():
                d = env.results.get(_int(result_id))
                if d is not None:
                    return 200, "deploymentResult", m.deploy_result(fb, d)
            raise HttpError(404, f"Deployment result {result_id} not found")
    raise HttpError(404, f"No resource at /rest/api/latest/{'/'.join(rest)}")


def _int(text: str) -> int:
    return int(text) if text.isdigit() else -1


def _plan(fb: FakeBamboo, key: str) -> m.Plan:
    p = fb.plans.get(key)
    if p is None:
        raise HttpError(404, f"Plan {key} not found")
    return p


def _results(fb: FakeBamboo, p: m.Plan, query: dict[str, str], expand: set[str]) -> dict[str, Any]:
    """A plan's results, newest (highest number) first. GUESS: without
    `includeAllStates=true`, queued and running results are left out."""
    everything = (query.get("includeAllStates") or "").lower() == "true"
    results = sorted(p.results.values(), key=lambda r: -r.number)
    if not everything:
        results = [r for r in results if r.life not in m.RUNNING]
    start, size = _page(query, fb)
    page = results[start : start + size]
    full = any(e == "results.result" or e.startswith("results.result.") for e in expand)
    items = [
        m.result(fb, r, expand, "results.result.", short=not full) for r in page
    ]  # the short form unless `results.result` is expanded
    return {
        "expand": "results",
        "link": m.link(fb, f"result/{p.key}"),
        "plan": m.plan_ref(fb, p),
        "results": m.collection(items, "result", len(page), start),
    }


def _one_result(fb: FakeBamboo, plan_key: str, n: int, expand: set[str]) -> dict[str, Any]:
    p = fb.plans.get(plan_key)
    r = p.results.get(n) if p is not None else None
    if r is None:
        raise HttpError(404, f"Result {plan_key}-{n} not found")
    return m.result(fb, r, expand)


def _one_job_result(fb: FakeBamboo, job_key: str, n: int) -> dict[str, Any]:
    plan_key = job_key.rsplit("-", 1)[0]
    p = fb.plans.get(plan_key)
    r = p.results.get(n) if p is not None else None
    if r is not None:
        for s in r.stages:
            for j in s.jobs:
                if j.key == job_key:
                    return m.job_result(fb, j, r)
    raise HttpError(404, f"Result {job_key}-{n} not found")
