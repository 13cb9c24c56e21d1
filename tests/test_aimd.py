"""The delivery window: AIMD arithmetic as a pure function, then against a slow gateway."""

from __future__ import annotations

import heapq
import time
from pathlib import Path

import pytest

from poller import aimd
from poller.deliver import Deliverer
from poller.sei import Sender
from poller.standins.sei import FakeSei
from poller.state import State


def _clean(w: aimd.Window, n: int, rtt: float = 0.04) -> aimd.Window:
    for _ in range(n):
        w = aimd.on_answer(w, congested=False, rtt=rtt, sent_epoch=w.epoch)
    return w


def test_clean_fast_answers_add_one_post_per_round_trip() -> None:
    w = aimd.start(16)
    assert (w.limit, w.size) == (2.0, 2)
    w = _clean(w, 2)  # each answer adds 1/limit: 2 + 1/2 + 1/2.5
    assert w.limit == pytest.approx(2.9) and w.size == 2
    w = _clean(w, 1)
    assert w.size == 3
    w = _clean(w, 3)  # about one window's worth of answers per step
    assert w.size == 4


def test_the_ceiling_holds_and_the_floor_holds() -> None:
    w = _clean(aimd.start(5), 200)
    assert w.size == 5 and w.limit == 5.0
    for _ in range(10):
        w = aimd.on_answer(w, congested=True, rtt=0.01, sent_epoch=w.epoch)
    assert w.size == 1 and w.limit == 1.0


def test_a_refusal_cuts_to_0_7_and_one_overload_counts_once() -> None:
    w = aimd.Window(limit=10.0, min_rtt=0.04)
    sent_at = w.epoch  # ten POSTs left in this epoch
    w = aimd.on_answer(w, congested=True, rtt=0.005, sent_epoch=sent_at)
    assert (w.limit, w.epoch, w.w_max) == (7.0, 1, 10.0)
    for _ in range(7):  # the other 429s of the same burst
        w = aimd.on_answer(w, congested=True, rtt=0.005, sent_epoch=sent_at)
    assert (w.limit, w.epoch) == (7.0, 1)
    w = aimd.on_answer(w, congested=True, rtt=None, sent_epoch=w.epoch)  # a later timeout
    assert (w.limit, w.epoch) == pytest.approx((4.9, 2))


def test_near_the_last_congestion_point_growth_is_slow_and_past_it_normal() -> None:
    w = aimd.Window(limit=6.0, w_max=9.0)
    w = _clean(w, 6 + 7 + 2)  # about two round trips at full speed: 6 -> 8
    assert w.size == 8
    slow = _clean(w, 8 * 10)  # ten round trips near w_max: not yet at 9
    assert slow.size == 8 and slow.limit < w.limit + 0.5
    past = _clean(aimd.Window(limit=10.2, w_max=9.0), 11)
    assert past.size == 11  # the gateway's limit moved up: normal growth again


def test_rising_latency_backs_off_but_local_jitter_does_not() -> None:
    w = _clean(aimd.Window(limit=8.0), 5, rtt=0.040)
    assert w.min_rtt == pytest.approx(0.040, rel=0.05)
    queued = aimd.on_answer(w, congested=False, rtt=0.200, sent_epoch=w.epoch)
    assert queued.limit == pytest.approx(w.limit * 0.7)  # 5x the best, 160 ms over it
    local = _clean(aimd.Window(limit=8.0), 5, rtt=0.0003)
    jitter = aimd.on_answer(local, congested=False, rtt=0.004, sent_epoch=local.epoch)
    assert jitter.limit > local.limit  # 13x, but 4 ms is not congestion


def test_fixed_window_is_what_adaptive_false_keeps() -> None:
    w = aimd.fixed(4)
    assert (w.size, w.floor, w.ceiling) == (4, 4, 4)


