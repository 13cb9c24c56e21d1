"""The baseline: what a user writes with python-jenkins and requests, one thing at a time.

    python -m benchmarks.naive read  --jenkins URL --user U --token T [--stages]
    python -m benchmarks.naive e2e   --jenkins URL --user U --token T --sei URL --api-key K
    python -m benchmarks.naive ceiling --sei URL --api-key K --payloads FILE [--client C]

``read``: ``get_all_jobs()``, ``get_job_info(name, fetch_all_builds=True)`` per job,
``get_build_info(name, n)`` per build (and ``get_build_stages(name, n)`` per pipeline build with
``--stages``), each finished build turned into an SEI payload dict by a simple function.
``e2e``: the same, plus ``requests.post`` of each payload to SEI, serially.
``ceiling``: one client POSTing ready-made payloads to SEI as fast as it can, serially, with
``requests`` (set up like sei-poller's Sender) or bare ``http.client``.
``pages``: the reading floor: a bare ``requests`` session GETs exactly the pages sei-poller
reads (one ``tree`` listing per folder, ranged build pages with the same fields) and only
parses the JSON, transforming nothing.

Prints one JSON line: counts and seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from typing import Any

GUID = "666ba79b-3f3d-4236-ac04-4686ce526705"


def to_payload(
    job: dict[str, Any], build: dict[str, Any], base: str, stages: dict[str, Any] | None
) -> dict[str, Any]:
    """A simple transform, the kind a user writes: the fields SEI needs, no subtleties."""
    causes = [c for a in build.get("actions") or [] if a for c in a.get("causes") or []]
    params = [p for a in build.get("actions") or [] if a for p in a.get("parameters") or []]
    git = next((a for a in build.get("actions") or [] if a and a.get("lastBuiltRevision")), {})
    commits = [
        i.get("commitId")
        for cs in build.get("changeSets") or [build.get("changeSet") or {}]
        for i in (cs or {}).get("items") or []
    ]
    if git:
        commits.insert(0, git["lastBuiltRevision"].get("SHA1"))
    user = next((c.get("userId") for c in causes if c.get("userId")), None)
    payload: dict[str, Any] = {
        "pipeline": job["name"],
        "job_full_name": job["fullName"],
        "qualified_name": job["fullName"],
        "instance_name": "Jenkins-1",
        "instance_guid": GUID,
        "instance_url": base,
        "build_number": build["number"],
        "start_time": build.get("timestamp"),
        "duration": build.get("duration"),
        "result": build.get("result"),
        "user_id": user or "SYSTEM",
        "job_run_params": [{"name": p.get("name"), "value": p.get("value")} for p in params],
        "scm_commit_ids": [c for c in commits if c],
        "repo_url": (git.get("remoteUrls") or [None])[0],
        "web_url": build.get("url"),
        "execution_id": str(uuid.uuid5(uuid.UUID(GUID), f"{job['fullName']}#{build['number']}")),
        "ci": True,
        "cd": False,
    }
    if stages is not None:
        payload["job_run"] = {
            "stages": [
                {
                    "id": s.get("id"),
                    "displayName": s.get("name"),
                    "result": s.get("status"),
                    "durationInMillis": s.get("durationMillis"),
                    "startTime": s.get("startTimeMillis"),
                }
                for s in stages.get("stages") or []
            ]
        }
    return payload


def naive(args: argparse.Namespace, post: bool) -> dict[str, Any]:
    import jenkins
    import requests

    server = jenkins.Jenkins(args.jenkins, username=args.user, password=args.token, timeout=30)
    session = requests.Session() if post else None
    builds = payloads = jobs_seen = 0
    t_read = t_post = 0.0
    started = time.perf_counter()
    all_jobs = server.get_all_jobs()
    for job in all_jobs:
        if "jobs" in job:  # a folder
            continue
        jobs_seen += 1
        name = job["fullname"]
        info = server.get_job_info(name, fetch_all_builds=True)
        for ref in info.get("builds") or []:
            t0 = time.perf_counter()
            build = server.get_build_info(name, ref["number"])
            builds += 1
            if build.get("building") or build.get("result") is None:
                t_read += time.perf_counter() - t0
                continue
            stages = None
            if args.stages and "WorkflowRun" in build.get("_class", ""):
                stages = server.get_build_stages(name, ref["number"])
            payload = to_payload(info, build, args.jenkins, stages)
            t1 = time.perf_counter()
            t_read += t1 - t0
            payloads += 1
            if session is not None:
                resp = session.post(
                    args.sei,
                    json=payload,
                    headers={"Authorization": f"ApiKey {args.api_key}"},
                    timeout=30,
                )
                resp.raise_for_status()
                t_post += time.perf_counter() - t1
    return {
        "jobs": jobs_seen,
        "builds": builds,
        "payloads": payloads,
        "seconds": time.perf_counter() - started,
        "read_seconds": t_read,
        "post_seconds": t_post,
    }


def pages(args: argparse.Namespace) -> dict[str, Any]:
    import requests

    from connectors.jenkins.connector import BUILD_FIELDS, JOB_TREE, PAGE

    session = requests.Session()
    session.auth = (args.user, args.token)
    session.trust_env = False
    started = time.perf_counter()
    builds = requests_made = 0
    stack = [args.jenkins]
    while stack:
        url = stack.pop()
        listing = session.get(url + "api/json", params={"tree": f"jobs[{JOB_TREE}]"}, timeout=30)
        requests_made += 1
        for job in listing.json().get("jobs") or []:
            if "jobs" in job:
                stack.append(job["url"])
                continue
            offset = 0
            while True:
                field = "builds" if offset + PAGE <= PAGE else "allBuilds"
                tree = f"{field}[{BUILD_FIELDS}]{{{offset},{offset + PAGE}}}"
                page = session.get(job["url"] + "api/json", params={"tree": tree}, timeout=30)
                requests_made += 1
                got = page.json().get(field) or []
                builds += len(got)
                if len(got) < PAGE:
                    break
                offset += PAGE
    return {"builds": builds, "requests": requests_made, "seconds": time.perf_counter() - started}


def ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """Serial POSTs on one keep-alive connection: `requests` configured like sei-poller's
    Sender (no proxy/netrc lookups), or bare `http.client` (what the receiver can take)."""
    with open(args.payloads, encoding="utf-8") as f:
        bodies = [line.encode() for line in f if line.strip()][: args.count]
    headers = {
        "Authorization": f"ApiKey {args.api_key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }
    if args.client == "http.client":
        import http.client
        from urllib.parse import urlsplit

        url = urlsplit(args.sei)
        conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)

        def post(body: bytes) -> None:
            conn.request("POST", url.path, body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"HTTP {resp.status}")
    else:
        import requests

        session = requests.Session()
        session.trust_env = False
        session.headers.update(headers)

        def post(body: bytes) -> None:
            session.post(args.sei, data=body, timeout=30, allow_redirects=False).raise_for_status()

    started = time.perf_counter()
    sent = 0
    deadline = started + args.max_seconds
    while sent < args.count and time.perf_counter() < deadline:
        post(bodies[sent % len(bodies)])
        sent += 1
    return {"posts": sent, "seconds": time.perf_counter() - started}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.naive", description=__doc__)
    p.add_argument("mode", choices=["read", "e2e", "ceiling", "pages"])
    p.add_argument("--jenkins")
    p.add_argument("--user")
    p.add_argument("--token")
    p.add_argument("--stages", action="store_true")
    p.add_argument("--sei")
    p.add_argument("--api-key")
    p.add_argument("--payloads")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--max-seconds", type=float, default=10.0)
    p.add_argument("--client", choices=["requests", "http.client"], default="requests")
    args = p.parse_args(argv)
    if args.mode in ("ceiling", "pages"):
        out = ceiling(args) if args.mode == "ceiling" else pages(args)
    else:
        out = naive(args, post=args.mode == "e2e")
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
