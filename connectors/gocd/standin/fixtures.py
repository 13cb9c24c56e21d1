"""The recorded GoCD answers in ``connectors/gocd/standin/data/`` (see ``data/README.md``).

The stand-in's seeds take their material URLs, revisions, users and messages from these
captures, and the tests compare the stand-in's answers with them key for key, so both rest
on what GoCD was seen to send rather than on memory.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

_DATA = resources.files(__package__) / "data"


@functools.cache
def read_json(rel: str) -> Any:
    return json.loads((_DATA / rel).read_text(encoding="utf-8"))


def read_text(rel: str) -> str:
    return (_DATA / rel).read_text(encoding="utf-8")


def versions() -> dict[str, str]:
    """`data/api-docs/versions.yml`: the Accept media type of every API (flat YAML)."""
    out = {}
    for line in read_text("api-docs/versions.yml").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip().strip("'")
    return out


def captured_instances(rel: str) -> list[dict[str, Any]]:
    """The pipeline instances of a captured history answer, newest first."""
    return list(read_json(rel)["pipelines"])


def captured_cause(
    rel: str, counter: int
) -> tuple[str, list[tuple[dict[str, Any], bool, list[dict[str, Any]]]]]:
    """A captured instance's trigger message and its material revisions as
    (material, changed, modifications)."""
    for p in captured_instances(rel):
        if p["counter"] == counter:
            cause = p["build_cause"]
            return cause["trigger_message"], [
                (r["material"], bool(r["changed"]), list(r["modifications"]))
                for r in cause["material_revisions"]
            ]
    raise LookupError(f"{rel} has no instance {counter}")
