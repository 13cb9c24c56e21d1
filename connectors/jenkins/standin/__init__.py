"""A Jenkins stand-in that answers Jenkins' JSON API over real HTTP.

Why: the poller's tests, its benchmarks and ``sei-poller demo`` need a controller that behaves like
Jenkins where it matters to a poller (``tree`` pruning with ranges, ``builds`` capped at 100,
``allBuilds`` hidden unless asked for, encoded branch job names, wfapi stages and steps, basic
auth, slow or failing answers) without running a JVM. Object shapes are built from recorded
responses shipped in ``data/jenkins/`` (see ``data/README.md``), not from memory.

Deliberate simplifications, so nobody mistakes them for Jenkins behaviour:

- ``depth=`` is accepted and ignored (every answer without ``tree`` is the depth-0 answer).
- Views are accepted as URL prefixes (``/view/all/job/...``) but ``url`` fields never contain them.
- Only GET (and HEAD) are served; other methods get 405.
- Secured strictly: with ``require_auth`` (the default) an anonymous request to any path under the
  context path, ``/``, ``/whoAmI`` and ``/crumbIssuer`` included, gets Jenkins' 403 for a missing
  Overall/Read (``X-You-Are-Authenticated-As: anonymous``, ``X-Required-Permission``, the white
  login-redirect page). Real Jenkins serves its few unprotected paths (``/login``, ``/whoAmI``,
  ...) anonymously; here nothing is, so a client that forgets its credentials on any request
  finds out. Wrong or malformed basic credentials always get 401. ``require_auth=False`` lets
  anonymous callers read everything.
- A malformed ``tree`` gets 400.

For chaos tests: :mod:`.faults` fails (``fail``, ``break_path``, seeded ``flaky``), slows
(``delay``), silences (``hang``) or resets (``reset``) chosen paths, and the controller records
when each build finished and with which result (``finished``, ``finished_at``, ``final_result``).

Faithful on purpose: ``*`` in a tree matches every property, ``allBuilds`` included (Stapler's
``NamedPathPruner`` ignores visibility), so ``jobs[*]`` costs what it costs on Jenkins.

Standard library only; nothing here imports pytest.

Modules: :mod:`.tree` (the ``tree`` language and pruning), :mod:`.model` (items, jobs, runs),
:mod:`.builds` (build JSON), :mod:`.wfapi` (Stage View), :mod:`.fixtures` (the recorded
answers), :mod:`.names` (Jenkins' class names and constants), :mod:`.server` (HTTP, auth,
routing), :mod:`.faults` (fault injection), :mod:`.controller` (:class:`FakeJenkins`) and
:mod:`.seed` (``seed_demo``, ``seed_bulk``).

Standard library only; nothing here imports pytest.
"""

from __future__ import annotations

from poller.standins.http import Recorded

from .controller import FakeJenkins, Finished
from .seed import seed_bulk, seed_demo
from .tree import TreeError, parse_tree

__all__ = [
    "FakeJenkins",
    "Finished",
    "Recorded",
    "TreeError",
    "parse_tree",
    "seed_bulk",
    "seed_demo",
]
