"""How the start-run form reads GET /run-options: each field's help, bounds and choices, and the overrides.

The API answers RunConfig's JSON schema with the server's limits (FF_MAX_*) already in its bounds,
and every preset in full; the form never hard-codes a field's default or limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dashboard.models import DATASET_NAMES


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{_number(low)} to {_number(high)}"
    if low is not None:
        return f"at least {_number(low)}"
    return f"at most {_number(high)}" if high is not None else ""


@dataclass(frozen=True)
class FieldInfo:
    """What the form shows about one RunConfig field."""

    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[str, ...] = ()
    # A list field (`hidden`): how many entries, and the bounds of each.
    min_items: int | None = None
    max_items: int | None = None
    items: FieldInfo | None = None

    @property
    def limits(self) -> str:
        """'1 to 10,000', 'more than 0 and at most 10', '1 to 8 values, each 1 to 4,096', or ''."""
        if self.min_items is not None or self.max_items is not None:
            count = f"{_range(self.min_items, self.max_items)} values"
            return f"{count}, each {self.items.limits}" if self.items and self.items.limits else count
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            if not self.exclusive_minimum and not self.exclusive_maximum:
                return _range(low, high)
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
    items: FieldInfo | None = None
    for option in options:
        bounds.update({k: v for k, v in option.items() if k.endswith("imum") or k.endswith("Items")})
        if "enum" in option:
            choices = tuple(option["enum"])
        elif "const" in option:
            choices = (*choices, option["const"])
        if isinstance(option.get("items"), dict):
            items = _field_info(option["items"])
    return FieldInfo(
        description=schema.get("description", ""),
        minimum=bounds.get("minimum", bounds.get("exclusiveMinimum")),
        maximum=bounds.get("maximum", bounds.get("exclusiveMaximum")),
        exclusive_minimum="exclusiveMinimum" in bounds,
        exclusive_maximum="exclusiveMaximum" in bounds,
        choices=choices,
        min_items=bounds.get("minItems"),
        max_items=bounds.get("maxItems"),
        items=items,
    )


def field_infos(config_schema: dict[str, Any]) -> dict[str, FieldInfo]:
    """Descriptions, bounds and choices of every RunConfig field, from the schema GET /run-options gives."""
    return {name: _field_info(schema) for name, schema in config_schema["properties"].items()}


def preset_summary(preset: str, config: dict[str, Any]) -> str:
    """'quick — 2x500, 3 epochs, random negatives': a preset as the picker lists it, with its data set
    when it is not MNIST and its augmentations ('fashion — Fashion-MNIST, 3x1000, ..., mirrored')."""
    widths = config["hidden"]
    network = f"{len(widths)}x{widths[0]}" if len(set(widths)) == 1 else "-".join(map(str, widths))
    parts = [network, f"{config['epochs']} epochs", f"{config['negatives']} negatives"]
    dataset = config.get("dataset", "mnist")
    if dataset != "mnist":
        parts.insert(0, DATASET_NAMES.get(dataset, dataset))
    if config.get("jitter"):
        parts.append(f"shifted up to {config['jitter']} px")
    if config.get("augment", "none") != "none":
        parts.append(f"{config['augment']} augmentation")
    if config.get("flip"):
        parts.append("mirrored")
    return f"{preset} — {', '.join(parts)}"


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


def overrides_against(preset_config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The form values that differ from the preset's settings, i.e. what to send as overrides."""
    return {key: value for key, value in values.items() if preset_config.get(key) != value}


def parse_tags(text: str) -> list[str]:
    """Tags typed as 'a, b c': split at commas and spaces, empty ones dropped (the API checks the rest)."""
    return [tag for tag in text.replace(",", " ").split() if tag]
