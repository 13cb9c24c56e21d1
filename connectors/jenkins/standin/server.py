"""The HTTP side: the handler, basic auth and the routing of Jenkins' URLs.

Every request is answered by :func:`_answer` from the controller's model, under the model lock,
after the controller's faults had their say (in :class:`poller.standins.http.StandinHandler`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote_plus, unquote

from poller.standins.http import StandinHandler

from .model import _Container, _Item, _Job, _Root, _Run
from .names import PERMALINKS, _enc
from .tree import TreeError, _dumps, _Node, _prune, parse_tree
from .wfapi import _wf_run

if TYPE_CHECKING:
    from .controller import FakeJenkins


class _NotFound(Exception):
    pass


_JSON = "application/json;charset=utf-8"
_HTML = "text/html;charset=utf-8"
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    429: "Too Many Requests",
    500: "Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def _error_page(status: int, path: str, message: str | None = None) -> bytes:
    """The Jetty error page Jenkins answers with for unknown URLs and errors."""
    reason = message or _REASONS.get(status, "Error")
    uri = path.replace("&", "&amp;").replace("<", "&lt;")
    return (
        "<html>\n<head>\n"
        '<meta http-equiv="Content-Type" content="text/html;charset=utf-8"/>\n'
        f"<title>Error {status} {reason}</title>\n</head>\n"
        f"<body><h2>HTTP ERROR {status} {reason}</h2>\n<table>\n"
        f"<tr><th>URI:</th><td>{uri}</td></tr>\n"
        f"<tr><th>STATUS:</th><td>{status}</td></tr>\n"
        f"<tr><th>MESSAGE:</th><td>{reason}</td></tr>\n"
        "<tr><th>SERVLET:</th><td>Stapler</td></tr>\n</table>\n"
        '<hr/><a href="https://eclipse.org/jetty">Powered by Jetty:// 10.0.20</a><hr/>\n'
        "</body>\n</html>\n"
    ).encode()


#: What Jenkins adds to the 403 it answers an anonymous request without Overall/Read with
#: (``AccessDeniedException3.reportAsHeaders``; ``X-Jenkins`` & co. are on every answer).
_DENIED_HEADERS = (
    ("X-You-Are-Authenticated-As", "anonymous"),
    (
        "X-You-Are-In-Group-Disabled",
        "JENKINS-39402: use -Dhudson.security.AccessDeniedException2.REPORT_GROUP_HEADERS=true"
        " or use /whoAmI to diagnose",
    ),
    ("X-Required-Permission", "hudson.model.Hudson.Read"),
    ("X-Permission-Implied-By", "hudson.security.Permission.GenericRead"),
    ("X-Permission-Implied-By", "hudson.model.Hudson.Administer"),
)


def _login_page(ctx: str, path: str, raw_query: str) -> bytes:
    """The white page of ``HudsonAuthenticationEntryPoint``: a redirect to the login form, and
    the diagnosis in an HTML comment, padded to 300 spaces (against IE's friendly errors)."""
    uri = f"{path}?{raw_query}" if raw_query else path
    login = f"{ctx}/login?from={quote_plus(uri, safe='*')}"
    return (
        f"<html><head><meta http-equiv='refresh' content='1;url={login}'/>"
        f"<script>window.location.replace('{login}');</script></head>"
        "<body style='background-color:white; color:white;'>\n\n\n"
        "Authentication required\n<!--\n"
        "You are authenticated as: anonymous\n"
        "Groups that you are in:\n  anonymous\n"
        "Permission you need to have (but didn't): hudson.model.Hudson.Read\n"
        " ... which is implied by: hudson.security.Permission.GenericRead\n"
        " ... which is implied by: hudson.model.Hudson.Administer\n"
        "-->\n\n</body></html>" + " " * 300
    ).encode()


class _Handler(StandinHandler):
    server_version = "Jetty(10.0.20)"
    close_unless_read = True

    def do_PUT(self) -> None:
        self.serve("PUT")

    def do_DELETE(self) -> None:
        self.serve("DELETE")

    @property
    def fj(self) -> FakeJenkins:
        return cast("FakeJenkins", self.server.standin)

    def answer(
        self, method: str, path: str, raw_query: str, query: dict[str, str], extra: list[Any]
    ) -> tuple[int, str, bytes]:
        return _answer(self.fj, method, path, raw_query, query, self.headers, extra)

    def error_answer(self, status: int, path: str, message: str | None) -> tuple[str, bytes]:
        return _HTML, _error_page(status, path, message)

    def site_headers(self) -> list[tuple[str, str]]:
        return [
            ("X-Content-Type-Options", "nosniff"),
            ("X-Jenkins", self.fj.version),
            ("X-Jenkins-Session", self.fj._session),
            ("X-Hudson", "1.395"),
        ]


_REF = "number,url"
_DEFAULT_JOB = parse_tree(
    "actions[**],description,displayName,displayNameOrNull,fullDisplayName,fullName,name,url,"
    f"buildable,builds[{_REF}],color,firstBuild[{_REF}],healthReport[**],inQueue,keepDependencies,"
    f"lastBuild[{_REF}],lastCompletedBuild[{_REF}],lastFailedBuild[{_REF}],lastStableBuild[{_REF}],"
    f"lastSuccessfulBuild[{_REF}],lastUnstableBuild[{_REF}],lastUnsuccessfulBuild[{_REF}],"
    "nextBuildNumber,property[**],queueItem[**],concurrentBuild,disabled,downstreamProjects[**],"
    "labelExpression,resumeBlocked,scm[**],upstreamProjects[**]",
    internal=True,
)
_DEFAULT_FOLDER = parse_tree(
    "actions[**],description,displayName,displayNameOrNull,fullDisplayName,fullName,name,url,"
    "healthReport[**],jobs[name,url,color],primaryView[name,url],views[name,url],sources[**]",
    internal=True,
)
_DEFAULT_ROOT = parse_tree(
    "assignedLabels[name],mode,nodeDescription,nodeName,numExecutors,description,"
    "jobs[name,url,color],overallLoad[**],primaryView[name,url],quietingDown,slaveAgentPort,"
    "unlabeledLoad[**],url,useCrumbs,useSecurity,views[name,url]",
    internal=True,
)
_FULL = parse_tree("x[**]", internal=True).children["x"]


def _user(fj: FakeJenkins, headers: Any) -> tuple[str | None, str | None]:
    """(why basic auth failed, or None; the user name if it succeeded).

    Like Jenkins' ``BasicHeaderProcessor``: no ``Authorization`` header, or one that is not
    ``Basic``, is anonymous (``None, None``); a ``Basic`` one must be right or the request fails.
    """
    auth = headers.get("Authorization")
    if not auth:
        return None, None
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "basic":
        return None, None
    try:
        user, colon, secret = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, colon, secret = "", "", ""
    if not colon:
        return "Malformed HTTP basic Authorization header", None
    ok = hmac.compare_digest(user.encode(), fj.username.encode()) and hmac.compare_digest(
        secret.encode(), fj.token.encode()
    )
    return (None, user) if ok else (f"Invalid password/token for user: {user}", None)


def _answer(
    fj: FakeJenkins,
    method: str,
    path: str,
    raw_query: str,
    query: dict[str, str],
    headers: Any,
    extra: list[tuple[str, str]],
) -> tuple[int, str, bytes]:
    rel = fj.within(path)
    if rel is None:
        return 404, _HTML, _error_page(404, path)
    refused, user = _user(fj, headers)
    if refused is not None:
        extra.append(("X-You-Are-Authenticated-As", "anonymous"))
        extra.append(("WWW-Authenticate", 'Basic realm="Jenkins"'))
        return 401, _HTML, _error_page(401, path, refused)
    if fj.require_auth and user is None:
        extra.extend(_DENIED_HEADERS)
        return 403, "text/html;charset=UTF-8", _login_page(fj.context_path, path, raw_query)
    if method not in ("GET", "HEAD"):
        return 405, _HTML, _error_page(405, path)
    try:
        with fj._lock:
            return _route(fj, rel, query, user)
    except _NotFound:
        return 404, _HTML, _error_page(404, path)
    except TreeError as exc:
        return 400, _HTML, _error_page(400, path, str(exc))


def _route(
    fj: FakeJenkins, rel: str, query: dict[str, str], user: str | None
) -> tuple[int, str, bytes]:
    segs = rel.split("/")[1:] if rel else []
    while segs and segs[-1] == "":
        segs.pop()
    if "" in segs:
        raise _NotFound
    dec = [unquote(s) for s in segs]  # each segment decoded exactly once
    item: _Item = fj._root
    i = 0
    while i + 1 < len(dec) and isinstance(item, _Container):
        if dec[i] == "job":
            child = item.children.get(dec[i + 1])
            if child is None:
                raise _NotFound
            item = child
        elif dec[i] == "view" and dec[i + 1] in item.view_names():
            pass
        else:
            break
        i += 2
    rest = dec[i:]
    if isinstance(item, _Job) and rest:
        head = rest[0]
        rec: _Run | None
        if re.fullmatch(r"[0-9]+", head):
            rec = item.runs.get(int(head))
            if rec is None:
                raise _NotFound
            return _route_run(fj, item, rec, rest[1:], query)
        if head in PERMALINKS:
            rec = item.permalink(head)
            if rec is None:
                raise _NotFound
            return _route_run(fj, item, rec, rest[1:], query)
    return _route_item(fj, item, rest, query, user)


def _tree(query: dict[str, str], default: _Node) -> _Node:
    spec = query.get("tree")
    return default if spec is None else parse_tree(spec)


def _route_item(
    fj: FakeJenkins, item: _Item, rest: list[str], query: dict[str, str], user: str | None
) -> tuple[int, str, bytes]:
    pretty = query.get("pretty") == "true"
    if not rest:
        title = "Dashboard [Jenkins]" if isinstance(item, _Root) else f"{item.fdn} [Jenkins]"
        page = f"<!DOCTYPE html><html><head><title>{title}</title></head><body></body></html>"
        return 200, _HTML, page.encode()
    if rest == ["api", "json"]:
        if isinstance(item, _Root):
            default = _DEFAULT_ROOT
        elif isinstance(item, _Job):
            default = _DEFAULT_JOB
        else:
            default = _DEFAULT_FOLDER
        return 200, _JSON, _dumps(_prune(item, _tree(query, default)), pretty)
    if isinstance(item, _Root) and rest == ["me", "api", "json"]:
        uid = user or "anonymous"
        me: dict[str, Any] = {
            "_class": "hudson.model.User",
            "absoluteUrl": f"{fj.url}user/{_enc(uid)}",
            "description": None,
            "fullName": uid,
            "id": uid,
            "property": [],
        }
        return 200, _JSON, _dumps(_prune(me, _tree(query, _FULL)), pretty)
    if isinstance(item, _Root) and rest == ["queue", "api", "json"]:
        queue = {"_class": "hudson.model.Queue", "discoverableItems": [], "items": []}
        return 200, _JSON, _dumps(_prune(queue, _tree(query, _FULL)), pretty)
    if isinstance(item, _Job) and item.pipeline and rest[0] == "wfapi":
        base = f"{fj.context_path}/{item.rel_url}"
        if rest == ["wfapi", "describe"]:
            body = {
                "_links": {
                    "self": {"href": base + "wfapi/describe"},
                    "runs": {"href": base + "wfapi/runs"},
                },
                "name": item.name,
                "runCount": len(item.nums),
            }
            return 200, _JSON, _dumps(body, pretty)
        if rest == ["wfapi", "runs"]:
            # As pipeline-stage-view's JobExt.create: newest first, at most 10 (its
            # MAX_RUNS_PER_JOB_DEFAULT), stopping after the run *named* `since` (inclusive;
            # the name is the display name, "#N" unless a pipeline set its own).
            full = query.get("fullStages") == "true"
            since = (query.get("since") or "").strip() or None
            runs: list[dict[str, Any]] = []
            for n in reversed(item.nums):
                if len(runs) >= 10:
                    break
                runs.append(_wf_run(fj.context_path, item, item.runs[n], full))
                if since is not None and runs[-1]["name"] == since:
                    break
            return 200, _JSON, _dumps(runs, pretty)
    raise _NotFound


def _route_run(
    fj: FakeJenkins, job: _Job, rec: _Run, rest: list[str], query: dict[str, str]
) -> tuple[int, str, bytes]:
    pretty = query.get("pretty") == "true"
    if not rest:
        page = f"<!DOCTYPE html><html><head><title>{job.fdn} #{rec.number} [Jenkins]</title>"
        return 200, _HTML, (page + "</head><body></body></html>").encode()
    if rest == ["api", "json"]:
        spec = query.get("tree")
        out = rec.obj if spec is None else _prune(rec.obj, parse_tree(spec))
        return 200, _JSON, _dumps(out, pretty)
    if job.pipeline and rest == ["wfapi", "describe"]:
        full = query.get("fullStages") == "true"
        return 200, _JSON, _dumps(_wf_run(fj.context_path, job, rec, full), pretty)
    if (
        job.pipeline
        and len(rest) == 5
        and rest[:2] == ["execution", "node"]
        and rest[3:] == ["wfapi", "describe"]
    ):
        for stage in _wf_run(fj.context_path, job, rec, True)["stages"]:
            if stage["id"] == rest[2]:
                return 200, _JSON, _dumps(stage, pretty)
        raise _NotFound
    if rest == ["consoleText"]:
        text = f"Started\nBuilding {job.fdn} #{rec.number}\nFinished: {rec.result}\n"
        return 200, "text/plain;charset=utf-8", text.encode()
    if rest[0] == "artifact" and len(rest) > 1:
        wanted = "/".join(rest[1:])
        if any(a["relativePath"] == wanted for a in rec.artifacts()):
            return 200, "application/octet-stream", f"artifact {wanted}\n".encode()
    raise _NotFound
