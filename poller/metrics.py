"""Prometheus metrics: counters fed as things happen, outbox gauges read at scrape time.

Outbox depth and oldest pending age come from a custom collector that asks the state
database on every scrape, so they can never drift from the truth.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from poller.errors import ConfigError

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class _Outbox(Collector):
    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[GaugeMetricFamily]:
        counts = self.state.counts()
        depth = GaugeMetricFamily(
            "sei_poller_outbox", "Payloads in the outbox by status", labels=["status"]
        )
        for status, n in sorted(counts.items()):
            depth.add_metric([status], n)
        yield depth
        oldest = self.state.oldest_pending_at()
        yield GaugeMetricFamily(
            "sei_poller_outbox_oldest_pending_age_seconds",
            "Age of the oldest payload not yet accepted by SEI",
            value=0.0 if oldest is None else max(0.0, time.time() - oldest),
        )


class Metrics:
    """All of sei-poller's metrics, on a registry of their own (no global state in tests)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.discovered = Counter(
            "sei_poller_builds_discovered", "Finished builds enqueued", ["server"], registry=r
        )
        self.sent = Counter(
            "sei_poller_builds_sent", "Payloads SEI accepted", ["server"], registry=r
        )
        self.failed = Counter(
            "sei_poller_builds_failed",
            "SEI deliveries that will be retried",
            ["server"],
            registry=r,
        )
        self.dead = Counter(
            "sei_poller_builds_dead_lettered",
            "Payloads SEI rejected for good",
            ["server"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            "sei_poller_poll_duration_seconds",
            "Duration of one poll",
            ["server"],
            registry=r,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600),
        )
        self.last_ok = Gauge(
            "sei_poller_last_successful_poll_timestamp_seconds",
            "When the last poll without errors finished",
            ["server"],
            registry=r,
        )
        self.ci_requests = Counter(
            "sei_poller_ci_requests",
            "Requests to CI servers by status",
            ["server", "status"],
            registry=r,
        )
        self.ci_latency = Histogram(
            "sei_poller_ci_request_duration_seconds",
            "Latency of requests to CI servers",
            ["server"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.sei_requests = Counter(
            "sei_poller_sei_requests", "Requests to SEI by status", ["status"], registry=r
        )
        self.sei_latency = Histogram(
            "sei_poller_sei_request_duration_seconds",
            "Latency of requests to SEI",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )

        self.changed_after_send = Counter(
            "sei_poller_changed_after_send",
            "Builds whose result changed after they were sent (a retry or an unblock);"
            " SEI keeps the first result",
            ["server"],
            registry=r,
        )
        self.sei_window = Gauge(
            "sei_poller_sei_concurrency_limit",
            "POSTs to SEI allowed in flight now (adaptive: found from SEI's answers)",
            registry=r,
        )

    def watch_state(self, state: Any) -> None:
        self.registry.register(_Outbox(state))

    def serve(self, listen: str) -> Any:
        host, _, port = listen.rpartition(":")
        try:
            server, _thread = start_http_server(
                int(port), addr=host.strip("[]") or "127.0.0.1", registry=self.registry
            )
        except (ValueError, OSError) as exc:
            raise ConfigError(
                f"cannot listen on {listen!r}: {exc}", where="metrics.listen"
            ) from None
        return server

    def ci_hook(self, server: str) -> Any:
        def observe(status: int | None, seconds: float) -> None:
            self.ci_requests.labels(server, str(status or "error")).inc()
            self.ci_latency.labels(server).observe(seconds)

        return observe

    def poll_done(self, server: str, ok: bool, seconds: float, enqueued: int) -> None:
        self.poll_seconds.labels(server).observe(seconds)
        self.discovered.labels(server).inc(enqueued)
        if ok:
            self.last_ok.labels(server).set(time.time())

    def outcome(self, item: Any, outcome: Any) -> None:
        self.sei_requests.labels(str(outcome.status or "error")).inc()
        self.sei_latency.observe(outcome.seconds)
        counter = {"sent": self.sent, "dead": self.dead}.get(outcome.kind, self.failed)
        counter.labels(item.server).inc()
