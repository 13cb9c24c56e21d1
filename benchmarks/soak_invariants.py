"""Many seeds of the invariant schedule (`tests/invariants.py`) per connector.

CI plays 12 seeds per stand-in; this plays `--seeds` (default 50) each, from seeds the suite
does not use, and prints one line per connector: worlds played, worlds that broke a promise
(with the first message), seconds. `--buildbot` adds the real Buildbot (installed into
`.buildbot-venv/` on first use).

    python -m benchmarks.soak_invariants --seeds 100
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from poller import logs
from tests.connectors.buildkite.test_invariants import Buildkite
from tests.connectors.jenkins.test_invariants import Jenkins
from tests.connectors.teamcity.test_invariants import TeamCity
from tests.invariants import Ci, play


@contextlib.contextmanager
def _buildbot() -> Iterator[Callable[[int], Ci]]:
    from connectors.buildbot import standin as harness
    from tests.connectors.buildbot.test_invariants import Buildbot

    with tempfile.TemporaryDirectory() as tmp:
        bb = harness.Buildbot(harness.ensure_installed(), Path(tmp)).start()
        try:
            yield lambda seed: Buildbot(bb, seed)
        finally:
            bb.close()


def soak(name: str, make: Callable[[int], Ci], seeds: range) -> dict[str, Any]:
    broken: list[str] = []
    started = time.monotonic()
    for seed in seeds:
        mp = pytest.MonkeyPatch()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                play(make(seed), seed, Path(tmp), mp)
            except AssertionError as exc:
                broken.append(str(exc).splitlines()[0])
            finally:
                mp.undo()
    return {
        "connector": name,
        "worlds": len(seeds),
        "broken": len(broken),
        "seconds": round(time.monotonic() - started, 1),
        "first": broken[0] if broken else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=50)
    ap.add_argument("--first", type=int, default=90_000, help="first seed (CI uses 1000-5999)")
    ap.add_argument("--buildbot", action="store_true", help="also the real Buildbot")
    args = ap.parse_args()
    logs.configure("error", "json")
    seeds = range(args.first, args.first + args.seeds)
    rows = [
        soak("jenkins", lambda s: Jenkins(), seeds),
        soak("teamcity", lambda s: TeamCity(), seeds),
        soak("buildkite", lambda s: Buildkite(), seeds),
    ]
    if args.buildbot:
        with _buildbot() as make:
            rows.append(soak("buildbot", make, seeds))
    print("| connector | worlds | broke a promise | seconds |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['connector']} | {r['worlds']} | {r['broken']} | {r['seconds']} |")
    for r in rows:
        if r["first"]:
            print(f"{r['connector']}: {r['first']}")


if __name__ == "__main__":
    main()
