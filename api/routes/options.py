"""Run options: what a client may submit to POST /runs, with this server's limits, for building forms."""

from __future__ import annotations

import copy
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from api.deps import SettingsDep
from ffcore.config import DEFAULT_PRESET, PRESETS, RunConfig
from fflab.settings import Settings

router = APIRouter(tags=["runs"])


class RunOptionsOut(BaseModel):
    """Everything a client needs to offer a run's settings: presets, the schema, the server's limits."""

    default_preset: str = Field(description="The preset POST /runs uses when the request names none.")
    presets: dict[str, RunConfig] = Field(
        description="Every preset, fully expanded: each setting, the defaults with the preset's overrides."
    )
    config_schema: dict[str, Any] = Field(
        description="RunConfig's JSON schema with this server's limits (FF_MAX_LAYERS, FF_MAX_UNITS, "
        "FF_MAX_EPOCHS) written into its bounds: `hidden` has maxItems and items.maximum, `epochs` "
        "maximum. A configuration inside these bounds passes the limits POST /runs checks."
    )


def config_schema(settings: Settings) -> dict[str, Any]:
    """RunConfig's JSON schema, narrowed to what this server accepts."""
    schema = copy.deepcopy(RunConfig.model_json_schema())
    fields = schema["properties"]
    hidden = fields["hidden"]
    hidden["maxItems"] = min(hidden.get("maxItems", settings.max_layers), settings.max_layers)
    # RunConfig checks each width in a validator, so its JSON schema has no bounds for the items.
    hidden["items"] = {**hidden["items"], "minimum": 1, "maximum": settings.max_units}
    epochs = fields["epochs"]
    epochs["maximum"] = min(epochs.get("maximum", settings.max_epochs), settings.max_epochs)
    # POST /runs refuses any data_dir: the worker's FF_DATA_DIR decides where the data is.
    fields["data_dir"] = {
        "type": "null",
        "default": None,
        "title": fields["data_dir"].get("title", "Data Dir"),
        "description": "Set by the server (FF_DATA_DIR); leave it out.",
    }
    return schema


@router.get(
    "/run-options",
    response_model=RunOptionsOut,
    summary="The presets, the run schema and this server's limits, for building a start-run form",
)
def run_options(settings: SettingsDep) -> RunOptionsOut:
    """Every preset with all its settings, and RunConfig's JSON schema with the server's limits applied
    (at most FF_MAX_LAYERS hidden layers of at most FF_MAX_UNITS units, at most FF_MAX_EPOCHS epochs), so
    that a form can show the bounds POST /runs enforces."""
    return RunOptionsOut(
        default_preset=DEFAULT_PRESET,
        presets={name: RunConfig.from_preset(name) for name in PRESETS},
        config_schema=config_schema(settings),
    )
