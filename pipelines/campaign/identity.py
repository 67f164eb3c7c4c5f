"""A campaign's identity: the config it was started with, and what may differ when it is resumed.

``campaign.json`` holds the config (as plain data), its preset name, the MLflow parent run and the
registered policy versions. A run into a folder that holds a campaign with another config is refused, and
the refusal names the sections that differ.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from base import atomic
from pipelines.campaign.layout import CAMPAIGN_FILE

# Where a campaign runs and where its folders live may change between a run and its resume.
LOCATION_FIELDS = {
    "cluster": ("ray_address",),
    "campaign": ("out_dir",),
    "train": ("out_dir",),
    "evaluator": ("out_dir",),
    "judge": ("out_dir",),
    "tracking": ("tracking_uri",),
}


def comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config (plain data) without its location fields."""
    out = json.loads(json.dumps(config))
    for section, names in LOCATION_FIELDS.items():
        for name in names:
            out.get(section, {}).pop(name, None)
    return out


def changed_sections(mine: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """Sections whose settings differ, location fields aside."""
    a, b = comparable(mine), comparable(theirs)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def read_state(folder: str | Path) -> dict[str, Any]:
    """The saved ``campaign.json`` of a campaign folder; a missing or unreadable one is a clear error."""
    f = Path(folder) / CAMPAIGN_FILE
    if not f.is_file():
        raise FileNotFoundError(
            f"{folder}: not a campaign folder (no {CAMPAIGN_FILE}); start one with `clampdpo campaign run`"
        )
    try:
        state = json.loads(f.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{f}: damaged ({err}); restore it or start the campaign again in a new folder") from None
    if not isinstance(state, dict) or not isinstance(state.get("config"), dict):
        raise ValueError(f"{f}: holds no campaign config; restore it or start again in a new folder")
    return state


def new_state(config: dict[str, Any], config_name: str) -> dict[str, Any]:
    return {"config": config, "config_name": config_name, "created": time.time()}


def write_state(folder: str | Path, state: dict[str, Any]) -> None:
    atomic.write_json(Path(folder) / CAMPAIGN_FILE, state)
