"""The names SEI's Jenkins plugin gives a job: its directory under `$JENKINS_HOME/jobs`.

SEI's plugin (`propelo-job-reporter`) names a job by the relative path of its directory on
the controller, not by Jenkins' `fullName`. Teams moving from the plugin to sei-poller set
`naming = "plugin"` so that SEI, which keys jobs on that name, sees one continuous history.
This module turns a `fullName` into that path; it is pure (the connector tells it what kind
of item each parent is), so it is tested with names in and names out.

How Jenkins lays jobs out on disk (core, cloudbees-folder, branch-api 2.x, maven-plugin):

- A top-level item lives in `jobs/<name>`; the plugin's path starts after that `jobs/`.
- A folder keeps its children in `<folder>/jobs/<name>`, under their item names as they are.
- A multibranch project keeps its branch jobs in `<project>/branches/<dir>`. A branch job's
  item name is the branch name with `# % / ? [ ] \\` percent-encoded (branch-api's
  `NameEncoder`: `feature/x` is the job `feature%2Fx`), and its directory is the *decoded*
  branch name put through branch-api's `NameMangler` (`feature-x.nj9av9`).
- An organisation folder keeps its multibranch projects in `<org>/jobs/<dir>`, the directory
  again the mangled, decoded project name (so `my_repo` lives in `my-repo.<hash>`).
- A Maven job keeps its modules in `<job>/modules/<groupId>$<artifactId>`, which is also
  the module's item name.

From that path the plugin derives the rest (its `JobRunParserService` and
`JobFullNameConverter`): the qualified name is the path without its `jobs`, `branches` and
`modules` segments (any segment spelled so, in any case, when the path has two segments or
more); the job name (`pipeline`) is the directory before `branches/<x>` or `modules/<x>`, else
the last one; the branch name is the `<x>` after `branches/`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

FOLDER, MULTIBRANCH, ORGANIZATION, MAVEN = "folder", "multibranch", "organization", "maven"

# NameMangler keeps a name as it is only when it is at most this long, made of ASCII
# letters, digits and `-` (not first), and is not a name Windows reserves.
SAFE_LENGTH = 32
SHORT_HASH, LONG_HASH = 6, 12
_RESERVED = frozenset(
    [".", "..", "con", "prn", "aux", "nul"]
    + [f"com{i}" for i in range(1, 10)]
    + [f"lpt{i}" for i in range(1, 10)]
)
_SEPARATORS = frozenset("/\\ ._")  # kept as a `-`, so `feature/x` still reads as such
_ALPHABET = "0123456789abcdefghijklmnopqrstuv"  # base 32, digits then letters
# NameEncoder's escapes, and only those: anything else with a `%` is a literal `%`.
_DECODE = {"%23": "#", "%25": "%", "%2F": "/", "%3F": "?", "%5B": "[", "%5C": "\\", "%5D": "]"}
_MARKERS = frozenset(["jobs", "branches", "modules"])


def kind_of(java_class: str) -> str:
    """What kind of parent an item is, from its `_class`, for laying out its children."""
    if "MultiBranchProject" in java_class:
        return MULTIBRANCH
    if "OrganizationFolder" in java_class:
        return ORGANIZATION
    if "MavenModuleSet" in java_class:
        return MAVEN
    return FOLDER  # a folder, or any container type that keeps the default layout


def _safe(unit: int) -> bool:
    return (
        0x30 <= unit <= 0x39 or 0x41 <= unit <= 0x5A or 0x61 <= unit <= 0x7A or unit == 0x2D
    )  # 0-9 A-Z a-z -


def _utf16(name: str) -> list[int]:
    """Jenkins is Java: a name is a sequence of UTF-16 code units, and is measured in them."""
    raw = name.encode("utf-16-be", "surrogatepass")
    return [(raw[i] << 8) | raw[i + 1] for i in range(0, len(raw), 2)]


def _keeps(name: str, units: list[int]) -> bool:
    if len(units) > SAFE_LENGTH:
        return False
    if units and units[0] == 0x2D:  # no leading dash
        return False
    if not all(_safe(u) for u in units):
        return False
    return name.lower() not in _RESERVED


def _digest(name: str) -> str:
    """The name's SHA-1 (of its UTF-8 bytes) in base 32, least significant 5 bits first.

    The bits are taken from a little-endian stream of the digest's bytes; digits are only
    emitted while another byte remains to be added, so the last few bits never show.
    """
    digits = []
    data = bits = 0
    for byte in hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).digest():
        while bits >= 5:
            digits.append(_ALPHABET[data & 0x1F])
            data >>= 5
            bits -= 5
        data |= byte << bits
        bits += 8
    return "".join(digits)


def mangle(name: str) -> str:
    """branch-api's `NameMangler`: a name made safe as a directory, unique, at most 32 long.

    A safe name stays as it is. Otherwise every separator (`/ \\ . _` and space) becomes `-`,
    every other character outside ASCII letters, digits and `-` becomes `_` and its hex code
    (two digits for a code unit up to 0xff, else `_hh_ll`, high byte first), with a `0` in
    front when that is how the result would start; then a hash of the original name is added:
    `.` and its last 6 digits at the end when that fits in 32 characters, else a
    `.<hash>.` of 6 to 12 digits in the middle, cutting out as much as keeps it at 32.
    """
    units = _utf16(name)
    if _keeps(name, units):
        return name
    out: list[str] = []
    for unit in units:
        if _safe(unit):
            out.append(chr(unit))
            continue
        lead = "" if out else "0"
        if chr(unit) in _SEPARATORS:
            out.append(lead + "-")
        elif unit <= 0xFF:
            out.append(f"{lead}_{unit:02x}")
        else:
            out.append(f"{lead}_{unit >> 8:02x}_{unit & 0xFF:02x}")
    text = "".join(out)
    digest = _digest(name)
    if len(text) <= SAFE_LENGTH - SHORT_HASH - 1:
        return f"{text}.{digest[-SHORT_HASH:]}"
    overage = len(text) - SAFE_LENGTH
    size = min(LONG_HASH, max(SHORT_HASH, overage))
    middle = f".{digest[-size:]}."
    start = (SAFE_LENGTH - len(middle)) // 2
    return text[:start] + middle + text[start + len(middle) + overage :]


def decode(name: str) -> str:
    """branch-api's `NameEncoder.decode`: an item name back to the branch (or project) name."""
    if "%" not in name:
        return name
    special = {"%00": "", "%2E": ".", "%2E.": ".."}
    if name in special:
        return special[name]
    out, i = [], 0
    while i < len(name):
        escape = name[i : i + 3]
        if escape in _DECODE:
            out.append(_DECODE[escape])
            i += 3
        else:
            out.append(name[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class PluginNames:
    """What the plugin sent for a job: `job_full_name`, `qualified_name`, `job_name`, branch."""

    full_name: str
    qualified_name: str
    pipeline: str
    branch: str | None


def disk_path(full_name: str, kind: Callable[[str], str]) -> list[tuple[str, str]]:
    """`fullName` → the directory path as (marker, directory) pairs; the first marker is "".

    `kind(prefix)` says what the item at a parent `fullName` is (`kind_of` of its `_class`).
    """
    segments = full_name.split("/")
    path = [("", segments[0])]
    for i in range(1, len(segments)):
        parent = kind("/".join(segments[:i]))
        name = segments[i]
        if parent == MULTIBRANCH:
            path.append(("branches", mangle(decode(name))))
        elif parent == ORGANIZATION:
            path.append(("jobs", mangle(decode(name))))
        elif parent == MAVEN:
            path.append(("modules", name))
        else:
            path.append(("jobs", name))
    return path


def plugin_names(full_name: str, kind: Callable[[str], str]) -> PluginNames:
    """The names the plugin would have sent for a build of the job `full_name`."""
    path = disk_path(full_name, kind)
    text = "/".join(f"{marker}/{d}" if marker else d for marker, d in path)
    parts = text.split("/")
    # The plugin strips the markers by spelling, not by position: a folder named `Jobs` goes too.
    qualified = text if len(parts) < 2 else "/".join(p for p in parts if p.lower() not in _MARKERS)
    marker, last = path[-1]
    # A branch job or a Maven module is reported under its project's directory.
    pipeline = path[-2][1] if marker in ("branches", "modules") else last
    return PluginNames(text, qualified, pipeline, last if marker == "branches" else None)
