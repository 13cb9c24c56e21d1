"""How many POSTs to keep in flight toward SEI: additive increase, multiplicative decrease.

Across a WAN, throughput is concurrency divided by latency, and SEI's gateway answers 429
when a client pushes too hard. So the deliverer finds the rate SEI takes by itself, the way
TCP's congestion avoidance does (RFC 5681): every answer that comes back clean and fast
grows the window by 1/limit, i.e. by one POST per round trip; a refusal (429, 5xx, a
timeout) or a round trip far above the best one seen cuts it to 0.7 of itself. As in TCP's
fast recovery, one congestion event counts once: answers to POSTs sent before the last
decrease were sent into the old window and cannot decrease it again, so a burst of 429s from
one overload is one back-off, not eight.

Unlike TCP, each refusal costs a whole `Retry-After` pause (a second, typically) in which
nothing is sent, so probing must be rare. As CUBIC does (RFC 8312), the window remembers
where the last congestion happened (`w_max`) and, once back within one POST of it, grows
128 times slower: it sits just under the gateway's limit for seconds between probes, instead
of hitting it every few round trips. Past `w_max + 1` the limit has moved, and normal growth
resumes. (Envoy's adaptive concurrency filter follows latency alone, with a gradient against
a periodically re-measured minimum; a gateway that answers 429 early with no rise in latency
is why loss, not latency, is the main signal here.)

Pure: the deliverer feeds it outcomes and reads `limit`, and tests drive it with numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DECREASE = 0.7  # CUBIC's beta: a gateway limit is usually just below where it refused
PROBE = 128.0  # near the last congestion point, growth is this many times slower
SLOW_FACTOR = 2.0  # a round trip over twice the best seen, and ...
SLOW_SLACK = 0.05  # ... more than 50 ms over it, is congestion (local jitter is not)
MIN_RTT_DECAY = 1.01  # the best round trip forgets slowly, so a route change is re-learned


@dataclass(frozen=True)
class Window:
    """The delivery window. `epoch` counts decreases; a POST remembers the epoch it left in."""

    limit: float
    floor: int = 1
    ceiling: int = 16
    min_rtt: float | None = None
    epoch: int = 0
    w_max: float | None = None  # the limit at the last congestion event

    @property
    def size(self) -> int:
        """POSTs allowed in flight now."""
        return max(self.floor, min(self.ceiling, int(self.limit)))


def start(ceiling: int, initial: int = 2) -> Window:
    """A window that starts small (SEI's gateway is shared) and may grow to `ceiling`."""
    return Window(limit=float(min(initial, ceiling)), ceiling=ceiling)


def on_answer(w: Window, *, congested: bool, rtt: float | None, sent_epoch: int) -> Window:
    """The window after one answer.

    `congested`: SEI refused for load (429, 5xx, timeout, connection error). `rtt`: seconds
    the POST took (None when there was no answer). `sent_epoch`: the window's epoch when
    that POST was sent. Answers that say nothing about load (a 400, a 401) leave it alone:
    the deliverer does not call this for them.
    """
    min_rtt = w.min_rtt
    if rtt is not None and not congested:
        min_rtt = rtt if min_rtt is None else min(min_rtt * MIN_RTT_DECAY, rtt)
    slow = (
        rtt is not None
        and min_rtt is not None
        and rtt > SLOW_FACTOR * min_rtt
        and rtt - min_rtt > SLOW_SLACK
    )
    if congested or slow:
        if sent_epoch < w.epoch:
            return replace(w, min_rtt=min_rtt)  # sent into a window already cut
        limit = max(float(w.floor), w.limit * DECREASE)
        return replace(w, limit=limit, min_rtt=min_rtt, epoch=w.epoch + 1, w_max=w.limit)
    step = 1.0 / max(w.limit, 1.0)
    if w.w_max is not None and w.w_max - 1.0 <= w.limit <= w.w_max + 1.0:
        step /= PROBE  # near where it last hurt: probe gently
    limit = min(float(w.ceiling), w.limit + step)
    return replace(w, limit=limit, min_rtt=min_rtt)


def fixed(concurrency: int) -> Window:
    """`adaptive = false`: a window that never moves (callers skip `on_answer`)."""
    return Window(limit=float(concurrency), floor=concurrency, ceiling=concurrency)
