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

from ffcore.config import NUM_CLASSES, NUM_PIXELS, RunConfig

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


class FirstLayerInput:
    """The first layer's pre-activations (bias excluded) for a batch of images under any label.

    The neutral, positive and negative inputs of an image differ only in the ten label pixels, and
    all one-hot inputs share their RMS (one label pixel is 1, nine are 0). So
    W (x_blank + label) / rms = (W x_blank + W[:, :10] label) / rms, and the product with the image
    part, the only large one, is computed once for every label. tests/ffcore/test_model.py checks
    each method against embedding the labels explicitly.
    """

    def __init__(self, images: torch.Tensor, weight: torch.Tensor):
        self.blank = images.clone()
        self.blank[:, :NUM_CLASSES] = 0.0
        squares = self.blank.pow(2).sum(dim=1)
        self.rms_one_hot = ((squares + 1.0) / NUM_PIXELS).sqrt() + RMS_EPS
        neutral_squares = NUM_CLASSES * NEUTRAL_LABEL_VALUE**2
        self.rms_neutral = ((squares + neutral_squares) / NUM_PIXELS).sqrt() + RMS_EPS
        self.shared = self.blank @ weight.T  # (N, H)
        self.label_columns = weight[:, :NUM_CLASSES].T  # (10, H): what each label pixel adds

    def one_hot(self, labels: torch.Tensor) -> torch.Tensor:
        """(N, H) for each image with its label in `labels`."""
        return (self.shared + self.label_columns[labels]) / self.rms_one_hot[:, None]

    def every_label(self) -> torch.Tensor:
        """(N, 10, H): each image under each of the ten labels."""
        return (self.shared[:, None, :] + self.label_columns[None, :, :]) / self.rms_one_hot[:, None, None]

    def neutral(self) -> torch.Tensor:
        """(N, H) for each image with the neutral label."""
        neutral_column = NEUTRAL_LABEL_VALUE * self.label_columns.sum(dim=0)
        return (self.shared + neutral_column) / self.rms_neutral[:, None]

    def weight_grad(
        self,
        grad_pos: torch.Tensor,
        grad_neg: torch.Tensor,
        labels: torch.Tensor,
        negative_labels: torch.Tensor,
    ) -> torch.Tensor:
        """dL/dW given dL/d(pre-activation) of the positive and the negative inputs of each image."""
        scaled_pos = grad_pos / self.rms_one_hot[:, None]
        scaled_neg = grad_neg / self.rms_one_hot[:, None]
        grad = (scaled_pos + scaled_neg).T @ self.blank  # one product for both passes
        onehot_pos = torch.nn.functional.one_hot(labels, NUM_CLASSES).to(grad.dtype)
        onehot_neg = torch.nn.functional.one_hot(negative_labels, NUM_CLASSES).to(grad.dtype)
        grad[:, :NUM_CLASSES] += scaled_pos.T @ onehot_pos + scaled_neg.T @ onehot_neg
        return grad


class FFNetwork(nn.Module):
    """Hidden layers trained by Forward-Forward plus a linear softmax head."""

    def __init__(self, config: RunConfig):
        super().__init__()
        self.config = config
        widths = [NUM_PIXELS, *config.hidden]
        self.layers = nn.ModuleList(nn.Linear(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True))
        head_inputs = sum(config.hidden[i] for i in config.head_layer_indices)
        self.head = nn.Linear(head_inputs, NUM_CLASSES, bias=False)
        # Peer normalisation: a running mean of each unit's activity on positive data. It starts at
        # 0.5 as in the reference port, so the first steps do not read every unit as dead.
        for i, width in enumerate(config.hidden):
            self.register_buffer(f"running_mean_{i}", torch.full((width,), 0.5))
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
    def activations_above(self, z: torch.Tensor) -> list[torch.Tensor]:
        """Post-ReLU activities of the layers above the first, given the first layer's activity."""
        out = []
        for layer in self.layers[1:]:
            z = torch.relu(layer(rms_normalize(z)))
            out.append(z)
        return out

    @torch.no_grad()
    def probe(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Goodness (N, 10 labels, L layers) under every label and the softmax head's logits (N, 10).

        Both come from one pass over images (N, 784): each layer takes the ten labelled inputs and
        the neutral one of every image as one matrix of 11N rows, so its weights are read from
        memory once (small prediction batches are bound by that read, not by arithmetic). The first
        layer shares its large product between all eleven (see FirstLayerInput).
        """
        n, labelled = len(images), len(images) * NUM_CLASSES
        first = self.layers[0]
        first_input = FirstLayerInput(images, first.weight)
        pre = torch.cat([first_input.every_label().reshape(labelled, -1), first_input.neutral()])
        z = torch.relu(pre + first.bias)
        activities = [z, *self.activations_above(z)]
        per_layer = [goodness(a[:labelled], self.config.goodness) for a in activities]
        label_goodness = torch.stack(per_layer, dim=1).view(n, NUM_CLASSES, len(self.layers))
        head_logits = self.head(self.head_features([a[labelled:] for a in activities]))
        return label_goodness, head_logits

    def scan_scores(self, label_goodness: torch.Tensor) -> torch.Tensor:
        """Goodness summed over the scan layers: (N, 10); the label scan takes its argmax."""
        return label_goodness[:, :, self.config.scan_layer_indices].sum(dim=2)


@dataclass
class Prediction:
    """Both classifiers' answers for N images. The same names are used by the CLI and the REST API."""

    goodness: np.ndarray  # (N, 10 labels, L layers)
    scan_scores: np.ndarray  # (N, 10): goodness summed over the scan layers
    scan_label: np.ndarray  # (N,): the label scan's prediction
    head_probs: np.ndarray  # (N, 10): the softmax head's probabilities

    @property
    def head_label(self) -> np.ndarray:
        """(N,): the softmax head's prediction."""
        return self.head_probs.argmax(axis=1)


@torch.no_grad()
def predict(model: FFNetwork, images: np.ndarray | torch.Tensor, batch_size: int = 1000) -> Prediction:
    """Predict digits from raw pixel values in [0, 1], shaped (N, 28, 28) or (N, 784)."""
    pixels = torch.as_tensor(np.asarray(images, dtype=np.float32) if not torch.is_tensor(images) else images)
    pixels = pixels.reshape(len(pixels), NUM_PIXELS).float()
    device = next(model.parameters()).device
    parts: dict[str, list[torch.Tensor]] = {"goodness": [], "scores": [], "probs": []}
    for start in range(0, len(pixels), batch_size):
        batch = pixels[start : start + batch_size].to(device)
        label_goodness, head_logits = model.probe(batch)
        parts["goodness"].append(label_goodness)
        parts["scores"].append(model.scan_scores(label_goodness))
        parts["probs"].append(torch.softmax(head_logits, dim=1))
    good, scores, probs = (torch.cat(parts[k]).cpu().numpy() for k in ("goodness", "scores", "probs"))
    return Prediction(goodness=good, scan_scores=scores, scan_label=scores.argmax(axis=1), head_probs=probs)
