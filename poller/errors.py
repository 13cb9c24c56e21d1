"""Exceptions, in a leaf module that imports nothing of ours so every layer can raise them."""

from __future__ import annotations


class SeiPollerError(Exception):
    """Root of everything sei-poller raises on purpose; the CLI prints it as one line."""


class ConfigError(SeiPollerError, ValueError):
    """A configuration or usage mistake: the CLI exits 2.

    `where` names the file and key so the operator can go straight to the line.
    """

    def __init__(self, message: str, *, where: str = "") -> None:
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ConnectorError(SeiPollerError):
    """A CI server could not be read. `url` is always already redacted."""

    def __init__(self, message: str, *, url: str = "", status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)


class NotFound(ConnectorError):
    """The CI server answered 404: the item vanished (retention, deletion) or is hidden."""
