"""Paged listings, the three ways CI servers page: a next link in the answer's `Link` header
(Buildkite, GitHub), a next link in the answer's body (TeamCity's `nextHref`), or an offset
the client moves (Buildbot, Bamboo's `start-index`, Jenkins' ranges).

Every next link comes from the server's answer, so it is followed only to the configured
host (`same_host`): a server whose own URL setting is wrong must not lead requests, and the
credentials they carry, anywhere else.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

from connectors.kit.http import redact_url
from poller.errors import ConnectorError

T = TypeVar("T")
MAX_PAGES = 100_000  # a loop guard: a listing that never ends is the server's bug
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')
_LINK_LAST = re.compile(r'<[^>]*[?&]page=(\d+)[^>]*>\s*;\s*rel="?last"?')


def next_link(headers: Mapping[str, str]) -> str | None:
    """`Link: <…?page=3>; rel="next"` → that URL."""
    m = _LINK_NEXT.search(headers.get("Link") or "")
    return m.group(1) if m else None


def last_page(headers: Mapping[str, str]) -> int | None:
    """`Link: <…?page=40>; rel="last"` → 40: how deep the listing says it goes."""
    m = _LINK_LAST.search(headers.get("Link") or "")
    return int(m.group(1)) if m else None


def same_host(link: str, base: str) -> str:
    """`link`, when it points at `base`'s host; else one line naming both."""
    theirs, ours = urlsplit(link).netloc, urlsplit(base).netloc
    if theirs != ours:
        raise ConnectorError(
            f"the next page's link points at another host ({theirs}, not {ours}); not"
            " followed: set url to the address the server itself uses",
            url=redact_url(base),
        )
    return link


def follow(
    fetch: Callable[[str, dict[str, Any] | None], tuple[T, Mapping[str, str]]],
    url: str,
    params: dict[str, Any] | None,
    *,
    items: Callable[[T], Iterable[Any]],
    next_of: Callable[[T, Mapping[str, str]], str | None],
    max_pages: int = MAX_PAGES,
) -> Iterator[Any]:
    """Every item of a listing: fetch a page (`fetch(url, params)` → body, headers), yield
    its items, go to `next_of(body, headers)` (None: the last page). A page may be empty
    and still link further (TeamCity does at its lookup limit)."""
    nxt: str | None = url
    query = params
    for _ in range(max_pages):
        assert nxt is not None
        page, headers = fetch(nxt, query)
        yield from items(page)
        nxt, query = next_of(page, headers), None
        if not nxt:
            return
    raise ConnectorError("the server kept answering more pages", url=redact_url(url))


def by_offset(
    fetch: Callable[[int, int], list[T]],
    size: int,
    *,
    first: int | None = None,
    capped: bool = False,
    max_pages: int = MAX_PAGES,
) -> Iterator[T]:
    """Every item of an offset-paged listing, newest first: `fetch(offset, limit)` until a
    short page. `first` sizes the first page (a live poll that expects two new builds asks
    for two). The consumer may stop early: nothing more is fetched.

    `capped`: the server may answer fewer items than asked without being at the end (Bamboo
    caps `max-result` below what a client asks, and its `size` is not a total), so a short
    page says nothing and only an empty page ends the listing; the next page starts where
    the items received end, and asks for no more than the server gave."""
    offset, limit = 0, first or size
    learned = False
    for _ in range(max_pages):
        page = fetch(offset, limit)
        yield from page
        if not page or (len(page) < limit and not capped):
            return
        if capped and len(page) < limit and not learned and limit == size:
            size, learned = len(page), True  # the server's cap, learnt from a full answer
        offset, limit = offset + len(page), size
    raise ConnectorError("the server kept answering more pages")
