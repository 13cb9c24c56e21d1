"""Connectors are found by `type` through the `sei_poller.connectors` entry-point group.

Built-ins register exactly like third-party packages, so `pip install sei-poller-foo` is all
it takes to add a CI system; only the connector a config names is imported.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import cast

from connectors.base import Connector, missing
from poller.errors import ConfigError

GROUP = "sei_poller.connectors"


# No arguments, so one entry: the entry points, read once per process.
@lru_cache(maxsize=1)
def installed() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def connector_class(type_name: str) -> type[Connector]:
    """Load and check a connector class; a broken plugin fails at start-up, by name."""
    eps = installed()
    if type_name not in eps:
        names = ", ".join(sorted(eps)) or "none"
        raise ConfigError(f'no connector "{type_name}" installed (installed: {names})')
    ep = eps[type_name]
    try:
        cls = ep.load()
    except Exception as exc:
        raise ConfigError(f"connector {type_name!r} ({ep.value}) failed to load: {exc}") from None
    lacks = missing(cls)
    if lacks:
        raise ConfigError(
            f"connector {type_name!r} ({ep.value}) lacks {', '.join(lacks)}: see connectors/base.py"
        )
    return cast(type[Connector], cls)


def origin(type_name: str) -> str:
    """`jenkins ← sei-poller 0.1.0`: which distribution provides a connector."""
    ep = installed()[type_name]
    dist = ep.dist
    return f"{dist.name} {dist.version}" if dist else ep.value
