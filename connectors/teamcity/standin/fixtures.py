"""The recorded TeamCity answers in ``connectors/teamcity/standin/data/`` (see ``data/README.md``).

The Ignite files are XML: TeamCity serves the same entities as XML or JSON, attributes in the
XML being keys in the JSON and child lists (``<revisions><revision/>``) becoming
``{"revisions": {"revision": [...]}}``. :func:`xml_to_json` does that conversion mechanically,
so the stand-in and its tests compare against the recorded data, not against memory.
"""

from __future__ import annotations

import functools
import json
import re
import xml.etree.ElementTree as ET
from importlib import resources
from typing import Any

_DATA = resources.files(__package__) / "data"

# Elements that are lists in TeamCity's JSON (their children repeat).
_LISTS = {
    "build",
    "buildType",
    "change",
    "file",
    "problemOccurrence",
    "project",
    "property",
    "revision",
    "step",
    "trigger",
    "feature",
    "snapshot-dependency",
    "artifact-dependency",
    "vcs-root-entry",
}
_INT = re.compile(r"^-?[0-9]+$")
_NUMERIC = {"id", "count", "passed", "failed", "muted", "ignored", "typeId", "queuePosition"}


def read_json(rel: str) -> Any:
    return json.loads((_DATA / rel).read_text(encoding="utf-8"))


def read_text(rel: str) -> str:
    return (_DATA / rel).read_text(encoding="utf-8")


def _value(key: str, text: str) -> Any:
    if text in ("true", "false"):
        return text == "true"
    if key in _NUMERIC and _INT.match(text):
        return int(text)
    return text


def _convert(el: ET.Element) -> dict[str, Any]:
    out: dict[str, Any] = {k: _value(k, v) for k, v in el.attrib.items()}
    for child in el:
        if len(child) == 0 and not child.attrib:
            out[child.tag] = (child.text or "").strip()
            continue
        value = _convert(child)
        if child.tag in _LISTS:
            out.setdefault(child.tag, []).append(value)
        else:
            out[child.tag] = value
    return out


def xml_to_json(rel: str) -> dict[str, Any]:
    """A recorded XML answer as TeamCity would have sent it with `Accept: application/json`.

    (A build's `id` stays a number and its `number` a string, as in the JSON captures.)
    """
    root = ET.fromstring(read_text(rel))  # noqa: S314 - shipped fixture
    return _convert(root)


@functools.cache
def server_template() -> dict[str, Any]:
    """`/app/rest/server` of TeamCity 9.0.4 (pyteamcity), hrefs without the guest prefix."""
    raw = read_json("pyteamcity/server.extracted.json")
    return {
        k: ({"href": v["href"].replace("/guestAuth", "")} if isinstance(v, dict) else v)
        for k, v in raw.items()
    }
