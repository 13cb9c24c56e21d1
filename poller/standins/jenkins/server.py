"""The HTTP side: a threading server, its handler, basic auth and the routing of Jenkins' URLs.

Every request is answered by :func:`_serve` from the controller's model, under the model lock,
after the controller's faults had their say.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, quote_plus, unquote

from .model import _Container, _Item, _Job, _Root, _Run
from .names import PERMALINKS, _enc
from .tree import TreeError, _dumps, _Node, _prune, parse_tree
from .wfapi import _wf_run

if TYPE_CHECKING:
    from .controller import FakeJenkins


class Recorded(NamedTuple):
    """One request the stand-in answered (faults and 401s included)."""

    method: str
    path: str  # as sent on the wire (still percent-encoded), without the query
    query: dict[str, str]  # decoded query parameters (last value wins)
    status: int
    raw_query: str = ""
    size: int = 0  # response body bytes: lets benchmarks see who fetched the BuildData bloat
    #: the fault that shaped the answer: "" (none), "delay", "fail", "break", "flaky", "hang"
    #: (status 0: no answer was sent) or "reset" (status line sent, body cut off)
    fault: str = ""


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


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, fj: FakeJenkins) -> None:
        self.fj = fj
        self.conns: set[socket.socket] = set()
        self.resets: set[socket.socket] = set()
        self.conns_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # Without TCP_NODELAY, Nagle plus delayed ACK stalls every keep-alive answer ~40 ms.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.conns_lock:
            self.conns.add(sock)
        return sock, addr

    def reset_on_close(self, sock: socket.socket) -> None:
        """Close ``sock`` with a TCP RST (SO_LINGER 0) instead of a FIN when its request ends."""
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self.conns_lock:
            self.resets.add(sock)

    def shutdown_request(self, request: Any) -> None:
        with self.conns_lock:
            self.conns.discard(request)
            reset = request in self.resets
            self.resets.discard(request)
        if reset:  # no shutdown(SHUT_WR) first: that would send a FIN before the RST
            self.close_request(request)
            return
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (timeout tests do) is not an error worth printing."""

    def drop_connections(self) -> None:
        with self.conns_lock:
            conns = list(self.conns)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: every answer carries Content-Length
    server_version = "Jetty(10.0.20)"
    server: _Server

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests and benchmarks read ``FakeJenkins.requests`` instead."""

    def do_GET(self) -> None:
        _serve(self.server.fj, self, "GET")

    def do_HEAD(self) -> None:
        _serve(self.server.fj, self, "HEAD")

    def do_POST(self) -> None:
        _serve(self.server.fj, self, "POST")

    def do_PUT(self) -> None:
        _serve(self.server.fj, self, "PUT")

    def do_DELETE(self) -> None:
        _serve(self.server.fj, self, "DELETE")


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


def _serve(fj: FakeJenkins, h: _Handler, method: str) -> None:
    path, _, raw_query = h.path.partition("?")
    query = dict(parse_qsl(raw_query, keep_blank_values=True))
    length = int(h.headers.get("Content-Length") or 0)
    if length:
        h.rfile.read(length)
    hang = fj.faults.hang_for(path)
    if hang is not None:
        _record(fj, Recorded(method, path, query, 0, raw_query, 0, "hang"))
        fj._stopping.wait(hang)
        h.close_connection = True  # no answer at all: the connection just closes
        return
    pause = fj.faults.pause(path)
    fault = "delay" if pause else ""
    if pause:
        fj._stopping.wait(pause)
    extra: list[tuple[str, str]] = []
    failed = fj.faults.failure(path, unquote(raw_query))
    if failed is not None:
        fault, status = failed
        ctype, body = _HTML, _error_page(status, path)
    else:
        try:
            status, ctype, body = _answer(fj, method, path, raw_query, query, h.headers, extra)
        except Exception as exc:  # a stand-in bug must not hang the client
            status, ctype = 500, _HTML
            body = _error_page(500, path, f"{type(exc).__name__}: {exc}")
    sent = b"" if method == "HEAD" else body
    if fj.faults.resets(path):
        fault, sent = "reset", sent[: len(sent) // 2]
    _record(fj, Recorded(method, path, query, status, raw_query, len(sent), fault))
    try:
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.send_header("X-Content-Type-Options", "nosniff")
        h.send_header("X-Jenkins", fj.version)
        h.send_header("X-Jenkins-Session", fj._session)
        h.send_header("X-Hudson", "1.395")
        for k, v in extra:
            h.send_header(k, v)
        if method not in ("GET", "HEAD"):
            h.send_header("Connection", "close")
            h.close_connection = True
        h.end_headers()
        h.wfile.write(sent)
        if fault == "reset":
            h.wfile.flush()
            h.server.reset_on_close(h.connection)
            h.close_connection = True
    except (BrokenPipeError, ConnectionResetError):
        h.close_connection = True


def _record(fj: FakeJenkins, rec: Recorded) -> None:
    with fj._req_lock:
        fj.requests.append(rec)


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
    ctx = fj.context_path
    if not (path == ctx or path.startswith(ctx + "/")):
        return 404, _HTML, _error_page(404, path)
    rel = path[len(ctx) :]
    refused, user = _user(fj, headers)
    if refused is not None:
        extra.append(("X-You-Are-Authenticated-As", "anonymous"))
        extra.append(("WWW-Authenticate", 'Basic realm="Jenkins"'))
        return 401, _HTML, _error_page(401, path, refused)
    if fj.require_auth and user is None:
        extra.extend(_DENIED_HEADERS)
        return 403, "text/html;charset=UTF-8", _login_page(ctx, path, raw_query)
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
        me = {
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
            runs = []
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
