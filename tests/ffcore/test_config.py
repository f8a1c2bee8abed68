import pytest
from pydantic import ValidationError

from ffcore.config import PRESETS, RunConfig, format_validation_error, parse_override


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_validates(name):
    config = RunConfig.from_preset(name)
    assert config.epochs >= 1


def test_reference_preset_is_the_published_recipe():
    config = RunConfig.from_preset("reference")
    assert config.hidden == [1000, 1000, 1000]
    assert (config.batch_size, config.epochs) == (100, 100)
    assert (config.lr, config.momentum) == (1e-3, 0.9)
    assert config.weight_decay == 1e-3  # Hinton's code's weight cost in PyTorch's form (the port: 3e-4)
    assert (config.head_lr, config.head_weight_decay) == (1e-2, 3e-3)
    assert (config.peer_norm_weight, config.peer_norm_momentum) == (0.03, 0.9)
    assert config.lr_schedule == "linear_cooldown"
    assert config.negatives == "hard"  # as Hinton's Matlab code draws them
    assert config.scan_layer_indices == [1, 2] and config.head_layer_indices == [1, 2]


def test_paper_preset_is_the_papers_setting():
    config = RunConfig.from_preset("paper")
    assert config.hidden == [2000] * 4
    assert config.epochs == 60 and config.negatives == "hard"
    # Learning rates scaled to the wider layers: a quarter for the FF layers, about a third for the head.
    assert (config.lr, config.head_lr) == (2.5e-4, 3e-3)
    assert config.weight_decay == 3e-4  # the value its run was measured with


def test_threshold_defaults_to_mean_squared_activity_one():
    assert RunConfig(goodness="sum").layer_threshold(1000) == 1000.0
    assert RunConfig(goodness="mean").layer_threshold(1000) == 1.0
    assert RunConfig(threshold=3.0).layer_threshold(1000) == 3.0


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"hidden": [1000, 0]}, "hidden", "between 1 and 65536"),
        ({"hidden": []}, "hidden", "at least 1"),
        ({"lr": -0.1}, "lr", "greater than 0"),
        ({"lr": float("nan")}, "lr", "finite number"),
        ({"momentum": 1.0}, "momentum", "less than 1"),
        ({"epochs": 0}, "epochs", "greater than or equal to 1"),
        ({"scan_layers": [3]}, "scan_layers", "0..2"),
        ({"head_layers": [1, 1]}, "head_layers", "once"),
        ({"batch_size": 60_000}, "batch_size", "50000 training images"),
        ({"negatives": "easy"}, "negatives", "'random' or 'hard'"),
        ({"jitter": 9}, "jitter", "less than or equal to 4"),
        ({"learning_rate": 0.1}, "learning_rate", "Extra inputs are not permitted"),
        ({"threshold": 3.5e38}, "threshold", "less than or equal to 1000000"),  # inf in float32
    ],
)
def test_bad_values_name_the_field_and_the_allowed_range(overrides, field, words):
    with pytest.raises(ValidationError) as caught:
        RunConfig.from_preset("reference", **overrides)
    message = format_validation_error(caught.value)
    assert field in message and words in message


def test_single_layer_needs_explicit_scan_layers():
    with pytest.raises(ValidationError, match="scan_layers"):
        RunConfig(hidden=[100])
    assert RunConfig(hidden=[100], scan_layers=[0], head_layers=[0]).scan_layer_indices == [0]


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="reference"):
        RunConfig.from_preset("fastest")


def test_parse_override_reads_json_and_rejects_unknown_keys():
    assert parse_override("hidden=[10,20]") == ("hidden", [10, 20])
    assert parse_override("negatives=hard") == ("negatives", "hard")
    with pytest.raises(ValueError, match="unknown setting"):
        parse_override("hiden=[10]")
    with pytest.raises(ValueError, match="key=value"):
        parse_override("epochs")


def test_json_round_trip():
    config = RunConfig.from_preset("paper", seed=7)
    assert RunConfig.from_json(config.to_json()) == config
