"""structlog set up once, at the edge: JSON lines off a terminal, colours on one.

The redactor runs before any renderer, so no processor or exception text can carry a
secret past it: configured secrets, credentials inside URLs, and auth headers.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

_URL_CREDS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_AUTH = re.compile(
    r"(?i)\b(authorization|x-api-key)(['\"]?\s*[:=]\s*['\"]?)(apikey|basic|bearer)?\s*[^\s'\",}]+"
)
MASK = "***"


class Redactor:
    """A structlog processor that scrubs secrets from every string in the event."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets: tuple[str, ...] = ()
        self.update(secrets)

    def update(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is masked whole.
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _URL_CREDS.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)
        return _AUTH.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, dict):
            return {k: self._walk(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self._walk(v) for v in value)
        if isinstance(value, BaseException):
            return self.scrub(f"{type(value).__name__}: {value}")
        return value

    def __call__(
        self, _logger: Any, _method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        return {k: self._walk(v) for k, v in event.items()}


REDACTOR = Redactor()


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written (test capture swaps it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class _ToStructlog(logging.Handler):
    """Libraries (APScheduler, urllib3) log through stdlib logging: same pipeline, redacted."""

    def emit(self, record: logging.LogRecord) -> None:
        logger = structlog.get_logger(record.name)
        event = record.getMessage()
        if record.exc_info:
            logger.log(record.levelno, event, logger=record.name, exc_info=record.exc_info)
        else:
            logger.log(record.levelno, event, logger=record.name)


def configure(level: str = "info", fmt: str | None = None, stream: Any = None) -> None:
    """Configure structlog for the process; `fmt` None picks by whether stderr is a tty."""
    stream = stream or _CurrentStderr()
    if fmt is None:
        fmt = "console" if getattr(stream, "isatty", lambda: False)() else "json"
    renderer: Any
    if fmt == "console":
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            REDACTOR,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(logging.WARNING)
