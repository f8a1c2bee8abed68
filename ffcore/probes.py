"""Probes: what each layer of a trained network has learned, beyond the two classifiers' errors.

Recorded at every evaluation (see ffcore.evaluation.evaluate with `probes=True`):

- each layer's own label scan: the label whose embedding gives that layer alone the most goodness;
- the spread of positive goodness (under the true label) and of negative goodness (under each wrong
  label) per layer, as quantiles, to see the margin around the layer's threshold, not only the means;
- a linear probe per layer: a least-squares (ridge) classifier on the layer's activities under the
  neutral label, fitted on one half of the evaluated images and scored on the other, both ways.

And, from the model alone, the first layer's receptive fields: each unit's 784 input weights as a
28 x 28 image (the ten label pixels are the first ten of its top row), as arrays or a PNG grid.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
from PIL import Image

from ffcore.config import NUM_CLASSES
from ffcore.model import FFNetwork, embed_neutral

# The quantiles kept of each layer's positive and negative goodness.
QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
# The linear probe uses at most this many images of the evaluated split (half to fit, half to score,
# both ways): its error is good to about half a point, and it costs about 1% of a training epoch
# (bench/probe_overhead.py).
PROBE_IMAGES = 2000
# Ridge strength, relative to the mean squared norm of a layer's centred activities (the trace of
# its Gram matrix per image: scale-free, and the same in both forms of the solve).
PROBE_RIDGE = 1e-2
IMAGE_SIDE = 28


class LayerProbes:
    """Accumulates, batch by batch of one evaluation, what the probes need; `result()` summarises."""

    def __init__(self, model: FFNetwork):
        self.model = model
        self.layers = len(model.layers)
        self.wrong = [0] * self.layers
        self.count = 0
        self.positive: list[list[torch.Tensor]] = [[] for _ in range(self.layers)]
        self.negative: list[list[torch.Tensor]] = [[] for _ in range(self.layers)]
        self.activities: list[list[torch.Tensor]] = [[] for _ in range(self.layers)]
        self.probe_labels: list[torch.Tensor] = []
        self.probe_count = 0

    def add(self, images: torch.Tensor, labels: torch.Tensor, label_goodness: torch.Tensor) -> None:
        """One batch: its images (N, 784), true labels (N,) and goodness (N, 10 labels, L layers)."""
        n = len(labels)
        self.count += n
        true = torch.nn.functional.one_hot(labels, NUM_CLASSES).bool()
        for i in range(self.layers):
            per_label = label_goodness[:, :, i]
            self.wrong[i] += int((per_label.argmax(dim=1) != labels).sum())
            self.positive[i].append(per_label[true].float().cpu())
            self.negative[i].append(per_label[~true].float().cpu())
        take = min(n, PROBE_IMAGES - self.probe_count)
        if take > 0:
            for i, activity in enumerate(self.model.activations(embed_neutral(images[:take]))):
                self.activities[i].append(activity.float().cpu())
            self.probe_labels.append(labels[:take].cpu())
            self.probe_count += take

    def result(self) -> list[dict]:
        """Per layer, one flat dict (a CSV row's worth, like a train record's layers): `layer`,
        `error_scan` (its own label scan), `error_probe` (the linear probe; None with fewer than 20
        images), `goodness_pos_q05` ... `goodness_pos_q95` and `goodness_neg_q05` ... (quantiles of
        the goodness under the true label and under every wrong one), and its `threshold`."""
        labels = torch.cat(self.probe_labels) if self.probe_labels else torch.zeros(0, dtype=torch.long)
        out = []
        for i in range(self.layers):
            probe = linear_probe_error(torch.cat(self.activities[i]), labels) if len(labels) >= 20 else None
            out.append(
                {
                    "layer": i,
                    "error_scan": self.wrong[i] / max(self.count, 1),
                    "error_probe": probe,
                    **quantiles(torch.cat(self.positive[i]), "goodness_pos"),
                    **quantiles(torch.cat(self.negative[i]), "goodness_neg"),
                    "threshold": self.model.thresholds[i],
                }
            )
        return out


def quantile_names(prefix: str) -> list[str]:
    """['PREFIX_q05', ..., 'PREFIX_q95']."""
    return [f"{prefix}_q{round(q * 100):02d}" for q in QUANTILES]


def quantiles(values: torch.Tensor, prefix: str) -> dict[str, float]:
    """{'PREFIX_q05': ..., 'PREFIX_q95': ...} of a 1-D tensor."""
    qs = torch.quantile(values.double(), torch.tensor(QUANTILES, dtype=torch.float64))
    return {name: float(v) for name, v in zip(quantile_names(prefix), qs, strict=True)}


def linear_probe_error(features: torch.Tensor, labels: torch.Tensor) -> float:
    """The error of a ridge least-squares classifier on `features` (N, D), two-fold: fitted on the
    even-numbered images and scored on the odd ones, then the other way round.

    Solved in whichever form is smaller: D x D (the features' Gram matrix) or, for layers wider
    than the images fitted on, n x n (the images' kernel; the same ridge solution)."""
    x = features.float()
    targets = torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
    wrong = 0
    for fit, score in ((slice(0, None, 2), slice(1, None, 2)), (slice(1, None, 2), slice(0, None, 2))):
        x_fit, y_fit = x[fit], targets[fit]
        mean_x, mean_y = x_fit.mean(dim=0), y_fit.mean(dim=0)
        centred, y_centred = x_fit - mean_x, y_fit - mean_y
        ridge = PROBE_RIDGE * max(float(centred.pow(2).sum(dim=1).mean()), 1e-12)
        x_score = x[score] - mean_x
        if centred.shape[1] <= centred.shape[0]:
            gram = centred.T @ centred
            gram.diagonal().add_(ridge)
            scores = x_score @ torch.linalg.solve(gram, centred.T @ y_centred)
        else:
            kernel = centred @ centred.T
            kernel.diagonal().add_(ridge)
            scores = (x_score @ centred.T) @ torch.linalg.solve(kernel, y_centred)
        wrong += int(((scores + mean_y).argmax(dim=1) != labels[score]).sum())
    return wrong / len(labels)


def receptive_fields(model: FFNetwork, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first layer's units' input weights as (U, 28, 28) images, U = `count` units (all by
    default) ordered by the size of their weights, largest first, and those units' indices."""
    weight = model.layers[0].weight.detach().float().cpu()
    order = weight.norm(dim=1).argsort(descending=True)
    if count is not None:
        order = order[:count]
    fields = weight[order].reshape(len(order), IMAGE_SIDE, IMAGE_SIDE).numpy()
    return fields, order.numpy()


def fields_grid_png(fields: np.ndarray, scale: int = 3, gap: int = 2) -> bytes:
    """A PNG of the fields in a near-square grid, each field scaled to its own largest weight:
    positive weights red, negative blue, zero white (the label pixels are the top row's first ten)."""
    count = len(fields)
    columns = max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    cell = IMAGE_SIDE * scale
    canvas = np.full((rows * (cell + gap) + gap, columns * (cell + gap) + gap, 3), 255, dtype=np.uint8)
    for k, field in enumerate(fields):
        limit = float(np.abs(field).max()) or 1.0
        v = np.clip(field / limit, -1.0, 1.0)
        # Diverging map: white at 0, towards red (positive) or blue (negative).
        rgb = np.stack([1.0 - np.clip(-v, 0, 1), 1.0 - np.abs(v), 1.0 - np.clip(v, 0, 1)], axis=-1)
        tile = np.kron((rgb * 255).round().astype(np.uint8), np.ones((scale, scale, 1), dtype=np.uint8))
        top, left = gap + (k // columns) * (cell + gap), gap + (k % columns) * (cell + gap)
        canvas[top : top + cell, left : left + cell] = tile
    buffer = io.BytesIO()
    Image.fromarray(canvas).save(buffer, format="PNG")
    return buffer.getvalue()