def _simulate(limit_at: list[tuple[float, int]], latency: float, ceiling: int, n: int):
    """A discrete-event run of the window against a gateway that refuses past `limit`
    in flight; the refusal answers at once and is retried 1 s later (Retry-After: 1)."""
    w, now, clock = aimd.start(ceiling), 0.0, 0
    events: list[tuple[float, int, int, bool]] = []  # (time, seq, epoch, accepted)
    inflight = at_gateway = delivered = refused = 0  # refused POSTs never reach the gateway
    pending = n
    paused_until = 0.0

    def gateway_limit(t: float) -> int:
        return [lim for at, lim in limit_at if at <= t][-1]

    while delivered < n:
        while pending and inflight < w.size and now >= paused_until:
            accepted = at_gateway < gateway_limit(now)
            done = now + (latency if accepted else 0.002)
            clock += 1
            heapq.heappush(events, (done, clock, w.epoch, accepted))
            inflight += 1
            at_gateway += accepted
            pending -= 1
        if not events:
            now = paused_until
            continue
        now, _, epoch, accepted = heapq.heappop(events)
        inflight -= 1
        at_gateway -= accepted
        if accepted:
            delivered += 1
            w = aimd.on_answer(w, congested=False, rtt=latency, sent_epoch=epoch)
        else:
            refused += 1
            pending += 1
            paused_until = max(paused_until, now + 1.0)
            w = aimd.on_answer(w, congested=True, rtt=0.002, sent_epoch=epoch)
    return n / now, refused


def test_simulated_gateway_limit_of_8_at_40ms_reaches_most_of_its_throughput() -> None:
    rate, refused = _simulate([(0.0, 8)], 0.040, 16, 2000)
    assert rate >= 0.6 * 8 / 0.040, f"{rate:.0f}/s of {8 / 0.040:.0f}/s"
    assert refused < 20


def test_simulated_limit_dropping_from_8_to_2_is_followed_down() -> None:
    rate, refused = _simulate([(0.0, 8), (3.0, 2)], 0.040, 16, 1500)
    assert rate >= 0.5 * 2 / 0.040, f"{rate:.0f}/s"
    assert refused < 30


def test_simulated_150ms_without_a_limit_grows_to_the_ceiling() -> None:
    rate, refused = _simulate([(0.0, 10**6)], 0.150, 16, 2000)
    assert rate >= 0.6 * 16 / 0.150 and refused == 0


# -- end to end: the real deliverer, a real HTTP gateway, a real SQLite outbox -------------


def _fill(state: State, n: int) -> None:
    payload = (
        '{"pipeline":"p","job_full_name":"j","qualified_name":"j","instance_name":"i",'
        '"instance_guid":"666ba79b-3f3d-4236-ac04-4686ce526705","result":"SUCCESS",'
        '"build_number":%d}'
    )
    state.enqueue("srv", "j", [(i, payload % i) for i in range(1, n + 1)])


def test_against_a_slow_gateway_that_refuses_past_8_in_flight(tmp_path: Path) -> None:
    n = 400
    with FakeSei(latency=0.04) as sei:
        sei.max_inflight = 8
        state = State(tmp_path / "state.db")
        _fill(state, n)
        sender = Sender(sei.url, "sei-secret-key", concurrency=16)
        sizes: list[int] = []
        deliverer = Deliverer(state, sender, 16, on_window=sizes.append)
        started = time.monotonic()
        report = deliverer.drain(retry_window=30)
        seconds = time.monotonic() - started
        deliverer.close()
        sender.close()
        counts = state.counts()
        state.close()
        refused = sum(1 for status, _ in sei.attempts if status == 429)
    assert counts == {"pending": 0, "sent": n, "dead": 0} and report.dead == 0
    assert len({k[2] for k in sei.keys()}) == n
    assert sei.peak_inflight <= 8
    assert max(sizes) > 2, "the window never grew past where it started"
    rate = n / seconds
    # The limit allows 8 / 40 ms = 200/s; a fixed window of 2 gives at most 50/s. Each 429
    # costs a 1 s Retry-After pause, which weighs on a run this short (the benchmark's
    # 2,000 builds show the steady state).
    assert rate > 60, f"{rate:.0f} builds/s, {refused} refused"
    assert refused <= 5
