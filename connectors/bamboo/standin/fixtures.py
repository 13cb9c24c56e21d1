"""The recorded Bamboo answers in ``connectors/bamboo/standin/data/`` (see ``data/README.md``).

The stand-in renders every entity in the key order of a recorded one (:func:`keys`), so its
answers read like Bamboo's, and its tests compare the two. The DevLake captures are CSV "raw
tables": one element of a list answer per row, as a JSON string in the ``data`` column.
"""

from __future__ import annotations

import csv
import functools
import io
import json
from importlib import resources
from typing import Any

_DATA = resources.files(__package__) / "data"


def read_text(rel: str) -> str:
    return (_DATA / rel).read_text(encoding="utf-8")


def read_json(rel: str) -> Any:
    return json.loads(read_text(rel))


@functools.cache
def rows(rel: str) -> tuple[dict[str, Any], ...]:
    """The ``data`` of every row of a DevLake raw table, parsed."""
    csv.field_size_limit(1 << 24)
    reader = csv.DictReader(io.StringIO(read_text(rel)))
    return tuple(json.loads(r["data"]) for r in reader)


def row_urls(rel: str) -> tuple[str, ...]:
    """The request each row of a DevLake raw table came from."""
    reader = csv.DictReader(io.StringIO(read_text(rel)))
    return tuple(r["url"] for r in reader)


PLAN = "devlake/_raw_bamboo_api_plan.csv"
PLAN_RESULTS = "devlake/_raw_bamboo_api_plan_builds.csv"  # with vcsRevisions expanded
FAILED_RESULTS = "devlake/_raw_bamboo_api_plan_build.csv"  # restartable failures
JOB_RESULTS = "devlake/_raw_bamboo_api_job_builds.csv"
JOBS = "devlake/_raw_bamboo_api_jobs.csv"
DEPLOY_RESULTS = "devlake/_raw_bamboo_api_deploy_builds.csv"
STAGED_RESULT = "flyte-bamboo/resultResponse.extracted.json"
CHANGES = "bamboo-client/result_with_changes.json"


@functools.cache
def keys(kind: str) -> tuple[str, ...]:
    """The keys of a recorded entity of `kind`, in Bamboo's order."""
    if kind == "plan":
        return tuple(rows(PLAN)[0])
    if kind == "result":
        return tuple(rows(PLAN_RESULTS)[0])
    if kind == "job_result":
        return tuple(rows(JOB_RESULTS)[0])
    if kind == "deploy_result":
        return tuple(rows(DEPLOY_RESULTS)[0])
    if kind == "version":
        return tuple(rows(DEPLOY_RESULTS)[1]["deploymentVersion"])  # with its creator
    if kind == "version_item":
        return tuple(rows(DEPLOY_RESULTS)[0]["deploymentVersion"]["items"][0])
    if kind == "stage":
        return tuple(read_json(STAGED_RESULT)["stages"]["stage"][1])  # with a description
    if kind == "change":
        return tuple(read_json(CHANGES)["changes"]["change"][0])
    if kind == "search_entity":
        return tuple(rows(JOBS)[0]["searchEntity"])
    raise KeyError(kind)


def ordered(kind: str, values: dict[str, Any]) -> dict[str, Any]:
    """`values` in the recorded key order of `kind`; keys it does not record go last."""
    order = keys(kind)
    out = {k: values[k] for k in order if k in values}
    out.update((k, v) for k, v in values.items() if k not in out)
    return out
