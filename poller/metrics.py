"""Prometheus metrics and health endpoints, on the daemon's own listener.

Counters are fed as things happen; what the state database knows (outbox depth, pending
age, parked and given-up builds, the database's size) is read at scrape time by a collector,
so it can never drift from the truth. The standard process, platform and GC collectors sit
on the same registry. The listener also answers `/healthz` (the process is up) and
`/readyz` (every server reached lately, SEI taking payloads): see docs/operations.md.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from poller import __version__
from poller.errors import ConfigError
from poller.health import HealthServer

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
        now = time.time()
        oldest = self.state.oldest_pending_at()
        yield GaugeMetricFamily(
            "sei_poller_outbox_oldest_pending_age_seconds",
            "Age of the oldest payload not yet accepted by SEI",
            value=0.0 if oldest is None else max(0.0, now - oldest),
        )
        yield from self._per_server(now)
        yield from self._database()

    def _per_server(self, now: float) -> Iterator[GaugeMetricFamily]:
        facts = self.state.server_facts()
        families = {
            "parked": GaugeMetricFamily(
                "sei_poller_parked_builds",
                "Finished builds whose details keep failing, waiting for another try",
                labels=["server"],
            ),
            "dead": GaugeMetricFamily(
                "sei_poller_dead_letters",
                "Payloads SEI rejected for good (given up), until retried",
                labels=["server"],
            ),
            "owed": GaugeMetricFamily(
                "sei_poller_owed_builds",
                "Builds a failed scan owes: read again by number at the next poll",
                labels=["server"],
            ),
            "pending_age": GaugeMetricFamily(
                "sei_poller_server_oldest_pending_age_seconds",
                "Age of the server's oldest payload not yet accepted by SEI",
                labels=["server"],
            ),
            "delivered": GaugeMetricFamily(
                "sei_poller_last_delivery_timestamp_seconds",
                "When SEI last accepted a payload of this server",
                labels=["server"],
            ),
        }
        for server, f in sorted(facts.items()):
            families["parked"].add_metric([server], f["parked"])
            families["dead"].add_metric([server], f["dead"])
            families["owed"].add_metric([server], f["owed"])
            oldest = f["oldest_pending_at"]
            families["pending_age"].add_metric([server], 0.0 if oldest is None else now - oldest)
            if f["last_sent_at"] is not None:
                families["delivered"].add_metric([server], f["last_sent_at"])
        yield from families.values()

    def _database(self) -> Iterator[GaugeMetricFamily]:
        size, free, total = self.state.disk()
        yield GaugeMetricFamily(
            "sei_poller_state_database_bytes",
            "Size of the state database, its WAL included",
            value=size,
        )
        if free is not None and total is not None:
            yield GaugeMetricFamily(
                "sei_poller_state_filesystem_avail_bytes",
                "Space left for the state database on its filesystem",
                value=free,
            )
            yield GaugeMetricFamily(
                "sei_poller_state_filesystem_size_bytes",
                "Size of the filesystem that holds the state database",
                value=total,
            )


class Metrics:
    """All of sei-poller's metrics, on a registry of their own (no global state in tests)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self.build_info = Gauge(
            "sei_poller_build_info",
            "The running sei-poller's version: always 1",
            ["version"],
            registry=r,
        )
        self.build_info.labels(__version__).set(1)
        self.health: HealthServer | None = None
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
        self.polls = Counter(
            "sei_poller_polls",
            "Polls by outcome: ok; partial (the server answered, some jobs or builds failed);"
            " failed (the server could not be read)",
            ["server", "outcome"],
            registry=r,
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

    def serve(self, listen: str, readiness: Any = None) -> HealthServer:
        """`/metrics`, `/healthz` and `/readyz` on `listen` (`host:port`)."""
        host, _, port = listen.rpartition(":")
        try:
            self.health = HealthServer(
                host.strip("[]") or "127.0.0.1", int(port), self.registry, readiness
            ).start()
        except (ValueError, OSError) as exc:
            raise ConfigError(
                f"cannot listen on {listen!r}: {exc}", where="metrics.listen"
            ) from None
        return self.health

    def ci_hook(self, server: str) -> Any:
        def observe(status: int | None, seconds: float) -> None:
            self.ci_requests.labels(server, str(status or "error")).inc()
            self.ci_latency.labels(server).observe(seconds)

        return observe

    def poll_done(
        self, server: str, ok: bool, seconds: float, enqueued: int, reached: bool = True
    ) -> None:
        self.poll_seconds.labels(server).observe(seconds)
        self.discovered.labels(server).inc(enqueued)
        self.polls.labels(server, "ok" if ok else "partial" if reached else "failed").inc()
        if ok:
            self.last_ok.labels(server).set(time.time())
        if self.health is not None and self.health.readiness is not None:
            self.health.readiness.polled(server, reached)

    def outcome(self, item: Any, outcome: Any) -> None:
        self.sei_requests.labels(str(outcome.status or "error")).inc()
        self.sei_latency.observe(outcome.seconds)
        counter = {"sent": self.sent, "dead": self.dead}.get(outcome.kind, self.failed)
        counter.labels(item.server).inc()
        if outcome.kind == "sent" and self.health is not None and self.health.readiness:
            self.health.readiness.accepted()
