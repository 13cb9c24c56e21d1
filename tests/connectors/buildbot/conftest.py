"""What the Buildbot tests share: a real master for a module, or a skip that says why."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.buildbot import standin as harness


@contextlib.contextmanager
def real_master(workdir: Path, auth: tuple[str, str] | None = None) -> Iterator[harness.Buildbot]:
    """A started master and two workers, stopped afterwards. Where Buildbot cannot be
    installed the test skips, unless `SEI_POLLER_REQUIRE_BUILDBOT=1` (CI) makes it fail."""
    try:
        bin_dir = harness.ensure_installed()
    except harness.Unavailable as exc:
        if os.environ.get("SEI_POLLER_REQUIRE_BUILDBOT") == "1":
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    bb = harness.Buildbot(bin_dir, workdir, auth=auth)
    try:
        yield bb.start()
    finally:
        bb.close()
