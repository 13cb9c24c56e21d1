"""A GoCD stand-in that answers GoCD's versioned JSON API over real HTTP.

Why: the GoCD connector's tests, its benchmark and ``sei-poller demo --ci gocd`` need a
server that behaves like GoCD where it matters to a poller, without running a JVM:

- pipelines of stages, each stage run a set of jobs walking GoCD's job states
  (Scheduled → Assigned → Preparing → Building → Completing → Completed, with times);
- manual approval gates: a stage behind one is not scheduled until someone approves it,
  possibly days later, and the instance shows it `scheduled: false`;
- stage re-runs (a new stage counter; `rerun_of_counter` for a re-run of failed jobs), and
  jobs rescheduled when their agent is lost (the lost run ends `Rescheduled`);
- ids from server-wide sequences: pipeline history and stage history page newest first by
  those ids with `after` / `before` cursors and `page_size` (10 to 100), and show only the
  latest run of each stage in pipeline history;
- counters that start again at 1 when a pipeline is recreated or renamed;
- `api/dashboard` with an `ETag` that moves with any change to any instance of a pipeline,
  304 to `If-None-Match`, and 202 while "loading";
- auth on every path (Bearer token or basic), versioned `Accept` headers with GoCD's HTML
  404 for a wrong or missing version, GoCD's JSON error messages;
- faults shared with the other stand-ins, :mod:`poller.standins.faults`.

Shapes come from the recorded answers and GoCD's documentation examples in ``data/`` (see
``data/README.md``); the model and its JSON are in :mod:`.model`, the HTTP side in
:mod:`.server`, the editable server in :mod:`.controller` (:class:`FakeGoCD`), demo and
bulk data in :mod:`.seed`. Where GoCD's real behaviour is not known the stand-in takes the
less convenient answer and says GUESS.

Standard library only; nothing here imports pytest.
"""

from __future__ import annotations

from .controller import FakeGoCD, changes, commit, dependency, forced, git, now_ms, timer
from .model import Material, Modification, Revision, StageConfig
from .seed import seed_bulk, seed_demo

__all__ = [
    "FakeGoCD",
    "Material",
    "Modification",
    "Revision",
    "StageConfig",
    "changes",
    "commit",
    "dependency",
    "forced",
    "git",
    "now_ms",
    "seed_bulk",
    "seed_demo",
    "timer",
]
