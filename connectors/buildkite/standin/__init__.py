"""A Buildkite stand-in that answers Buildkite's REST API (`/v2/`) over real HTTP.

Why: the Buildkite connector's tests need a server that behaves like Buildkite where it
matters to a poller:

- auth on every path (`Authorization: Bearer <token>`, else 401) and token scopes
  (`X-OAuth-Scopes`, `X-Accepted-OAuth-Scopes`; a missing scope is 403);
- the list filters the connector uses (`finished_from`, `created_from`, `created_to`,
  `state`, `include_retried_jobs`), newest created first, `page`/`per_page` (at most 100)
  paging with a `Link` header, and 400 for a page deeper than ``max_page`` (GUESS: Buildkite
  does not say how deep; the text is the one its docs quote);
- a fixed-window rate limit with the `RateLimit-*` headers and their older `Rate-Limit-*`
  twins, as the 2023 recordings show, and a 429 with `{"message", "scope"}` past it;
- blocked builds that keep `state: passed` with `blocked: true`; job retries that keep the
  build and mark the old job `retried: true` (hidden unless `include_retried_jobs=true`);
- faults shared with the other stand-ins, :mod:`poller.standins.faults`.

Shapes follow the recordings in ``shared/fixtures/buildkite/`` (buildkiterb VCR cassettes,
2023). Standard library only; nothing here imports pytest.
"""

from __future__ import annotations

from .controller import FakeBuildkite, iso, now_ms

__all__ = ["FakeBuildkite", "iso", "now_ms"]
