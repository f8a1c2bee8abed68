"""Evaluation: the error rates of a network's two classifiers on a data split.

The label scan predicts the label whose embedding gives the most goodness (summed over the scan
layers); the softmax head predicts from the activities of the neutral-label pass. Used by the
Trainer after each epoch and by `python -m ffcore eval`. With `probes=True` the same pass also
feeds the per-layer probes of ffcore.probes.
"""

from __future__ import annotations

from typing import Any

import torch

from ffcore.data import Split
from ffcore.model import FFNetwork
from ffcore.probes import LayerProbes


@torch.no_grad()
def evaluate(model: FFNetwork, split: Split, batch_size: int = 1000, probes: bool = False) -> dict[str, Any]:
    """{'error_scan', 'error_softmax'}: the fraction of `split` each classifier gets wrong; with
    `probes`, also 'layers': one dict per layer (see ffcore.probes.LayerProbes.result).

    The split's tensors must be on the model's device.
    """
    layer_probes = LayerProbes(model) if probes else None
    wrong_scan = wrong_softmax = 0
    for start in range(0, len(split), batch_size):
        images = split.images[start : start + batch_size]
        labels = split.labels[start : start + batch_size]
        label_goodness, head_logits = model.probe(images)
        scan = model.scan_scores(label_goodness).argmax(dim=1)
        softmax = head_logits.argmax(dim=1)
        wrong_scan += int((scan != labels).sum())
        wrong_softmax += int((softmax != labels).sum())
        if layer_probes is not None:
            layer_probes.add(images, labels, label_goodness)
    errors: dict[str, Any] = {
        "error_scan": wrong_scan / len(split),
        "error_softmax": wrong_softmax / len(split),
    }
    if layer_probes is not None:
        errors["layers"] = layer_probes.result()
    return errors
