"""A TeamCity stand-in that answers TeamCity's REST API (JSON) over real HTTP.

Why: the TeamCity connector's tests, its benchmark and ``sei-poller demo --ci teamcity`` need
a server that behaves like TeamCity where it matters to a poller, without running a JVM:

- ids from one server-wide sequence, handed out at queue time, so a build configuration's
  ids have gaps and builds start and finish out of id order;
- the locator dimensions the connector uses, with TeamCity's defaults and limits: the
  default filter that hides canceled, failed-to-start, personal and non-default-branch
  builds, `lookupLimit` (5,000 by default, silently), start-date order, `count`/`start`
  paging with `nextHref` (see :mod:`.finder`);
- `fields=` partial answers (:mod:`.locator`); unknown locator dimensions refused with
  TeamCity's 400 text, and known ones the stand-in does not implement refused too;
- auth on every path: `Authorization: Bearer <token>` or HTTP basic; anything else 401;
- a canceled build stays `running` (status UNKNOWN) until the agent stops it;
- faults shared with the Jenkins stand-in, :mod:`poller.standins.faults` (500s, latency,
  hangs, resets) on chosen paths.

Shapes come from the recorded answers in ``data/teamcity/`` (three real servers, see
``data/README.md``) through :mod:`.fixtures`; the model is in :mod:`.model`, the HTTP side in
:mod:`.server`, the editable server in :mod:`.controller` (:class:`FakeTeamCity`), demo and
bulk data in :mod:`.seed`.

Deliberate simplifications: JSON only (TeamCity's default is XML; a request without
`Accept: application/json` gets 406); `*` in `fields=` keeps every member at that level;
`build:(...)` time conditions, `snapshotDependency`, `agent`, `tag` and the other dimensions
the connector does not send are refused as not implemented; personal builds are visible to
the stand-in's user whoever owns them.

Standard library only; nothing here imports pytest.
"""

from __future__ import annotations

from .controller import FakeTeamCity, now_ms
from .seed import seed_bulk, seed_demo

__all__ = ["FakeTeamCity", "now_ms", "seed_bulk", "seed_demo"]
