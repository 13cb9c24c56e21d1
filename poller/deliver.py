"""Drain the outbox into SEI: parallel POSTs, each answer recorded as it arrives.

Workers only do HTTP; the calling thread records every outcome in SQLite, so a crash
between a 202 and its record means one duplicate at most, which SEI ignores.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import structlog

from poller import aimd
from poller.sei import HALTS, Outcome, Sender, next_delay
from poller.state import Item, State

log = structlog.get_logger()
AUTH_PAUSE = 60.0  # after a halt (key refused, TLS, not SEI), the daemon waits this long
# On SIGTERM, POSTs in flight get this long to finish (systemd is told to wait 20 s, the spec
# 10 s); one that SEI holds longer is abandoned and, still pending, sent again next start.
STOP_GRACE = 6.0


@dataclass
class Report:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    # Why delivery stopped for the cycle (`sei.HALTS`: the key, a certificate, not SEI
    # answering), in one line; None: it did not.
    halted: str | None = None

    def add(self, other: Report) -> None:
        self.sent += other.sent
        self.retried += other.retried
        self.dead += other.dead
        self.halted = self.halted or other.halted


class Deliverer:
    def __init__(
        self,
        state: State,
        sender: Sender,
        concurrency: int,
        *,
        stop: threading.Event | None = None,
        on_outcome: Callable[[Item, Outcome], None] | None = None,
        adaptive: bool = True,
        on_window: Callable[[int], None] | None = None,
    ) -> None:
        self.state = state
        self.sender = sender
        self.concurrency = max(1, concurrency)
        # `concurrency` is the ceiling; the window finds what SEI takes (see poller.aimd).
        self.adaptive = adaptive
        self.window = aimd.start(self.concurrency) if adaptive else aimd.fixed(self.concurrency)
        self.on_window = on_window
        self._logged_size = self.window.size
        if on_window is not None:
            on_window(self.window.size)
        self.stop = stop or threading.Event()
        self.paused_until = 0.0
        self._stopping_since: float | None = None
        self.on_outcome = on_outcome
        # A claimed row is this process's alone until its lease ends; the lease outlasts
        # any POST (connect + read timeouts, twice over), so nobody re-posts a slow one.
        self.lease = 2 * sender.longest_post + 30.0
        self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="sei-post")

    def close(self) -> None:
        # POSTs still hanging after STOP_GRACE are abandoned: their rows stay pending, and
        # their leases are dropped so the next start sends them at once.
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.state.release_leases()

    def pass_once(self, budget: float | None = None) -> Report:
        """POST everything due now, `concurrency` at a time, until nothing is due.

        `budget` (seconds) stops taking new work after that long, so a caller with other
        duties (the daemon's watchdog) gets control back even while work keeps arriving.
        """
        report = Report()
        inflight: dict[Future[Outcome], tuple[Item, int]] = {}
        ready: deque[Item] = deque()  # claimed a batch at a time: one write per batch
        exhausted = False
        ends = None if budget is None else time.monotonic() + budget
        while True:
            halted = (
                report.halted is not None
                or self.stop.is_set()
                or time.time() < self.paused_until
                or (ends is not None and time.monotonic() > ends)
            )
            if not halted and len(inflight) < self.window.size:
                if not ready and not exhausted:
                    ready.extend(self.state.claim(2 * self.window.size, self.lease))
                    exhausted = not ready
                while ready and len(inflight) < self.window.size:
                    item = ready.popleft()
                    fut = self._pool.submit(self.sender.post, item.payload)
                    inflight[fut] = (item, self.window.epoch)
            if not inflight:
                self.state.release([i.id for i in ready])  # others may take them now
                return report
            # Short slices, so a stop request is noticed while SEI sits on a POST.
            done, _ = wait(inflight, timeout=0.25, return_when=FIRST_COMPLETED)
            if not done and self._past_grace():
                log.warning("abandoning POSTs in flight; they stay pending", count=len(inflight))
                self.state.release([i.id for i in ready])
                return report
            sent: list[int] = []  # the answers that came together are recorded together
            for fut in done:
                item, epoch = inflight.pop(fut)
                outcome = fut.result()
                self._adapt(outcome, epoch)
                self._record(item, outcome, report, sent)
                exhausted = False
            if sent:
                self.state.sent(*sent)

    def _adapt(self, outcome: Outcome, sent_epoch: int) -> None:
        """Feed the window what this answer says about SEI's load (nothing, for a 400)."""
        if not self.adaptive:
            return
        if outcome.kind == "sent":
            congested = False
        elif outcome.kind == "retry" and (outcome.status is None or outcome.status >= 429):
            congested = True  # 429, 5xx, a timeout, a refused or reset connection
        else:
            return
        rtt = outcome.seconds if outcome.status is not None else None
        self.window = aimd.on_answer(
            self.window, congested=congested, rtt=rtt, sent_epoch=sent_epoch
        )
        size = self.window.size
        if self.on_window is not None:
            self.on_window(size)
        if size >= 2 * self._logged_size or 2 * size <= self._logged_size:
            log.info(
                "SEI delivery window changed",
                posts_in_flight=size,
                was=self._logged_size,
                reason="congestion" if congested else "answers fast and clean",
                best_rtt_ms=round((self.window.min_rtt or 0) * 1000, 1),
            )
            self._logged_size = size

    def _past_grace(self) -> bool:
        if not self.stop.is_set():
            return False
        self._stopping_since = self._stopping_since or time.monotonic()
        return time.monotonic() - self._stopping_since >= STOP_GRACE

    def _record(self, item: Item, outcome: Outcome, report: Report, sent: list[int]) -> None:
        ctx = {"server": item.server, "job": item.job, "build": item.number}
        if self.on_outcome is not None:
            self.on_outcome(item, outcome)
        if outcome.kind == "sent":
            sent.append(item.id)
            report.sent += 1
        elif outcome.kind == "dead":
            self.state.dead(item.id, outcome.detail)
            report.dead += 1
            log.error(
                "SEI rejected the payload; dead-lettered",
                status=outcome.status,
                detail=outcome.detail,
                **ctx,
            )
        elif outcome.kind in HALTS:
            self.state.retry_later(item.id, 0.0, outcome.detail)
            if report.halted is None:
                report.halted = _halt_line(outcome)
                log.error(
                    report.halted + "; delivery stopped for this cycle, everything stays pending",
                    status=outcome.status,
                )
        else:
            delay = next_delay(item.attempts + 1, outcome.retry_after)
            self.state.retry_later(item.id, delay, outcome.detail)
            report.retried += 1
            if outcome.retry_after is not None:
                self.paused_until = max(self.paused_until, time.time() + outcome.retry_after)
            log.warning(
                "SEI delivery failed; will retry",
                detail=outcome.detail,
                retry_in=round(delay, 1),
                attempts=item.attempts + 1,
                **ctx,
            )

    def drain(self, retry_window: float) -> Report:
        """For `once` and `backfill`: keep trying until the outbox is empty, SEI refuses the
        key, or nothing has gone through for `retry_window` seconds."""
        total = Report()
        last_progress = time.time()
        while not self.stop.is_set():
            rep = self.pass_once()
            total.add(rep)
            if rep.sent:
                last_progress = time.time()
            if rep.halted:
                return total
            nxt = self.state.next_due_at()
            if nxt is None:
                if not self.state.pending_elsewhere():
                    return total
                # Another process is posting what is left: it sends those rows, or gives
                # them back (its pass ended, or it stopped), and then they are ours.
                self.stop.wait(0.2)
                continue
            give_up = last_progress + retry_window
            if max(nxt, self.paused_until) > give_up or time.time() >= give_up:
                pending = self.state.counts()["pending"]
                log.error(
                    "SEI still failing after the retry window; payloads left pending",
                    pending=pending,
                    retry_window=retry_window,
                )
                return total
            wake = min(max(nxt, self.paused_until), give_up)
            self.stop.wait(max(0.0, wake - time.time()))
        return total


def _halt_line(outcome: Outcome) -> str:
    if outcome.kind == "auth":
        return f"SEI refused the API key (HTTP {outcome.status})"
    return outcome.detail
