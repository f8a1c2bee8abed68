"""Training: the Forward-Forward step and the epoch loop.

Each hidden layer learns from its own loss: the logistic of (goodness - threshold) should be 1 for
positive data (image with its true label) and 0 for negative data (a wrong label). A layer's
input is the normalised output of the layer below, taken as a constant, so no gradient crosses
layers. Because every gradient is local and short, the step writes it out by hand (see
`_ff_layer_loss`): two matrix products per layer and a handful of element-wise operations, with no
autograd graph to build. tests/ffcore/test_train.py checks these gradients against autograd.

The softmax head learns from the activities of the neutral-label pass (all ten label pixels 0.1)
with a cross-entropy loss; with `negatives="hard"` its predictions also choose the wrong labels.

Evaluation is in evaluation.py; saving and resuming a Trainer's state is in checkpoint.py; drawing
hard negatives without host reads and restoring the generator on another device, in rng.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ffcore.augment import augment_styles
from ffcore.config import NUM_CLASSES, RunConfig
from ffcore.data import Dataset, flip_images, load_dataset, shift_images
from ffcore.device import resolve_device
from ffcore.evaluation import evaluate
from ffcore.model import RMS_EPS, FFNetwork, FirstLayerInput
from ffcore.rng import draw_categorical
from ffcore.throughput import Throughput

log = logging.getLogger(__name__)

MetricsCallback = Callable[[dict[str, Any]], None]


class DivergedError(RuntimeError):
    """Training produced a non-finite loss or activity: the run cannot succeed (try a lower lr)."""


@dataclass
class TrainResult:
    stopped: bool  # should_stop or max_steps ended the run before its last epoch
    epochs: int  # epochs completed
    steps: int  # optimizer steps done, over all sessions of a resumed run
    samples_per_s: float  # training throughput of this session, evaluation excluded
    wall_s: float  # wall time of this session, evaluation included
    device: str
    test_error_scan: float | None  # None when stopped early
    test_error_softmax: float | None


def lr_factor(config: RunConfig, epoch: int) -> float:
    """Learning-rate multiplier in 0-based `epoch`: held for the first half, then cooled linearly.

    The reference port's formula: 2 * (1 + epochs - epoch) / epochs after the halfway epoch.
    """
    if config.lr_schedule == "constant" or epoch <= config.epochs // 2:
        return 1.0
    return 2.0 * (1 + config.epochs - epoch) / config.epochs


def make_optimizer(
    config: RunConfig, ff_params: list[torch.nn.Parameter], head_params: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """One optimizer, two parameter groups: the FF layers (group 0) and the softmax head (group 1)."""
    groups = [
        (ff_params, config.lr, config.momentum, config.weight_decay),
        (head_params, config.head_lr, config.head_momentum, config.head_weight_decay),
    ]
    # fused: one kernel per parameter instead of a pass per operation (weight decay, momentum, update).
    if config.optimizer == "adam":
        return torch.optim.Adam(
            [{"params": p, "lr": lr, "betas": (m, 0.999), "weight_decay": wd} for p, lr, m, wd in groups],
            fused=True,
        )
    return torch.optim.SGD(
        [{"params": p, "lr": lr, "momentum": m, "weight_decay": wd} for p, lr, m, wd in groups], fused=True
    )


class Trainer:
    """Trains one FFNetwork; `fit` runs the epochs.

    ffcore.checkpoint's `save_training_state` / `load_training_state` save and rebuild a Trainer
    mid-run, so that training continues exactly as if it had never stopped.
    """

    def __init__(self, config: RunConfig, dataset: Dataset | None = None, *, log_every: int = 50):
        self.config = config
        self.device = resolve_device(config.device)
        self.data = (dataset if dataset is not None else load_dataset(config, self.device)).to(self.device)
        self.log_every = log_every

        # One generator on the training device drives data order, negatives, jitter and augmentation; weights
        # come from a CPU generator so that they are the same on every device. A training state
        # records the generator's device (see ffcore.rng for a resume on another kind).
        self.rng = torch.Generator(device=self.device)
        self.rng.manual_seed(config.seed)
        self.exact_resume = True  # False once a resume had to reseed the generator
        self.model = FFNetwork(config)
        self.model.reset_parameters(torch.Generator().manual_seed(config.seed))
        self.model.to(self.device)
        ff_params = [p for layer in self.model.layers for p in layer.parameters()]
        self.optimizer = make_optimizer(config, ff_params, [self.model.head.weight])
        self.base_lrs = [config.lr, config.head_lr]

        self.steps_per_epoch = len(self.data.train) // config.batch_size
        self.total_steps = self.steps_per_epoch * config.epochs
        # Where the run stands; with the weights, optimizer and rng, the state a checkpoint saves.
        self.epoch = 0  # epochs completed
        self.step = 0  # optimizer steps done
        self.order: torch.Tensor | None = None  # this epoch's permutation of the training set
        self.next_batch = 0  # index of this epoch's next batch in `order`
        self._sums: torch.Tensor | None = None  # metric sums since the last train record
        self._sum_steps = 0

    # --- one step ------------------------------------------------------------------------------

    @torch.no_grad()  # gradients are written by hand; autograd would only chain graphs through buffers
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch of images (pixel values in [0, 1]); returns its metrics.

        The metrics vector is [per layer: goodness_pos, goodness_neg, ff_loss, ff_accuracy] then
        [peer_loss, head_loss, head_accuracy], kept on the device (no synchronisation here).
        """
        model, batch = self.model, len(labels)
        first = model.layers[0]
        first_input = FirstLayerInput(images, first.weight)

        # Each layer sees the rows [positives; negatives; neutral]: one larger matrix product
        # serves all three passes. Hard negatives are chosen from the head's prediction on the
        # neutral pass, so that pass then runs on its own first.
        if self.config.negatives == "hard":
            z = torch.relu(first_input.neutral() + first.bias)
            features = model.head_features([z, *model.activations_above(z)])
            neutral_probs = torch.softmax(features @ model.head.weight.T, dim=1)
            negative_labels = self._negative_labels(labels, neutral_probs)
            extra_rows = []
        else:
            negative_labels = self._negative_labels(labels, None)
            extra_rows = [first_input.neutral()]
        pre = torch.cat([first_input.one_hot(labels), first_input.one_hot(negative_labels), *extra_rows])
        pre += first.bias
        targets = torch.cat(
            [torch.ones(batch, device=images.device), torch.zeros(batch, device=images.device)]
        )

        rows = 2 * batch  # the positive and negative rows; the rest (if any) is the neutral pass
        layer_metrics: list[torch.Tensor] = []
        normalized: list[torch.Tensor] = []  # each layer's RMS-normalised activity: the next one's input
        peer_loss = torch.zeros((), device=images.device)
        x_in = None  # the layer's normalised input; the first layer's comes through first_input
        for i, layer in enumerate(model.layers):
            if i > 0:
                pre = torch.addmm(layer.bias, x_in, layer.weight.T)
            z = pre.relu_()
            squares = (z * z).sum(dim=1)
            dpre, metrics, layer_peer_loss = self._ff_layer_loss(i, z[:rows], squares[:rows], targets, batch)
            if i == 0:
                grad_pos, grad_neg = dpre[:batch], dpre[batch:]
                first.weight.grad = first_input.weight_grad(grad_pos, grad_neg, labels, negative_labels)
            else:
                layer.weight.grad = dpre.T @ x_in[:rows]
            layer.bias.grad = dpre.sum(dim=0)
            layer_metrics.append(metrics)
            peer_loss = peer_loss + layer_peer_loss
            # RMS normalisation reuses the sum of squares: rms = sqrt(squares / width).
            x_in = z / ((squares / z.shape[1]).sqrt() + RMS_EPS)[:, None]
            normalized.append(x_in)

        # The softmax head learns from the neutral pass's normalised activities (the neutral rows of
        # `normalized`: the same as model.head_features, without normalising again).
        if self.config.negatives != "hard":
            features = torch.cat([normalized[i][rows:] for i in self.config.head_layer_indices], dim=1)
        logits = features @ model.head.weight.T
        probs = torch.softmax(logits, dim=1)
        onehot = F.one_hot(labels, NUM_CLASSES).to(probs.dtype)
        head_loss = F.cross_entropy(logits, labels)
        head_accuracy = (logits.argmax(dim=1) == labels).float().mean()
        model.head.weight.grad = ((probs - onehot) / batch).T @ features

        self.optimizer.step()
        return torch.cat([*layer_metrics, torch.stack([peer_loss, head_loss, head_accuracy])])

    def _ff_layer_loss(
        self, i: int, z: torch.Tensor, squares: torch.Tensor, targets: torch.Tensor, batch: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Layer i's FF loss on its activities z = [positives; negatives] (post-ReLU).

        `squares` holds each row's sum of squares. Returns the gradient of the layer's loss with
        respect to its pre-activations, the layer's metrics and its peer-normalisation loss.
        Updates the running mean activity.
        """
        config = self.config
        width = z.shape[1]
        goodness = squares if config.goodness == "sum" else squares / width
        logit = goodness - self.model.thresholds[i]
        ff_loss = F.binary_cross_entropy_with_logits(logit, targets)

        # d(mean BCE)/d(logit) = (sigmoid(logit) - target) / 2B; d(goodness)/dz = 2z (or 2z/width).
        dlogit = (torch.sigmoid(logit) - targets) / (2 * batch)
        goodness_scale = 2.0 if config.goodness == "sum" else 2.0 / width
        dz = z * (dlogit * goodness_scale)[:, None]

        # Peer normalisation: pull every unit's running mean activity on positive data towards the
        # layer's average, so that no unit stays dead or dominates.
        peer_loss = torch.zeros((), device=z.device)
        if config.peer_norm_weight > 0:
            momentum = config.peer_norm_momentum
            running_mean = self.model.running_mean(i)
            running_mean.mul_(momentum).add_(z[:batch].mean(dim=0), alpha=1 - momentum)
            deviation = running_mean - running_mean.mean()
            peer_loss = deviation.pow(2).mean()
            if config.peer_norm_style == "port":  # d(weight * peer_loss)/dz through the running mean
                scale = config.peer_norm_weight * 2 / width * (1 - momentum)
            else:  # Hinton's code: weight * deviation per example, as if the running mean were z's
                scale = config.peer_norm_weight
            dz[:batch] += deviation * (scale / batch)

        # The ReLU passes the gradient through unchanged (the reference port's "full gradient"
        # ReLU): the goodness term is zero where z is, the peer term revives dead units.
        accuracy = ((logit > 0).float() == targets).float().mean()
        metrics = torch.stack([goodness[:batch].mean(), goodness[batch:].mean(), ff_loss, accuracy])
        return dz, metrics, peer_loss

    def _negative_labels(self, labels: torch.Tensor, probs: torch.Tensor | None) -> torch.Tensor:
        """A wrong label per example: uniformly random, or drawn from the head's belief (`probs`)."""
        if self.config.negatives == "random":
            offset = torch.randint(1, NUM_CLASSES, labels.shape, generator=self.rng, device=labels.device)
            return (labels + offset) % NUM_CLASSES
        assert probs is not None
        weights = probs + 1e-12  # never an all-zero row, even when the head is certain
        weights.scatter_(1, labels[:, None], 0.0)  # (a scalar fill: no host-to-GPU copy)
        return draw_categorical(weights, self.rng)

    # --- the loop -------------------------------------------------------------------------------

    def fit(
        self,
        on_metrics: MetricsCallback | None = None,
        on_epoch_end: Callable[[Trainer], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        max_steps: int | None = None,
    ) -> TrainResult:
        """Train until the last epoch, `max_steps` optimizer steps, or `should_stop()`."""
        config = self.config
        emit = on_metrics or (lambda record: None)
        train = self.data.train
        clock = Throughput()
        stopped = False

        while self.epoch < config.epochs and not stopped:
            if self.order is None:
                self.order = torch.randperm(len(train), generator=self.rng, device=self.device)
                self.next_batch = 0
            self._apply_lr()
            clock.start_steps()
            while self.next_batch < self.steps_per_epoch:
                if (should_stop is not None and should_stop()) or (
                    max_steps is not None and self.step >= max_steps
                ):
                    stopped = True
                    break
                start = self.next_batch * config.batch_size
                index = self.order[start : start + config.batch_size]
                images, labels = train.images[index], train.labels[index]
                if config.flip:
                    images = flip_images(images, self.rng)
                if config.jitter:
                    images = shift_images(images, config.jitter, 0.0, self.rng)  # blank pixels are 0
                if config.augment == "styles":
                    images = augment_styles(images, config.augment_fraction, self.rng)
                self._accumulate(self.train_step(images, labels))
                self.next_batch += 1
                self.step += 1
                clock.add(config.batch_size)
                if self.step % self.log_every == 0:
                    emit(self._train_record(clock.interval_rate()))
            clock.stop_steps()
            self._check_finite()  # before the epoch's evaluation and checkpoint record a broken net
            if stopped:
                break
            self.epoch += 1
            self.order = None
            if self.epoch % config.eval_every == 0 or self.epoch == config.epochs:
                split = "val" if self.data.val is not None else "test"
                emit(self._eval_record(split))
            if on_epoch_end is not None:
                on_epoch_end(self)

        test_errors: dict[str, Any] = {"error_scan": None, "error_softmax": None}
        if not stopped:
            record = self._eval_record("test", final=True)
            emit(record)
            test_errors = record
        return TrainResult(
            stopped=stopped,
            epochs=self.epoch,
            steps=self.step,
            samples_per_s=clock.samples_per_s,
            wall_s=clock.wall_s,
            device=str(self.device),
            test_error_scan=test_errors["error_scan"],
            test_error_softmax=test_errors["error_softmax"],
        )

    def _apply_lr(self) -> None:
        factor = lr_factor(self.config, self.epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = base * factor

    def _accumulate(self, step_metrics: torch.Tensor) -> None:
        self._sums = step_metrics if self._sums is None else self._sums + step_metrics
        self._sum_steps += 1

    def _check_finite(self) -> None:
        """DivergedError if a step since the last check gave a NaN or an infinity (either makes the sums
        non-finite); checked where the host reads the sums anyway, so the step never waits for it."""
        if self._sums is not None and not bool(torch.isfinite(self._sums).all()):
            lr, steps = self.optimizer.param_groups[0]["lr"], self._sum_steps
            detail = f"a non-finite loss or goodness in the last {steps} steps (lr {lr:g}; try a lower one)"
            raise DivergedError(f"diverged at step {self.step}: {detail}")

    def _train_record(self, samples_per_s: float) -> dict[str, Any]:
        """Average the metrics since the last record (this is where the device synchronises)."""
        assert self._sums is not None
        self._check_finite()
        values = (self._sums / self._sum_steps).tolist()
        self._sums, self._sum_steps = None, 0
        layers = []
        for i, threshold in enumerate(self.model.thresholds):
            g_pos, g_neg, loss, accuracy = values[4 * i : 4 * i + 4]
            layers.append(
                {
                    "layer": i,
                    "goodness_pos": g_pos,
                    "goodness_neg": g_neg,
                    "threshold": threshold,
                    "ff_loss": loss,
                    "ff_accuracy": accuracy,
                }
            )
        peer_loss, head_loss, head_accuracy = values[-3:]
        return {
            "kind": "train",
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "head_lr": self.optimizer.param_groups[1]["lr"],
            "samples_per_s": samples_per_s,
            "peer_loss": peer_loss,
            "head_loss": head_loss,
            "head_accuracy": head_accuracy,
            "layers": layers,
        }

    def _eval_record(self, split: str, final: bool = False) -> dict[str, Any]:
        # The per-layer probes (ffcore.probes) ride on the evaluation's own pass: a few percent of it.
        errors = self.evaluate(split, probes=True)
        record = {"kind": "eval", "step": self.step, "epoch": self.epoch, "split": split, **errors}
        if final:
            record["final"] = True
        scan, softmax = errors["error_scan"], errors["error_softmax"]
        log.info("epoch %d %s error: scan %.4f, softmax %.4f", self.epoch, split, scan, softmax)
        return record

    def evaluate(self, split: str = "test", probes: bool = False) -> dict[str, Any]:
        """Error rates of the label scan and of the softmax head on this run's 'val' or 'test' split;
        with `probes`, also each layer's probes under 'layers' (see ffcore.probes)."""
        return evaluate(self.model, self.data.split(split), probes=probes)
