"""The run schema (ffcore's RunConfig and its presets) for the start-run form, without PyTorch.

`ffcore/config.py` imports only pydantic, but importing it as `ffcore.config` runs the package's
`__init__`, which imports PyTorch; the dashboard's image has no PyTorch. So the file is loaded on
its own, under a private module name. It stays the one source of truth for fields, defaults,
limits and presets: the form never hard-codes them.
"""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

_MODULE_NAME = "_dashboard_ffcore_config"


@lru_cache(maxsize=1)
def _config_module() -> ModuleType:
    package = importlib.util.find_spec("ffcore")  # finds the package without running its __init__
    if package is None or not package.submodule_search_locations:
        raise ImportError("the ffcore package (its config.py) is not installed")
    path = Path(next(iter(package.submodule_search_locations))) / "config.py"
    spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[_MODULE_NAME] = module  # pydantic resolves the model's annotations through it
    spec.loader.exec_module(module)
    return module


def preset_names() -> list[str]:
    return list(_config_module().PRESETS)


def preset_config(preset: str) -> dict[str, Any]:
    """Every setting of the preset (defaults with the preset's overrides), as plain values."""
    return _config_module().RunConfig.from_preset(preset).model_dump()


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class FieldInfo:
    """What the form shows about one RunConfig field."""

    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[str, ...] = ()

    @property
    def limits(self) -> str:
        """'1 to 10,000', 'more than 0 and at most 10', '0 up to (not including) 1', or ''."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            if not self.exclusive_minimum and not self.exclusive_maximum:
                return f"{_number(low)} to {_number(high)}"
            low_text = f"more than {_number(low)}" if self.exclusive_minimum else f"at least {_number(low)}"
            high_text = f"below {_number(high)}" if self.exclusive_maximum else f"at most {_number(high)}"
            return f"{low_text} and {high_text}"
        if low is not None:
            return f"more than {_number(low)}" if self.exclusive_minimum else f"at least {_number(low)}"
        if high is not None:
            return f"below {_number(high)}" if self.exclusive_maximum else f"at most {_number(high)}"
        return ""

    @property
    def help(self) -> str:
        return f"{self.description} Allowed: {self.limits}." if self.limits else self.description


def _field_info(schema: dict[str, Any]) -> FieldInfo:
    options = schema.get("anyOf", [schema])  # Optional fields: anyOf [{type: number, ...}, {type: null}]
    bounds: dict[str, Any] = {}
    choices: tuple[str, ...] = ()
    for option in options:
        bounds.update({k: v for k, v in option.items() if k.endswith("imum")})
        if "enum" in option:
            choices = tuple(option["enum"])
        elif "const" in option:
            choices = (*choices, option["const"])
    return FieldInfo(
        description=schema.get("description", ""),
        minimum=bounds.get("minimum", bounds.get("exclusiveMinimum")),
        maximum=bounds.get("maximum", bounds.get("exclusiveMaximum")),
        exclusive_minimum="exclusiveMinimum" in bounds,
        exclusive_maximum="exclusiveMaximum" in bounds,
        choices=choices,
    )


@lru_cache(maxsize=1)
def field_infos() -> dict[str, FieldInfo]:
    """Descriptions, bounds and choices of every RunConfig field, from its JSON schema."""
    properties = _config_module().RunConfig.model_json_schema()["properties"]
    return {name: _field_info(schema) for name, schema in properties.items()}


def parse_hidden(text: str) -> list[int]:
    """'1000, 1000, 1000' -> [1000, 1000, 1000]; a ValueError says what is wrong."""
    parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    if not parts:
        raise ValueError("hidden layers: give at least one width, e.g. 500, 500")
    try:
        return [int(part) for part in parts]
    except ValueError:
        raise ValueError(
            f"hidden layers: {text!r} is not a list of whole numbers; write widths like 500, 500"
        ) from None


def overrides_against(preset: str, values: dict[str, Any]) -> dict[str, Any]:
    """The form values that differ from the preset's, i.e. what to send as overrides."""
    base = preset_config(preset)
    return {key: value for key, value in values.items() if base.get(key) != value}
