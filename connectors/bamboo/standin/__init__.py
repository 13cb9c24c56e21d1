"""A Bamboo Data Center stand-in that answers Bamboo's REST API over real HTTP.

Why: the Bamboo connector's tests, its benchmark and ``sei-poller demo --ci bamboo`` need a
server that behaves like Bamboo where it matters to a poller, without running one:

- plans, and plan branches that are plans of their own, numbered from 1, appearing and
  disappearing (:meth:`FakeBamboo.add_branch`, :meth:`FakeBamboo.delete_plan`);
- results listed newest (highest number) first, finishing in any order; running and
  queued ones only with `includeAllStates=true` (GUESS);
- `start-index` / `max-result` paging, 25 by default and capped by the server (`max_page`)
  below what a client asks; `size` counts the answer, not the collection (BAM-17961);
- `expand=` as Bamboo does it: a listing's results in short form unless
  `results.result` is expanded, nested collections (`vcsRevisions`, `changes`,
  `variables`, `artifacts`, `labels`, `stages.stage.results.result`) with their items only
  when expanded;
- the life of a result: stopped (GUESS: state `Unknown`), failed then restarted in place
  (same number), finished with a manual stage not run (`continuable`), continued later;
- deployment projects, environments and results of versions built from plan results;
- auth on every path (a personal access token as Bearer, or basic), XML unless JSON is
  asked for (`.json` or `Accept: application/json`), Bamboo's `{"message", "status-code"}`
  errors, and the shared faults (:mod:`poller.standins.faults`).

Shapes (key order included) come from the recorded answers in ``data/`` (see
``data/README.md``) through :mod:`.fixtures`; the model and its rendering are in
:mod:`.model`, the HTTP side in :mod:`.server`, the editable server in :mod:`.controller`
(:class:`FakeBamboo`), demo and bulk data in :mod:`.seed`.

Standard library only; nothing here imports pytest.
"""

from __future__ import annotations

from .controller import FakeBamboo, now_ms
from .seed import seed_bulk, seed_demo

__all__ = ["FakeBamboo", "now_ms", "seed_bulk", "seed_demo"]
