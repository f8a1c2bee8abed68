"""The Forward-Forward network: layers, label embedding, goodness, label scan and softmax head.

A network is a stack of fully connected ReLU layers. The input is an image whose first 10 pixels
are replaced by a label: one-hot for a positive (true label) or negative (wrong label) example,
ten entries of 0.1 for the neutral label. Every layer's input is RMS-normalised, so a layer only
passes on the direction of the activity vector below, not its length (the goodness).

This file holds the forward computations used for inference; the training math lives in train.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ffcore.config import NUM_CLASSES, RunConfig
from ffcore.data import NUM_PIXELS, standardise

NEUTRAL_LABEL_VALUE = 1.0 / NUM_CLASSES
RMS_EPS = 1e-8


def rms_normalize(z: torch.Tensor) -> torch.Tensor:
    """Divide each row by its root mean square (the reference port's 'layer norm')."""
    return z / (z.pow(2).mean(dim=1, keepdim=True).sqrt() + RMS_EPS)


def embed_labels(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Images (N, 784) with their first 10 pixels replaced by the one-hot `labels` (N,)."""
    x = images.clone()
    x[:, :NUM_CLASSES] = 0.0
    x[torch.arange(len(labels), device=images.device), labels] = 1.0
    return x


def embed_neutral(images: torch.Tensor) -> torch.Tensor:
    """Images (N, 784) with their first 10 pixels set to the neutral label (all 0.1)."""
    x = images.clone()
    x[:, :NUM_CLASSES] = NEUTRAL_LABEL_VALUE
    return x


def goodness(z: torch.Tensor, kind: str) -> torch.Tensor:
    """Goodness of each row of activities: the sum or the mean of the squares."""
    squares = z.pow(2)
    return squares.sum(dim=1) if kind == "sum" else squares.mean(dim=1)


class FFNetwork(nn.Module):
    """Hidden layers trained by Forward-Forward plus a linear softmax head."""

    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config
        widths = [NUM_PIXELS, *config.hidden]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True))
        head_inputs = sum(config.hidden[i] for i in config.head_layer_indices)
        self.head = nn.Linear(head_inputs, NUM_CLASSES, bias=False)
        # Peer normalisation: a running mean of each unit's activity on positive data.
        for i, width in enumerate(config.hidden):
            self.register_buffer(f"running_mean_{i}", torch.zeros(width))
        self.thresholds = [config.layer_threshold(w) for w in config.hidden]

    def reset_parameters(self, generator: torch.Generator) -> None:
        """The reference port's initialisation: N(0, 1/sqrt(fan_out)) weights, zero biases and head."""
        with torch.no_grad():
            for layer in self.layers:
                std = 1.0 / math.sqrt(layer.weight.shape[0])
                layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * std)
                layer.bias.zero_()
            self.head.weight.zero_()

    def running_mean(self, i: int) -> torch.Tensor:
        return getattr(self, f"running_mean_{i}")

    @torch.no_grad()
    def activations(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Post-ReLU activities of every layer for label-embedded inputs x (N, 784)."""
        out = []
        z = x
        for layer in self.layers:
            z = torch.relu(layer(rms_normalize(z)))
            out.append(z)
        return out

    def head_features(self, activities: list[torch.Tensor]) -> torch.Tensor:
        """The softmax head's input: the normalised activities of the head layers, side by side."""
        return torch.cat([rms_normalize(activities[i]) for i in self.config.head_layer_indices], dim=1)

    @torch.no_grad()
    def label_goodness(self, images: torch.Tensor) -> torch.Tensor:
        """Goodness (N, 10 labels, L layers) of standardised images (N, 784) under every label.

        One batched pass for all ten labels. The first layer is computed once per image: the ten
        inputs differ only in the one-hot pixels and share their RMS (one pixel is 1, nine are 0),
        so W(x + e_k)/rms = (Wx + W[:, k])/rms. tests/ffcore/test_model.py checks it against
        embedding every label explicitly.
        """
        n = len(images)
        first = self.layers[0]
        blank = images.clone()
        blank[:, :NUM_CLASSES] = 0.0
        rms = ((blank.pow(2).sum(dim=1) + 1.0) / NUM_PIXELS).sqrt() + RMS_EPS  # (N,)
        shared = blank @ first.weight.T  # (N, H)
        label_columns = first.weight[:, :NUM_CLASSES].T  # (10, H)
        pre = (shared[:, None, :] + label_columns[None, :, :]) / rms[:, None, None] + first.bias
        z = torch.relu(pre).reshape(n * NUM_CLASSES, -1)
        per_layer = [goodness(z, self.config.goodness)]
        for layer in self.layers[1:]:
            z = torch.relu(layer(rms_normalize(z)))
            per_layer.append(goodness(z, self.config.goodness))
        return torch.stack(per_layer, dim=1).view(n, NUM_CLASSES, len(self.layers))

    @torch.no_grad()
    def label_goodness_explicit(self, images: torch.Tensor) -> torch.Tensor:
        """`label_goodness` the obvious way, embedding each label (kept as its test oracle)."""
        n = len(images)
        labels = torch.arange(NUM_CLASSES, device=images.device).repeat(n)
        x = embed_labels(images.repeat_interleave(NUM_CLASSES, dim=0), labels)
        per_layer = [goodness(z, self.config.goodness) for z in self.activations(x)]
        return torch.stack(per_layer, dim=1).view(n, NUM_CLASSES, len(self.layers))

    def scan_scores(self, label_goodness: torch.Tensor) -> torch.Tensor:
        """Goodness summed over the scan layers: (N, 10); the label scan takes its argmax."""
        return label_goodness[:, :, self.config.scan_layer_indices].sum(dim=2)

    @torch.no_grad()
    def head_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The softmax head's logits (N, 10) on the neutral-label pass of standardised images."""
        return self.head(self.head_features(self.activations(embed_neutral(images))))


@dataclass
class Prediction:
    goodness: np.ndarray  # (N, 10 labels, L layers)
    scan_scores: np.ndarray  # (N, 10): goodness summed over the scan layers
    scan_label: np.ndarray  # (N,): the label scan's prediction
    head_probs: np.ndarray  # (N, 10): the softmax head's probabilities


@torch.no_grad()
def predict(model: FFNetwork, images: np.ndarray | torch.Tensor, batch_size: int = 1000) -> Prediction:
    """Predict digits from raw pixel values in [0, 1], shaped (N, 28, 28) or (N, 784)."""
    pixels = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images)
    pixels = pixels.reshape(len(pixels), NUM_PIXELS).float()
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {"goodness": [], "scores": [], "probs": []}
    for start in range(0, len(pixels), batch_size):
        batch = standardise(pixels[start : start + batch_size].to(device), model.config.dataset)
        label_goodness = model.label_goodness(batch)
        parts["goodness"].append(label_goodness)
        parts["scores"].append(model.scan_scores(label_goodness))
        parts["probs"].append(torch.softmax(model.head_logits(batch), dim=1))
    good, scores, probs = (torch.cat(parts[k]).cpu().numpy() for k in ("goodness", "scores", "probs"))
    return Prediction(goodness=good, scan_scores=scores, scan_label=scores.argmax(axis=1), head_probs=probs)
