"""``FakeBuildkite``: the stand-in server, its editable model and its HTTP answers."""

from __future__ import annotations

import copy
import hmac
import itertools
import json
import math
import ssl
import threading
import time
import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Any, cast
from urllib.parse import urlencode

from poller.standins.http import Standin, StandinHandler

ALL_SCOPES = (
    "read_builds",
    "read_pipelines",
    "read_artifacts",
    "read_job_env",
    "read_organizations",
    "read_user",
)
DEEP = (
    "Listing builds this deep is not supported. Please narrow your query using filters such"
    " as branch or created_from."
)
UNAUTHORIZED = (
    "Authentication required. Please supply a valid API Access Token:"
    " https://buildkite.com/docs/apis/rest-api#authentication"
)
FINISHED = ("passed", "failed", "blocked", "canceled")


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{ms % 1000:03d}Z"
    )


def _ms(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


class FakeBuildkite(Standin):
    """One Buildkite organisation on 127.0.0.1 (API under ``<url>v2/``), editable while it
    answers. ``limit`` requests per ``window`` seconds, then 429 until the window resets."""

    thread_prefix = "fake-buildkite"

    def __init__(
        self,
        *,
        org: str = "acme",
        token: str = "bk-secret-token",
        scopes: tuple[str, ...] = ALL_SCOPES,
        limit: int = 200,
        window: float = 60.0,
        max_page: int = 50,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__("", _Handler, tls)
        self.org, self.token, self.scopes = org, token, scopes
        self.limit, self.window, self.max_page = limit, window, max_page
        self.api = f"{self.url}v2/"
        self.pipelines: dict[str, dict[str, Any]] = {}
        self.builds: dict[str, dict[int, dict[str, Any]]] = {}
        self.artifacts: dict[tuple[str, int], list[dict[str, Any]]] = {}
        self.envs: dict[str, dict[str, str]] = {}  # job id → env
        self.window_start = time.monotonic()
        self.used = 0
        self.throttled = 0  # 429s answered
        self._ids = itertools.count(1)
        self._rl = threading.Lock()

    # -- the model ------------------------------------------------------------------------

    def add_pipeline(
        self,
        slug: str,
        name: str | None = None,
        *,
        repository: str = "git@github.com:acme/app.git",
        created: int | None = None,
        default_branch: str = "main",
    ) -> dict[str, Any]:
        with self._lock:
            p = {
                "id": str(uuid.uuid4()),
                "url": f"{self.api}organizations/{self.org}/pipelines/{slug}",
                "web_url": f"https://buildkite.com/{self.org}/{slug}",
                "name": name or slug,
                "description": "",
                "slug": slug,
                "repository": repository,
                "default_branch": default_branch,
                "provider": {"id": "github"},
                "builds_url": f"{self.api}organizations/{self.org}/pipelines/{slug}/builds",
                "created_at": iso(created if created is not None else now_ms() - 400 * 86_400_000),
                "archived_at": None,
                "env": {},
            }
            self.pipelines[slug] = p
            self.builds.setdefault(slug, {})
            return p

    def job(
        self,
        name: str,
        *,
        state: str = "passed",
        started: int | None = None,
        finished: int | None = None,
        type: str = "script",
        step_key: str | None = None,
        group_key: str | None = None,
        soft_failed: bool = False,
        artifact_paths: str = "",
        env: dict[str, str] | None = None,
        triggered_build: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A job record for ``add_build(jobs=[...])``."""
        jid = str(uuid.UUID(int=next(self._ids)))
        j: dict[str, Any] = {
            "id": jid,
            "type": type,
            "name": name,
            "step_key": step_key,
            "group_key": group_key,
            "state": state,
            "command": "make" if type == "script" else None,
            "soft_failed": soft_failed,
            "exit_status": None if state not in ("passed", "failed") else int(state == "failed"),
            "artifact_paths": artifact_paths,
            "created_at": iso(started),
            "scheduled_at": iso(started),
            "runnable_at": iso(started),
            "started_at": iso(started),
            "finished_at": iso(finished),
            "retried": False,
            "retried_in_job_id": None,
            "retries_count": None,
            "retry_source": None,
            "retry_type": None,
        }
        if type == "waiter":
            j = {"id": jid, "type": "waiter"}
        if triggered_build is not None:
            j["triggered_build"] = triggered_build
        if env is not None:
            with self._lock:
                self.envs[jid] = env
        return j

    def add_build(
        self,
        slug: str,
        *,
        number: int | None = None,
        state: str = "passed",
        created: int,
        started: int | None = None,
        finished: int | None = None,
        source: str = "ui",
        creator: tuple[str, str | None] | None = ("Alice Doe", "alice@example.com"),
        commit: str = "bf46f7db3aa051ea3cab5ec8ad293c86d56cddeb",
        branch: str = "main",
        message: str = "Merge pull request #2",
        env: dict[str, str] | None = None,
        meta_data: dict[str, str] | None = None,
        blocked: bool = False,
        jobs: list[dict[str, Any]] | None = None,
        pull_request: dict[str, Any] | None = None,
        rebuilt_from: int | None = None,
        tag: str | None = None,
    ) -> dict[str, Any]:
        with self._lock:
            builds = self.builds[slug]
            n = number if number is not None else max(builds, default=0) + 1
            b: dict[str, Any] = {
                "id": str(uuid.uuid4()),
                "url": f"{self.api}organizations/{self.org}/pipelines/{slug}/builds/{n}",
                "web_url": f"https://buildkite.com/{self.org}/{slug}/builds/{n}",
                "number": n,
                "state": state,
                "blocked": blocked,
                "blocked_state": "passed" if blocked else "",
                "message": message,
                "commit": commit,
                "branch": branch,
                "tag": tag,
                "env": env or {},
                "source": source,
                "author": None,
                "creator": None
                if creator is None
                else {"id": str(uuid.uuid4()), "name": creator[0], "email": creator[1]},
                "created_at": iso(created),
                "scheduled_at": iso(created),
                "started_at": iso(started),
                "finished_at": iso(finished),
                "meta_data": meta_data or {},
                "pull_request": pull_request,
                "rebuilt_from": None
                if rebuilt_from is None
                else {
                    "id": builds[rebuilt_from]["id"],
                    "number": rebuilt_from,
                    "url": builds[rebuilt_from]["url"],
                },
                "jobs": jobs or [],
            }
            builds[n] = b
            return b

    def update(self, slug: str, number: int, **fields: Any) -> None:
        """Change a build: times as epoch ms (`finished=...`), other fields as they are."""
        with self._lock:
            b = self.builds[slug][number]
            for k, v in fields.items():
                if k in ("created", "started", "finished"):
                    b[f"{k}_at"] = iso(v)
                else:
                    b[k] = v

    def retry_job(
        self, slug: str, number: int, job_id: str, *, state: str, started: int, finished: int
    ) -> dict[str, Any]:
        """Retry a job inside its build: the old one is `retried`, the new one last."""
        with self._lock:
            b = self.builds[slug][number]
            old = next(j for j in b["jobs"] if j["id"] == job_id)
            new = self.job(
                old["name"],
                state=state,
                started=started,
                finished=finished,
                step_key=old.get("step_key"),
                group_key=old.get("group_key"),
            )
            new["retries_count"] = (old.get("retries_count") or 0) + 1
            new["retry_source"] = {"job_id": job_id, "retry_type": "manual"}
            old["retried"], old["retried_in_job_id"] = True, new["id"]
            b["jobs"].append(new)
            return new

    def add_artifact(self, slug: str, number: int, job_id: str, path: str, size: int) -> None:
        with self._lock:
            aid = str(uuid.uuid4())
            base = f"{self.api}organizations/{self.org}/pipelines/{slug}/builds/{number}"
            self.artifacts.setdefault((slug, number), []).append(
                {
                    "id": aid,
                    "job_id": job_id,
                    "url": f"{base}/jobs/{job_id}/artifacts/{aid}",
                    "download_url": f"{base}/jobs/{job_id}/artifacts/{aid}/download",
                    "state": "finished",
                    "path": path,
                    "dirname": path.rpartition("/")[0] or ".",
                    "filename": path.rpartition("/")[2],
                    "mime_type": "application/octet-stream",
                    "file_size": size,
                    "sha1sum": "0" * 40,
                }
            )

    # -- recorded answers (``connectors/buildkite/standin/data/``) -------------------------------

    @staticmethod
    def recorded(name: str) -> Any:
        """A recorded answer, parsed: ``"buildkiterb/test_build_list_org.extracted.json"``."""
        path = resources.files(__package__) / "data" / name
        return json.loads(path.read_text(encoding="utf-8"))

    def add_recorded_pipeline(self, raw: dict[str, Any]) -> None:
        with self._lock:
            self.pipelines[raw["slug"]] = copy.deepcopy(raw)
            self.builds.setdefault(raw["slug"], {})

    def add_recorded_build(self, raw: dict[str, Any]) -> dict[str, Any]:
        """A build as recorded; its embedded pipeline too, unless one by that slug is known."""
        b = copy.deepcopy(raw)
        pipeline = b.pop("pipeline")
        with self._lock:
            if pipeline["slug"] not in self.pipelines:
                self.add_recorded_pipeline(pipeline)
            self.builds[pipeline["slug"]][b["number"]] = b
        return b

    # -- rate limit -----------------------------------------------------------------------

    def take(self) -> tuple[bool, list[tuple[str, str]]]:
        """Count one request against the window: (allowed, rate-limit headers)."""
        with self._rl:
            now = time.monotonic()
            if now - self.window_start >= self.window:
                self.window_start, self.used = now, 0
            allowed = self.used < self.limit
            if allowed:
                self.used += 1
            else:
                self.throttled += 1
            remaining = max(0, self.limit - self.used)
            reset = max(1, math.ceil(self.window - (now - self.window_start)))
        headers = []
        for prefix in ("RateLimit", "Rate-Limit"):
            headers += [
                (f"{prefix}-Remaining", str(remaining)),
                (f"{prefix}-Limit", str(self.limit)),
                (f"{prefix}-Reset", str(reset)),
            ]
        return allowed, headers

    # -- answers --------------------------------------------------------------------------

    def render(self, b: dict[str, Any], retried: bool) -> dict[str, Any]:
        out = copy.deepcopy(b)
        slug = b["url"].rsplit("/builds/", 1)[0].rsplit("/", 1)[1]
        out["pipeline"] = copy.deepcopy(self.pipelines[slug])
        if not retried:
            out["jobs"] = [j for j in out["jobs"] if not j.get("retried")]
        return out

    def list_builds(self, slug: str | None, q: dict[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            pool = [
                b
                for s, builds in self.builds.items()
                if slug is None or s == slug
                for b in builds.values()
            ]
            found = []
            for b in pool:
                if "finished_from" in q and (
                    not b["finished_at"] or _ms(b["finished_at"]) < _ms(q["finished_from"])
                ):
                    continue
                if "created_from" in q and _ms(b["created_at"]) < _ms(q["created_from"]):
                    continue
                if "created_to" in q and _ms(b["created_at"]) >= _ms(q["created_to"]):
                    continue
                state = q.get("state")
                if state == "finished" and not (b["state"] in FINISHED or b["blocked"]):
                    continue
                if state == "blocked" and not b["blocked"]:
                    continue
                if state and state not in ("finished", "blocked") and b["state"] != state:
                    continue
                found.append(b)
            found.sort(key=lambda b: (b["created_at"], b["number"]), reverse=True)
            retried = q.get("include_retried_jobs") == "true"
            return [self.render(b, retried) for b in found]


class _Handler(StandinHandler):
    server_version = "nginx"

    def answer(
        self, method: str, path: str, raw_query: str, query: dict[str, str], extra: list[Any]
    ) -> tuple[int, str, bytes]:
        bk = cast("FakeBuildkite", self.server.standin)
        auth = self.headers.get("Authorization") or ""
        if not hmac.compare_digest(auth, f"Bearer {bk.token}"):
            return _json(401, {"message": UNAUTHORIZED})
        allowed, headers = bk.take()
        extra.extend(headers)
        extra.append(("X-OAuth-Scopes", ",".join(bk.scopes)))
        if not allowed:
            return _json(
                429, {"message": "You have exceeded your API rate limit.", "scope": "rest"}
            )
        parts = [p for p in path.split("/") if p]
        if method != "GET" or not parts or parts[0] != "v2":
            return _json(404, {"message": "Not Found"})
        rest = parts[1:]
        scope, status, data = self._route(bk, rest, query, extra)
        if scope:
            extra.append(("X-Accepted-OAuth-Scopes", scope))
            if scope not in bk.scopes:
                return _json(403, {"message": f"Your access token doesn't have the {scope} scope"})
        if status != 200:
            return _json(status, data)
        if isinstance(data, list):
            page, size = int(query.get("page") or 1), min(100, int(query.get("per_page") or 30))
            if page > bk.max_page:
                return _json(400, {"message": DEEP})
            chunk = data[(page - 1) * size : page * size]
            links = []
            base = f"{bk.url.rstrip('/')}{path}"
            if page * size < len(data):
                links.append(f'<{base}?{urlencode({**query, "page": page + 1})}>; rel="next"')
                last = math.ceil(len(data) / size)
                links.append(f'<{base}?{urlencode({**query, "page": last})}>; rel="last"')
            if page > 1:
                links.append(f'<{base}?{urlencode({**query, "page": page - 1})}>; rel="prev"')
                links.append(f'<{base}?{urlencode({**query, "page": 1})}>; rel="first"')
            if links:
                extra.append(("Link", ", ".join(links)))
            data = chunk
        return _json(200, data)

    def _route(
        self, bk: FakeBuildkite, rest: list[str], q: dict[str, str], extra: list[Any]
    ) -> tuple[str | None, int, Any]:
        if rest == ["access-token"]:
            return None, 200, {"uuid": str(uuid.UUID(int=7)), "scopes": list(bk.scopes)}
        if len(rest) < 2 or rest[0] != "organizations" or rest[1] != bk.org:
            return None, 404, {"message": "No organization found"}
        tail = rest[2:]
        if not tail:
            return "read_organizations", 200, {"slug": bk.org, "name": bk.org.title()}
        if tail == ["builds"]:
            return "read_builds", 200, bk.list_builds(None, q)
        if tail == ["pipelines"]:
            with bk._lock:
                return "read_pipelines", 200, [copy.deepcopy(p) for p in bk.pipelines.values()]
        if tail[0] != "pipelines" or len(tail) < 3 or tail[2] != "builds":
            return None, 404, {"message": "Not Found"}
        slug = tail[1]
        if slug not in bk.pipelines:
            return None, 404, {"message": "No pipeline found"}
        if len(tail) == 3:
            return "read_builds", 200, bk.list_builds(slug, q)
        try:
            n = int(tail[3])
        except ValueError:
            return None, 404, {"message": "No build found"}
        with bk._lock:
            b = bk.builds[slug].get(n)
            if b is None:
                return None, 404, {"message": "No build found"}
            if len(tail) == 4:
                return "read_builds", 200, bk.render(b, q.get("include_retried_jobs") == "true")
            if tail[4:] == ["artifacts"]:
                return "read_artifacts", 200, copy.deepcopy(bk.artifacts.get((slug, n), []))
            if len(tail) == 7 and tail[4] == "jobs" and tail[6] == "env":
                if tail[5] not in {j["id"] for j in b["jobs"]}:
                    return None, 404, {"message": "No job found"}
                return "read_job_env", 200, {"env": dict(bk.envs.get(tail[5], {}))}
        return None, 404, {"message": "Not Found"}

    def error_answer(self, status: int, path: str, message: str | None) -> tuple[str, bytes]:
        return "application/json; charset=utf-8", json.dumps(
            {"message": message or f"Error {status}"}
        ).encode()


def _json(status: int, data: Any) -> tuple[int, str, bytes]:
    return status, "application/json; charset=utf-8", json.dumps(data).encode()
