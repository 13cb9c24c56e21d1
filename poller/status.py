"""The `status` table: what a person reads to know whether SEI is up to date."""

from __future__ import annotations

from typing import Any


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
