"""Turning a validated config into working parts: connectors, metrics, signal handling.

Shared by every command, so each command reads as what it does, not how it is assembled.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import structlog

from connectors.base import Connector, Services
from poller import logs
from poller.config import Config, Server, load
from poller.deliver import Deliverer
from poller.registry import connector_class
from poller.sei import Outcome, Sender
from poller.state import Item, State

if TYPE_CHECKING:
    from poller.metrics import Metrics

log = structlog.get_logger()


def config(path: str | None) -> Config:
    """Load the config and teach the log redactor its secrets before anything can log."""
    cfg = load(path)
    logs.REDACTOR.update(cfg.secrets)
    for name, ep in [("sei", cfg.sei_network), *((s.name, s.spec.network) for s in cfg.servers)]:
        if ep is not None and not ep.verify:
            log.warning(
                "verify_tls = false: certificates are not checked, anyone on the path can"
                " read and change this traffic",
                server=name,
                url=ep.url,
            )
    return cfg


def connector(server: Server, metrics: Metrics | None = None) -> Connector:
    """The server's connector, handed what the core gives it: its hooks into the metrics
    (when they are on), the clock and a logger bound to the server."""
    cls = connector_class(server.config.type)
    services = Services(log=structlog.get_logger().bind(server=server.name))
    if metrics is not None:
        changed = metrics.changed_after_send.labels(server.name)
        services = replace(
            services, on_request=metrics.ci_hook(server.name), on_changed_after_send=changed.inc
        )
    instance: Connector = cls(server.spec, services)
    return instance


def metrics(cfg: Config, state: State) -> Metrics | None:
    """Serve Prometheus metrics when `[metrics] listen` is set."""
    if not cfg.metrics.listen:
        return None
    from poller.health import Readiness
    from poller.metrics import Metrics  # prometheus-client only when asked for

    registry = Metrics()
    registry.watch_state(state)
    intervals = {s.name: s.config.poll_interval for s in cfg.servers}
    registry.serve(cfg.metrics.listen, Readiness(state, intervals))
    log.info("metrics served", listen=cfg.metrics.listen, paths="/metrics /healthz /readyz")
    return registry


def deliverer(
    cfg: Config,
    state: State,
    sender: Sender,
    stop: threading.Event,
    metrics: Metrics | None,
    on_outcome: Callable[[Item, Outcome], None] | None = None,
) -> Deliverer:
    """The outbox's courier, its window on the metrics gauge when metrics are on."""
    return Deliverer(
        state,
        sender,
        cfg.sei.concurrency,
        stop=stop,
        on_outcome=on_outcome or (metrics.outcome if metrics else None),
        adaptive=cfg.sei.adaptive,
        on_window=metrics.sei_window.set if metrics else None,
    )


def servers(cfg: Config, name: str | None) -> tuple[Server, ...]:
    return (cfg.server(name),) if name else cfg.servers


@contextmanager
def signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT ask for a clean stop; a second SIGINT interrupts at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        log.warning("signal received; stopping cleanly", signal=signal.Signals(signum).name)
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
