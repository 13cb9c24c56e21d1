"""The `status` table: what a person reads to know whether SEI is up to date."""

from __future__ import annotations

from typing import Any

from poller.state import READINESS_KEYS


def _age(ts: float | None, now: float) -> str:
    if ts is None:
        return "-"
    secs = int(now - ts)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{secs // size}{unit}"
    return f"{secs}s"


def print_table(
    data: dict[str, Any], counts: dict[str, int], oldest: float | None, now: float
) -> None:
    rows = [("SERVER / JOB", "WATERMARK", "PENDING", "SENT", "DEAD", "OLDEST PENDING", "LAST")]
    for name, srv in sorted(data.items()):
        outcome = srv.get("last_outcome") or "-"
        err = f" ({srv['last_error']})" if srv.get("last_error") else ""
        rows.append(
            (
                name,
                "",
                "",
                "",
                "",
                "",
                f"poll {outcome} {_age(srv.get('last_poll_at'), now)} ago{err}",
            )
        )
        for job, j in sorted(srv["jobs"].items()):
            rows.append(
                (
                    f"  {job}",
                    str(j["watermark"] if j["watermark"] is not None else "-"),
                    str(j["pending"]),
                    str(j["sent"]),
                    str(j["dead"]),
                    _age(j["oldest_pending_at"], now),
                    j["last_error"] or "",
                )
            )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:6], widths, strict=True)) + "  " + r[6])
    print(
        f"\ntotal: {counts['pending']} pending, {counts['sent']} sent, {counts['dead']} dead;"
        f" oldest pending {_age(oldest, now)}"
    )


def print_problems(problems: list[dict[str, Any]], now: float) -> None:
    """Parked builds and folders that cannot be listed: what needs an operator's look."""
    if not problems:
        return
    print("\nneeds attention:")
    for p in problems:
        since = _age(p["first_at"], now)
        if p["kind"] == "build":
            retry = max(0.0, (p["retry_at"] or now) - now)
            what = (
                f"  parked build {p['server']} {p['job']}#{p['number']}: failing for {since},"
                f" {p['attempts']} attempt(s), next try in {_age(now - retry, now)}"
            )
        else:
            what = (
                f"  folder {p['server']} {p['job']} cannot be listed: failing for {since},"
                f" {p['attempts']} poll(s); its jobs are not polled"
            )
        print(f"{what}\n    {p['url']}\n    {p['error']}")


READINESS_DAYS = 7
_EMPTY = dict.fromkeys(READINESS_KEYS, 0)


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


def readiness(counts: dict[str, int] | None) -> dict[str, Any]:
    """One server's readiness figures, for `status` and `status --json` alike.

    Of the builds SEI accepted in the last `READINESS_DAYS` days: how many carry commit ids
    and a repo URL SEI parses (what lead time needs), and how many pipeline builds carry
    stages. Builds sent before these facts were recorded (schema 3) are not counted.
    """
    c = {**_EMPTY, **(counts or {})}
    return {
        "window_days": READINESS_DAYS,
        "sent": c["sent"],
        "counted": c["known"],
        "lead_time_ready": c["lead_time_ready"],
        "lead_time_ready_share": _share(c["lead_time_ready"], c["known"]),
        "without_commits": c["without_commits"],
        "repo_unparsed": c["repo_unparsed"],
        "pipeline": c["pipeline"],
        "pipeline_with_stages": c["pipeline_with_stages"],
        "stages_share": _share(c["pipeline_with_stages"], c["pipeline"]),
    }


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f}%"


def print_readiness(figures: dict[str, dict[str, Any]]) -> None:
    """Per server: is what SEI got good enough for lead time, and does it have stages?"""
    if not figures:
        return
    print(f"\nlead-time readiness, builds SEI accepted in the last {READINESS_DAYS} days:")
    width = max(len(name) for name in figures)
    for name, r in sorted(figures.items()):
        if not r["counted"]:
            line = "nothing to judge" if r["sent"] else "nothing sent"
        else:
            stages = (
                f"stages on {r['pipeline_with_stages']} of {r['pipeline']} pipeline builds"
                f" ({_pct(r['stages_share'])})"
                if r["pipeline"]
                else "no pipeline builds"
            )
            line = (
                f"{r['lead_time_ready']} of {r['counted']} ({_pct(r['lead_time_ready_share'])})"
                f" carry commit ids and a repo URL SEI parses"
                f" ({r['without_commits']} without commit ids,"
                f" {r['repo_unparsed']} without a repo URL SEI parses); {stages}"
            )
        uncounted = r["sent"] - r["counted"]
        if uncounted:
            line += f"; {uncounted} sent by an older release, not counted"
        print(f"  {name.ljust(width)}  {line}")
