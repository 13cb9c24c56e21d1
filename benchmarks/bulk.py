"""The config every connector benchmark polls with: one server named "bulk", backfilling all
of its history into a stand-in SEI, four POSTs in flight."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from poller.standins.sei import FakeSei


def bulk_config(path: Path, sei: FakeSei, **server: Any) -> Path:
    """`server`'s keys (type, url, credentials, options) under the shared ones."""
    keys = {
        "name": "bulk",
        "instance_guid": "666ba79b-3f3d-4236-ac04-4686ce526705",
        "instance_name": "bulk",
        "backfill_since": "all",
        **server,
    }
    # JSON's strings, numbers and true/false are TOML's too.
    rows = "\n".join(f"{k} = {json.dumps(v)}" for k, v in keys.items())
    path.write_text(
        f'[sei]\nurl = "{sei.url}"\napi_key = "{sei.api_key}"\nconcurrency = 4\n'
        f'[state]\npath = "state.db"\n[[servers]]\n{rows}\n'
    )
    path.chmod(0o600)
    return path
