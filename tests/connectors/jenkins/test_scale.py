"""Jenkins at enterprise size (issue 25): the tree's jobs and their newest builds in a few
requests, whatever its size; a first poll costs nothing per job whose builds are all older
than `backfill_since`; and nothing is missed anywhere in the tree.

The controller here has the shape the issue names, at a tenth of its size: 20 top folders,
10 folders each, 10 jobs each: 2,000 jobs in 220 folders (`benchmarks/jenkins_scale.py` measures
20,000 and 100,000)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.jenkins.standin import FakeJenkins
from poller.standins.sei import FakeSei
from tests.connectors.jenkins.env import Env

NOW = int(time.time() * 1000)
DAY = 86_400_000


@pytest.fixture()
def big(tmp_path: Path) -> Iterator[Env]:
    with FakeJenkins() as jenkins, FakeSei() as sei:
        for t in range(20):
            for f in range(10):
                folder = f"bu{t:02d}/team{f}"
                for j in range(10):
                    # One job in ten built inside the window; the rest 40 days ago.
                    age = DAY if j == 0 else 40 * DAY
                    jenkins.add_build(f"{folder}/job{j}", 1, timestamp=NOW - age, duration=1000)
        env = Env(jenkins, sei, tmp_path, tmp_path / "config.toml")
        env.write(backfill_since="30d")
        yield env


def _api(env: Env) -> list[str]:
    return [r.path for r in env.jenkins.requests]


def test_first_poll_reads_only_the_jobs_with_builds_in_range(big: Env) -> None:
    assert big.once() == 0
    assert len(big.runs()) == 200  # job0 of each folder
    paths = _api(big)
    job_pages = [p for p in paths if p.count("/job/") == 3]
    assert len(job_pages) == 200  # one page for each job with a build in range, none else
    assert len(paths) - len(job_pages) <= 5  # the tree


def test_an_idle_poll_of_two_thousand_jobs_is_one_or_two_requests(big: Env) -> None:
    assert big.once() == 0
    big.jenkins.reset_requests()
    assert big.once() == 0
    assert 1 <= len(_api(big)) <= 2
    assert all(p == "/api/json" for p in _api(big))


def test_nothing_anywhere_in_the_tree_is_missed(big: Env) -> None:
    j = big.jenkins
    assert big.once() == 0
    j.add_build("bu07/team3/job5", 2, timestamp=NOW, duration=1000)  # deep, long idle
    j.add_build("bu19/team9/job9", 2, timestamp=NOW, duration=1000)
    j.add_build("bu20/new/job", 1, timestamp=NOW, duration=1000)  # a new top folder
    j.delete_job("bu03")  # a whole top folder deleted
    j.delete_job("bu02/team1/job0")  # a job moved (a new name): its history is read anew
    j.add_build("bu02/team4/job0-moved", 1, timestamp=NOW - 2 * DAY, duration=1000)
    j.add_folder("bu05/svc", "multibranch")
    j.add_build("bu05/svc/main", 1, timestamp=NOW, duration=1000)
    j.fail(r"/job/bu11/job/team2/api/json$", 403, query=r"^tree=jobs")  # cannot see inside
    j.add_build("bu11/team2/job0", 2, timestamp=NOW, duration=1000)
    j.reset_requests()
    assert big.once() == 1  # the folder it cannot read fails the poll, says where
    sent = big.runs()
    for key in [
        ("bu07/team3/job5", 2),
        ("bu19/team9/job9", 2),
        ("bu20/new/job", 1),
        ("bu05/svc/main", 1),
        ("bu02/team4/job0-moved", 1),
    ]:
        assert key in sent, key
    assert ("bu11/team2/job0", 2) not in sent
    assert len(_api(big)) <= 10
    j.clear_faults()
    j.add_build("bu05/svc/feature%2Fx", 1, timestamp=NOW, duration=1000)  # a new branch
    assert big.once() == 0
    assert ("bu11/team2/job0", 2) in big.runs()
    assert ("bu05/svc/feature%2Fx", 1) in big.runs()
