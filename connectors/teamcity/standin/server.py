"""HTTP for the TeamCity stand-in: auth on every path, routing, TeamCity's error texts.

Errors are `text/plain`, worded as the REST plugin's `ExceptionMapperBase` words them
("Responding with error, status code: 400 (Bad Request).", then "Details: <exception>: ...",
then the mapper's hint); a 401 carries `WWW-Authenticate: Basic realm="TeamCity"`.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, unquote

from poller.standins.http import StandinHandler, who

from .finder import find_builds
from .locator import LocatorError, Spec, parse_fields, prune
from .model import DEFAULT_BUILD, DEFAULT_BUILD_TYPE, DEFAULT_PROJECT, Render

if TYPE_CHECKING:
    from .controller import FakeTeamCity

_JSON = "application/json;charset=UTF-8"
_TEXT = "text/plain;charset=UTF-8"
_HINTS = {
    400: "Invalid request. Check locator is specified correctly.",
    403: "Access denied. Check the user has enough permissions to perform the operation.",
    404: (
        "Could not find the entity requested. Check the reference is correct and the user has"
        " permissions to access the entity."
    ),
}
_EXC = {
    400: "jetbrains.buildServer.server.rest.errors.LocatorProcessException",
    403: "jetbrains.buildServer.server.rest.errors.AuthorizationFailedException",
    404: "jetbrains.buildServer.server.rest.errors.NotFoundException",
}
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class HttpError(Exception):
    def __init__(self, status: int, message: str, exc: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.exc = status, message, exc


def error_text(status: int, message: str, exc: str | None = None) -> bytes:
    head = (
        "Error has occurred during request processing" if status >= 500 else "Responding with error"
    )
    lines = [f"{head}, status code: {status} ({_REASONS.get(status, 'Error')})."]
    lines.append(f"Details: {exc or _EXC.get(status, 'java.lang.RuntimeException')}: {message}")
    if status in _HINTS:
        lines.append(_HINTS[status])
    return "\n".join(lines).encode()


_UNAUTHORIZED = b'Authentication required\nTo login manually go to "/login.html" page'


class _Handler(StandinHandler):
    server_version = "Apache-Coyote/1.1"  # what TeamCity's Tomcat sends (GUESS on newer ones)

    def answer(
        self, method: str, path: str, raw_query: str, query: dict[str, str], extra: list[Any]
    ) -> tuple[int, str, bytes]:
        tc = cast("FakeTeamCity", self.server.standin)
        try:
            return _answer(tc, method, path, query, self.headers, extra)
        except HttpError as exc:
            return exc.status, _TEXT, error_text(exc.status, exc.message, exc.exc)

    def error_answer(self, status: int, path: str, message: str | None) -> tuple[str, bytes]:
        text = "injected fault" if message is None else message
        return _TEXT, error_text(status, text, "java.lang.RuntimeException")

    def site_headers(self) -> list[tuple[str, str]]:
        return [("Cache-Control", "no-cache, no-store"), ("TeamCity-Node-Id", "MAIN_SERVER")]


def _who(tc: FakeTeamCity, headers: Any, prefix: str) -> str | None:
    """The user a request authenticates as, or None (then: 401).

    `Authorization: Bearer <token>` (TeamCity 2019.1+ access tokens) or HTTP basic; on the
    legacy `/httpAuth/` prefix only basic. `/guestAuth/` is refused: guest access is off.
    """
    return who(
        headers.get("Authorization"),
        token=None if prefix == "/httpAuth" else tc.token,
        username=tc.username,
        password=tc.password,
    )


def _answer(
    tc: FakeTeamCity,
    method: str,
    path: str,
    query: dict[str, str],
    headers: Any,
    extra: list[tuple[str, str]],
) -> tuple[int, str, bytes]:
    rel = tc.within(path)
    if rel is None:
        raise HttpError(404, f"path {path} is outside the context path {tc.context_path or '/'}")
    prefix = ""
    for p in ("/httpAuth", "/guestAuth"):
        if rel.startswith(p + "/"):
            prefix, rel = p, rel[len(p) :]
    user = None if prefix == "/guestAuth" else _who(tc, headers, prefix)
    if user is None:
        extra.append(("WWW-Authenticate", 'Basic realm="TeamCity"'))
        return 401, _TEXT, _UNAUTHORIZED
    if method not in ("GET", "HEAD"):
        return 405, _TEXT, error_text(405, f"HTTP method {method} is not supported here")
    accept = headers.get("Accept") or ""
    if "json" not in accept:
        # TeamCity's default is XML; the stand-in speaks JSON only, and says so.
        return 406, _TEXT, b"The TeamCity stand-in answers JSON only: send Accept: application/json"
    with tc._lock:
        status, body = _route(tc, rel, query)
    return status, _JSON, json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def _spec(query: dict[str, str], default: Spec) -> Spec:
    text = query.get("fields")
    return default if text is None else parse_fields(text)


def _route(tc: FakeTeamCity, rel: str, query: dict[str, str]) -> tuple[int, Any]:
    segs = [unquote(s) for s in rel.strip("/").split("/")]
    if segs[:2] != ["app", "rest"]:
        raise HttpError(404, f"No resource at {rel}")
    rest = segs[2:]
    if rest and rest[0] == "latest":
        rest = rest[1:]
    r = Render(tc)
    try:
        return 200, _rest(tc, r, rest, query)
    except LocatorError as exc:
        raise HttpError(400, str(exc)) from None
    except LookupError as exc:
        raise HttpError(404, str(exc.args[0]) if exc.args else "not found") from None


def _rest(tc: FakeTeamCity, r: Render, rest: list[str], query: dict[str, str]) -> Any:
    match rest:
        case ["server"]:
            return prune(tc.server_entity(), _spec(query, {k: None for k in tc.server_entity()}))
        case ["server", "version"]:
            return tc.version
        case ["users", "current"] | ["users", "current", ""]:
            u = tc.users[tc.username]
            entity: dict[str, Any] = {
                "username": u.username,
                "name": u.name,
                "id": u.id,
                "href": f"/app/rest/users/id:{u.id}",
            }
            return prune(entity, _spec(query, {k: None for k in entity}))
        case ["projects"]:
            items = [r.project(p) for p in tc.projects.values()]
            entity = {"count": len(items), "href": "/app/rest/projects", "project": items}
            return prune(
                entity, _spec(query, {"count": None, "href": None, "project": DEFAULT_PROJECT})
            )
        case ["projects", ref]:
            p = tc.projects.get(_id_of(ref))
            if p is None:
                raise LookupError(f"No project found by locator '{ref}'.")
            return prune(r.project(p), _spec(query, DEFAULT_PROJECT))
        case ["buildTypes"]:
            if query.get("locator"):
                raise LocatorError("the TeamCity stand-in lists all build types (no locator)")
            items = [r.build_type(bt) for bt in tc.build_types.values()]
            entity = {"count": len(items), "href": "/app/rest/buildTypes", "buildType": items}
            return prune(
                entity, _spec(query, {"count": None, "href": None, "buildType": DEFAULT_BUILD_TYPE})
            )
        case ["buildTypes", ref, "steps"]:
            bt = tc.build_type_by_id(_id_of(ref))
            if not tc.settings_permission:
                raise HttpError(
                    403,
                    f"User '{tc.username}' does not have permission"
                    " VIEW_BUILD_CONFIGURATION_SETTINGS (View build configuration settings)"
                    f" in project with internal id: '{tc.projects[bt.project].internal_id}'",
                )
            return prune(
                r.steps(bt),
                _spec(
                    query,
                    {
                        "count": None,
                        "step": {
                            "id": None,
                            "name": None,
                            "type": None,
                            "disabled": None,
                            "properties": None,
                        },
                    },
                ),
            )
        case ["buildTypes", ref]:
            bt = tc.build_type_by_id(_id_of(ref))
            return prune(r.build_type(bt), _spec(query, DEFAULT_BUILD_TYPE))
        case ["builds"] | ["builds", ""]:
            page, nxt = find_builds(tc, query.get("locator"))
            entity = {
                "count": len(page),
                "href": _href(tc, "/app/rest/builds", query.get("locator")),
                "build": [r.build(b) for b in page],
            }
            if nxt is not None:
                entity["nextHref"] = _href(tc, "/app/rest/builds", nxt, query)
            short = query.get("fields") is None
            if short:
                entity["build"] = [r.build_short(b) for b in page]
                return entity
            return prune(entity, _spec(query, {}))
        case ["builds", ref, *tail]:
            b = tc.builds.get(_build_id(ref))
            if b is None or b.state == "queued":
                raise LookupError(f"No build found by id '{ref.removeprefix('id:')}'.")
            return _build_sub(tc, r, b, tail, query)
        case ["buildQueue"]:
            queued = [
                b for b in sorted(tc.builds.values(), key=lambda b: b.id) if b.state == "queued"
            ]
            entity = {
                "count": len(queued),
                "href": "/app/rest/buildQueue",
                "build": [r.build_short(b) for b in queued],
            }
            return (
                entity
                if query.get("fields") is None
                else prune({**entity, "build": [r.build(b) for b in queued]}, _spec(query, {}))
            )
        case ["vcs-root-instances", ref]:
            inst = _id_of(ref)
            root = next((v for v in tc.vcs_roots.values() if v.instance_id == inst), None)
            if root is None:
                raise LookupError(f"No VCS root instance found by id '{inst}'.")
            if not tc.settings_permission:
                raise HttpError(
                    403,
                    f"User '{tc.username}' does not have permission"
                    " VIEW_BUILD_CONFIGURATION_SETTINGS (View build configuration settings)"
                    " in project with internal id: 'project1'",
                )
            entity = r.vcs_instance(root, with_properties=True)
            return prune(entity, _spec(query, {k: None for k in entity}))
    raise LookupError(f"No resource at /app/rest/{'/'.join(rest)}")


def _build_sub(tc: FakeTeamCity, r: Render, b: Any, tail: list[str], query: dict[str, str]) -> Any:
    while tail and tail[-1] == "":
        tail = tail[:-1]
    if not tail:
        return prune(r.build(b), _spec(query, DEFAULT_BUILD))
    if tail == ["statistics"]:
        return prune(r.statistics(b), _spec(query, {"count": None, "href": None, "property": None}))
    if tail == ["artifacts", "children"] or tail == ["artifacts"]:
        files = r.artifacts(b)
        if not files["file"]:
            return {}  # what a build without artifacts answers (pyteamcity fixture)
        return prune(
            files,
            _spec(
                query,
                {
                    "count": None,
                    "file": {
                        "name": None,
                        "size": None,
                        "modificationTime": None,
                        "href": None,
                        "content": None,
                    },
                },
            ),
        )
    if tail == ["resulting-properties"]:
        raise HttpError(
            403,
            f"User '{tc.username}' does not have permission VIEW_BUILD_RUNTIME_DATA (View build"
            " runtime parameters and data) in project with internal id: 'project1'",
        )
    raise LookupError(f"No resource at builds/id:{b.id}/{'/'.join(tail)}")


def _id_of(ref: str) -> str:
    return ref[3:] if ref.startswith("id:") else ref


def _build_id(ref: str) -> int:
    text = _id_of(ref)
    if not re.fullmatch(r"[0-9]+", text):
        raise LocatorError(f"the TeamCity stand-in finds single builds by id only, not '{ref}'")
    return int(text)


def _href(
    tc: FakeTeamCity, path: str, locator: str | None, query: dict[str, str] | None = None
) -> str:
    """Relative to the server URL, context path left out (PagerDataImpl.getRelativePath);
    the other query parameters (`fields`) kept, as TeamCity's UriBuilder keeps them."""
    if not locator:
        return path
    rest = "".join(
        f"&{quote(k, safe='')}={quote(v, safe='')}"
        for k, v in (query or {}).items()
        if k != "locator"
    )
    return f"{path}?locator={quote(locator, safe='')}{rest}"
