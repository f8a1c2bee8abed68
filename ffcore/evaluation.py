"""Evaluation: the error rates of a network's two classifiers on a data split.

The label scan predicts the label whose embedding gives the most goodness (summed over the scan
layers); the softmax head predicts from the activities of the neutral-label pass. Used by the
Trainer after each epoch and by `python -m ffcore eval`.
"""

from __future__ import annotations

import torch

from ffcore.data import Split
from ffcore.model import FFNetwork


@torch.no_grad()
def evaluate(model: FFNetwork, split: Split, batch_size: int = 1000) -> dict[str, float]:
    """{'error_scan', 'error_softmax'}: the fraction of `split` each classifier gets wrong.

    The split's tensors must be on the model's device.
    """
    wrong_scan = wrong_softmax = 0
    for start in range(0, len(split), batch_size):
        images = split.images[start : start + batch_size]
        labels = split.labels[start : start + batch_size]
        label_goodness, head_logits = model.probe(images)
        scan = model.scan_scores(label_goodness).argmax(dim=1)
        softmax = head_logits.argmax(dim=1)
        wrong_scan += int((scan != labels).sum())
        wrong_softmax += int((softmax != labels).sum())
    return {"error_scan": wrong_scan / len(split), "error_softmax": wrong_softmax / len(split)}
