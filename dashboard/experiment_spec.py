"""How the Experiments page's form becomes an experiment spec: listed values, seeds, ranges, the body.

Pure Python (no Streamlit), so that tests check the parsing directly. The dashboard does not judge a
spec beyond reading what was typed: the API checks it against RunConfig and answers a readable 422.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

SEARCHES = ("grid", "random", "tpe")
OBJECTIVES = {
    "val_error_scan": "validation error, label scan",
    "val_error_softmax": "validation error, softmax head",
}
# Settings an experiment may not vary (the API refuses them and says why); the form does not offer them.
NOT_VARIED = frozenset({"seed", "data_dir", "device", "validation"})


def split_top_level(text: str) -> list[str]:
    """'1, [2, 3], "a,b"' -> ['1', '[2, 3]', '"a,b"']: commas inside brackets or quotes do not split."""
    parts: list[str] = []
    depth, quote, current = 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def parse_value(text: str) -> Any:
    """One typed value: JSON when it parses ('1e-3', '[500, 500]', 'true', '"hard"'), else a number
    Python reads ('.5'), else the text itself without quotes ('random', "'hard'")."""
    try:
        return json.loads(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text.strip("'\"")


def parse_values(text: str, kind: str | None = None) -> list[Any]:
    """Comma-separated values of one setting; `kind` 'integer' turns whole floats (1e3) into ints.

    A ValueError says what is wrong (nothing given).
    """
    values = [parse_value(part) for part in split_top_level(text)]
    if not values:
        raise ValueError("give at least one value, separated by commas, e.g. 0.001, 0.002")
    if kind == "integer":
        values = [int(v) if isinstance(v, float) and v.is_integer() else v for v in values]
    return values


def parse_overrides(text: str) -> dict[str, Any]:
    """'lr=0.002, negatives=hard' -> {'lr': 0.002, 'negatives': 'hard'}; a ValueError says what is wrong."""
    overrides = {}
    for part in split_top_level(text):
        name, equals, value = part.partition("=")
        if not equals or not name.strip():
            raise ValueError(f"more overrides: {part!r} is not setting=value, e.g. negatives=hard")
        overrides[name.strip()] = parse_value(value.strip())
    return overrides


def parse_seeds(text: str) -> list[int]:
    """'0, 1, 2' or '0 1 2' -> [0, 1, 2]; a ValueError names what is not a whole number."""
    parts = text.replace(",", " ").split()
    if not parts:
        raise ValueError("seeds: give at least one seed, e.g. 0, 1, 2")
    bad = [part for part in parts if not part.lstrip("-").isdigit()]
    if bad:
        raise ValueError(f"seeds: {', '.join(bad)} is not a whole number; write seeds like 0, 1, 2")
    return [int(part) for part in parts]


def setting_kind(field_schema: dict[str, Any]) -> str | None:
    """'integer' or 'number' for a numeric RunConfig field (optional ones too), else None."""
    options = field_schema.get("anyOf", [field_schema])
    kinds = {option.get("type") for option in options} - {"null"}
    return kinds.pop() if len(kinds) == 1 and kinds <= {"integer", "number"} else None


def variable_settings(config_schema: dict[str, Any]) -> list[str]:
    """The RunConfig fields an experiment may vary, in the schema's order."""
    return [name for name in config_schema.get("properties", {}) if name not in NOT_VARIED]


@dataclass(frozen=True)
class ParamInput:
    """What the form holds for one varied setting: listed values (text), or a range."""

    name: str
    values_text: str = ""
    use_range: bool = False
    low: float | None = None
    high: float | None = None
    log: bool = False

    def spec(self, kind: str | None) -> dict[str, Any]:
        """The ParamSpec body: {'values': [...]} or {'low', 'high', 'log'}; a ValueError names the setting."""
        if self.use_range:
            if self.low is None or self.high is None:
                raise ValueError(f"{self.name}: give both ends of the range")
            if kind == "integer":
                return {"low": int(self.low), "high": int(self.high), "log": self.log}
            return {"low": self.low, "high": self.high, "log": self.log}
        try:
            return {"values": parse_values(self.values_text, kind)}
        except ValueError as error:
            raise ValueError(f"{self.name}: {error}") from None


def experiment_body(
    *,
    preset: str,
    overrides: dict[str, Any],
    params: dict[str, dict[str, Any]],
    search: str,
    seeds: list[int],
    objective: str,
    max_trials: int | None,
    max_parallel: int,
    prune: bool,
) -> dict[str, Any]:
    """The JSON of POST /experiments (without the name): an ExperimentSpec."""
    if not params:
        raise ValueError(
            "choose at least one setting to vary (a seed group varies one setting with one value)"
        )
    body: dict[str, Any] = {
        "base": {"preset": preset, "overrides": overrides},
        "search": search,
        "params": params,
        "seeds": seeds,
        "objective": objective,
        "max_parallel": max_parallel,
        "prune": prune,
    }
    if max_trials:
        body["max_trials"] = max_trials
    return body


def format_param_value(value: Any) -> str:
    """A setting's value as the results table shows it: numbers as typed, lists as JSON."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value
    return json.dumps(value)
