"""The run configuration: one flat pydantic model shared by the CLI, the API and the worker.

Every knob of a Forward-Forward run lives here. Presets are named sets of overrides on top of the
defaults; `RunConfig.from_preset("reference", epochs=10)` builds one.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

NUM_CLASSES = 10
IMAGE_SIZE = 28  # MNIST and Fashion-MNIST images are IMAGE_SIZE x IMAGE_SIZE grey pixels
NUM_PIXELS = IMAGE_SIZE * IMAGE_SIZE
# The ten classes of each data set, by label index (Fashion-MNIST's as its authors name them).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(NUM_CLASSES)),
    "fashion-mnist": (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
    ),
}  # fmt: skip


class RunConfig(BaseModel):
    """Everything that decides what a Forward-Forward training run does."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)

    # Data
    dataset: Literal["mnist", "fashion-mnist"] = Field(
        "mnist", description="Which 28x28 ten-class data set to train on."
    )
    data_dir: str | None = Field(
        None,
        description="A torchvision root holding MNIST/raw (or FashionMNIST/raw). "
        "None: download into the user cache directory.",
    )
    validation: Literal["holdout", "none"] = Field(
        "holdout",
        description="'holdout': train on the first 50,000 training images and validate on the "
        "last 10,000 (as the reference implementations do); 'none': train on all 60,000 and "
        "evaluate on the test set during training.",
    )
    jitter: int = Field(
        0, ge=0, le=4, description="Augmentation: shift each training image by up to this many pixels."
    )
    flip: bool = Field(
        False,
        description="Augmentation: mirror each training image left to right with probability 1/2. For "
        "data sets whose classes look alike in a mirror, as Fashion-MNIST's garments; a mirrored digit "
        "is another shape, so leave it off for MNIST. The label pixels are embedded afterwards.",
    )
    augment: Literal["none", "styles"] = Field(
        "none",
        description="Augmentation of handwriting styles: 'styles' redraws a fraction (augment_fraction) of "
        "each training batch, on the training device, each image with its own random stroke thickness "
        "(dilation or erosion), blur, resolution loss, slant, rotation and width, refitted into MNIST's "
        "20-pixel box as preprocessing does and then scaled and shifted a little: as people's pictures of "
        "digits look after preprocessing (see ffcore/augment.py). The label pixels are embedded "
        "afterwards. 'none': the images as the data set has them (no cost).",
    )
    augment_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="With augment='styles': the fraction of each training batch that is restyled, on "
        "average (the rest stays as the data set has it). Ignored with augment='none'.",
    )

    # Network
    hidden: list[int] = Field(
        [1000, 1000, 1000],
        min_length=1,
        max_length=16,
        description="Widths of the hidden layers, first to last.",
    )
    goodness: Literal["sum", "mean"] = Field(
        "sum", description="A layer's goodness: the sum or the mean of its squared activities."
    )
    threshold: float | None = Field(
        None,
        gt=0,
        # A layer's goodness must be able to reach it in 32-bit floats: far above any width, far below
        # float32's overflow (beyond it a run can only end as diverged).
        le=1e6,
        description="Goodness threshold of every layer, at most 1e6. None: the layer's width for 'sum' "
        "goodness and 1 for 'mean' (mean squared activity 1 either way).",
    )
    negatives: Literal["random", "hard"] = Field(
        "hard",
        description="Negative labels: 'random' draws a uniformly random wrong label; 'hard' draws "
        "from the softmax head's prediction on the neutral-label pass with the true label excluded.",
    )
    scan_layers: list[int] | None = Field(
        None,
        description="0-based hidden layers whose goodness the label scan sums. None: all but the first.",
    )
    head_layers: list[int] | None = Field(
        None,
        description="0-based hidden layers whose activities feed the softmax head. None: all but the first.",
    )
    peer_norm_weight: float = Field(
        0.03, ge=0, le=10, description="Weight of the peer-normalization loss (0 turns it off)."
    )
    peer_norm_momentum: float = Field(
        0.9, ge=0, lt=1, description="Momentum of the running mean activity per unit."
    )
    peer_norm_style: Literal["port", "hinton"] = Field(
        "port",
        description="How peer normalization pulls each unit's running mean activity towards its "
        "layer's average. 'port': the PyTorch port's loss, weight x mean squared deviation, "
        "differentiated through the running mean (a gentle pull that shrinks with the layer's "
        "width); 'hinton': Hinton's Matlab code, which adds weight x deviation straight to every "
        "positive example's gradient (about 5,000 times stronger on 1000-wide layers).",
    )

    # Optimisation
    epochs: int = Field(100, ge=1, le=10_000, description="Passes over the training set.")
    batch_size: int = Field(100, ge=1, le=60_000, description="Positive examples per step.")
    optimizer: Literal["sgd", "adam"] = Field(
        "sgd",
        description="Optimizer of the FF layers and the head: SGD with momentum (the references) "
        "or Adam (momentum is then Adam's beta1).",
    )
    lr: float = Field(1e-3, gt=0, le=10, description="Learning rate of the FF layers.")
    momentum: float = Field(0.9, ge=0, lt=1, description="Momentum (Adam: beta1) of the FF layers.")
    weight_decay: float = Field(
        1e-3,
        ge=0,
        le=1,
        description="Weight decay of the FF layers, in PyTorch's form (added to the gradient before "
        "the momentum). 1e-3 is Hinton's Matlab code's weight cost; the PyTorch port used 3e-4.",
    )
    head_lr: float = Field(1e-2, gt=0, le=10, description="Learning rate of the softmax head.")
    head_momentum: float = Field(0.9, ge=0, lt=1, description="Momentum (Adam: beta1) of the softmax head.")
    head_weight_decay: float = Field(3e-3, ge=0, le=1, description="Weight decay of the softmax head.")
    lr_schedule: Literal["constant", "linear_cooldown"] = Field(
        "linear_cooldown",
        description="'linear_cooldown': hold the learning rates for the first half of the epochs, "
        "then cool them linearly towards 0; 'constant': never change them.",
    )

    # Bookkeeping
    eval_every: int = Field(
        1, ge=1, le=10_000, description="Evaluate (label scan and softmax head) every N epochs."
    )
    seed: int = Field(0, ge=0, le=2**63 - 1, description="Seed of weights, data order and negatives.")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where to train: 'auto' takes the GPU when there is one."
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> RunConfig:
        for width in self.hidden:
            if not 1 <= width <= 65_536:
                raise ValueError(f"hidden: every width must be between 1 and 65536, got {width}")
        n = len(self.hidden)
        for name in ("scan_layers", "head_layers"):
            layers = getattr(self, name)
            if layers is None:
                if n < 2:
                    raise ValueError(
                        f"{name}: with a single hidden layer the default (all but the first) is "
                        f"empty; set {name}=[0] or add layers"
                    )
                continue
            if not layers:
                raise ValueError(f"{name}: name at least one layer, or leave it unset")
            bad = [i for i in layers if not 0 <= i < n]
            if bad:
                raise ValueError(f"{name}: layers {bad} do not exist; allowed are 0..{n - 1}")
            if len(set(layers)) != len(layers):
                raise ValueError(f"{name}: each layer may appear once, got {layers}")
        train_size = 60_000 if self.validation == "none" else 50_000
        if self.batch_size > train_size:
            raise ValueError(f"batch_size: {self.batch_size} exceeds the {train_size} training images")
        return self

    # Derived values, so that no caller recomputes them differently.
    @property
    def class_names(self) -> tuple[str, ...]:
        """The names of the data set's ten classes, by label index."""
        return CLASS_NAMES[self.dataset]

    @property
    def scan_layer_indices(self) -> list[int]:
        return self.scan_layers if self.scan_layers is not None else list(range(1, len(self.hidden)))

    @property
    def head_layer_indices(self) -> list[int]:
        return self.head_layers if self.head_layers is not None else list(range(1, len(self.hidden)))

    def layer_threshold(self, width: int) -> float:
        if self.threshold is not None:
            return self.threshold
        return float(width) if self.goodness == "sum" else 1.0

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> RunConfig:
        """The preset's configuration with `overrides` applied on top (validated together)."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        return cls(**{**PRESETS[preset], **overrides})

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        return cls.model_validate(json.loads(text))


# Presets. The error rates behind each choice, and the runs they come from, are in
# docs/results/NOTEBOOK.md.
#
# Hinton's Matlab code's recipe (hard negatives, his weight decay of 1e-5 a step): the defaults above.
REFERENCE: dict[str, Any] = {}

PRESETS: dict[str, dict[str, Any]] = {
    "reference": REFERENCE,
    # The paper's best supervised MNIST setting (section 3.3), learning rates scaled down to its wider layers.
    "paper": {
        "hidden": [2000, 2000, 2000, 2000],
        "epochs": 60,
        "negatives": "hard",
        "lr": 2.5e-4,
        "head_lr": 3e-3,
        "weight_decay": 3e-4,
    },
    # A small, fast network for demos and tests: Adam learns in few epochs what SGD needs dozens for.
    # Chosen on validation error over three seeds (docs/results/experiment_quick_*.json): hard
    # negatives and an FF learning rate of 2e-3 bring both heads under 5% in three epochs.
    "quick": {
        "hidden": [500, 500],
        "epochs": 3,
        "negatives": "hard",
        "optimizer": "adam",
        "lr": 2e-3,
        "head_lr": 3e-3,
        "weight_decay": 0.0,
        "head_weight_decay": 0.0,
        "lr_schedule": "constant",
        "scan_layers": [0, 1],
        "head_layers": [0, 1],
    },
    # Fashion-MNIST: the reference network and recipe on mirrored pictures for 200 epochs. Chosen on
    # validation error: FF learning rate 1e-3 over 3e-4 and 3e-3 (3e-3 collapses) at 40 epochs, then 100
    # epochs over 40 and over 100 with one-pixel jitter (docs/results/experiment_fashion*.json); then
    # mirrored pictures over none: 10.46% / 11.09% validation error against 10.74% / 11.03%
    # (experiment_fashion_flip.json); then 200 epochs over 100: 10.23% / 10.80%
    # (experiment_fashion_200.json), 77 minutes a run on 50k on one CPU thread, two side by side. On all
    # 60k: 10.50% ± 0.13 / 11.09% ± 0.06 test error over two seeds (experiment_fashion_200_60k.json).
    "fashion": {**REFERENCE, "dataset": "fashion-mnist", "epochs": 200, "flip": True},
    # Augmented MNIST: the reference recipe for 150 epochs on pictures shifted by up to two pixels (as the
    # paper's 0.64% run) and, for half of each batch, restyled (ffcore/augment.py). Chosen on validation
    # error over shifts alone (docs/results/experiment_jitter_select.json): 0.78% / 1.10% against 0.85% /
    # 1.27% at 150 epochs (on all 60k: 0.72% ± 0.04 / 1.10% ± 0.09 test error over two seeds,
    # experiment_jitter_60k.json); then 300 epochs over 150: 0.58% / 0.82% (seed 0, 50k,
    # experiment_jitter_300.json), 105 minutes a run on 50k on one CPU thread. On all 60k: 0.60% ± 0.12 /
    # 0.81% ± 0.01 test error over two seeds (experiment_jitter_300_60k.json), 87 minutes a run.
    "jitter": {**REFERENCE, "jitter": 2, "augment": "styles", "epochs": 300},
}
# What the CLI and POST /runs start from when no preset is named.
DEFAULT_PRESET = "reference"


class RunRequestError(ValueError):
    """A request's `preset`, `overrides` or `config` do not make a run configuration.

    `part` names what is wrong ('preset', 'overrides', or '' for the request as a whole), so that
    each caller can say where in its own input (the API's body, an experiment's base) the problem is.
    """

    def __init__(self, part: str, message: str):
        super().__init__(f"{part}: {message}" if part else message)
        self.part = part
        self.message = message


def resolve_run_config(
    preset: str | None, overrides: dict[str, Any] | None, config: RunConfig | None
) -> tuple[RunConfig, str | None]:
    """The configuration a request names, and its preset (None for a full config).

    A request gives a full `config`, or a `preset` (default DEFAULT_PRESET) with `overrides` on top:
    POST /runs and an experiment's base both ask this way. Raises RunRequestError for the request's
    shape, and pydantic's ValidationError for values RunConfig refuses.
    """
    if config is not None:
        if preset is not None or overrides is not None:
            raise RunRequestError("", "give either `config` or `preset` with `overrides`, not both")
        return config, None
    preset = DEFAULT_PRESET if preset is None else preset
    if preset not in PRESETS:
        raise RunRequestError("preset", f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    unknown = [key for key in overrides or {} if key not in RunConfig.model_fields]
    if unknown:
        what = "is not a run setting" if len(unknown) == 1 else "are not run settings"
        raise RunRequestError(
            "overrides",
            f"{', '.join(map(repr, unknown))} {what}; the settings: {', '.join(RunConfig.model_fields)}",
        )
    return RunConfig.model_validate({**PRESETS[preset], **(overrides or {})}), preset


def format_validation_error(error: ValidationError) -> str:
    """One readable line per problem: 'field: message'."""
    lines = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "config"
        lines.append(f"{field}: {item['msg']}")
    return "; ".join(lines)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse a CLI `key=value` override; the value is read as JSON when it parses, else as a string."""
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if key not in RunConfig.model_fields:
        raise ValueError(f"unknown setting {key!r}; known: {', '.join(RunConfig.model_fields)}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value
