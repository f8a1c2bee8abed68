"""The training generator: categorical draws without host reads, and restoring a saved generator.

A Trainer's generator lives on its training device. A CPU generator's state (Mersenne Twister,
5,056 bytes) and a CUDA generator's (Philox seed and offset, 16 bytes) cannot stand in for each
other, so a training state moved to the other kind of device restarts the stream from a seed
derived from the run's seed and step: the run goes on deterministically, but no longer exactly as
it would have gone uninterrupted.
"""

from __future__ import annotations

import hashlib
import logging

import torch

log = logging.getLogger(__name__)

CUDA_STATE_BYTES = 16  # torch.cuda's Philox generator: seed and offset, 8 bytes each


def draw_categorical(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One column index per row of non-negative `weights` (N, K), with probability proportional to weight.

    The CPU keeps torch.multinomial, so that CPU runs repeat their earlier results exactly. On a GPU,
    torch.multinomial first checks its input with host reads, each of which waits for the GPU to
    finish its queue; the exponential race draws from the same distribution without any.
    """
    if weights.device.type == "cpu":
        try:
            return torch.multinomial(weights, 1, generator=generator).squeeze(1)
        except RuntimeError:
            if bool(torch.isfinite(weights).all()):
                raise
            # A diverged net's NaN belief: draw anyway, as on a GPU, so that training reaches its
            # next finiteness check and stops with a DivergedError that says what happened.
    return exponential_race(weights, generator)


def exponential_race(weights: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """argmax(w / E) with E ~ Exp(1) per entry: the Gumbel-max trick, argmax(log w - log E).

    Column k wins with probability w_k / sum(w): E_k / w_k is exponential with rate w_k, and the
    first of independent exponential arrivals is k with probability rate_k / total rate.
    A zero weight never wins against a positive one.
    """
    arrivals = torch.empty_like(weights).exponential_(generator=generator)
    return (weights / arrivals).argmax(dim=1)


def reseed_value(seed: int, step: int) -> int:
    """The seed a generator restarts from at `step` of a run seeded `seed` (the same on every machine)."""
    digest = hashlib.blake2b(f"ffcore-resume:{seed}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1  # 63 bits: any torch.Generator takes it


def saved_device_type(state: torch.Tensor, recorded: str | None) -> str:
    """The kind of device ('cpu' or 'cuda') a saved generator state comes from.

    Training states written before the device was recorded tell it by the state's size.
    """
    if recorded is not None:
        return recorded
    return "cuda" if state.numel() == CUDA_STATE_BYTES else "cpu"


def restore_generator(
    generator: torch.Generator, state: torch.Tensor, recorded_device: str | None, seed: int, step: int
) -> bool:
    """Put a saved state into `generator`; True when the stream continues exactly.

    A state from another kind of device (or one of the wrong size) cannot be set: the generator is
    reseeded with `reseed_value(seed, step)` instead, with a warning, and False is returned.
    """
    saved = saved_device_type(state, recorded_device)
    here = generator.device.type
    if saved == here:
        try:
            generator.set_state(state)
            return True
        except RuntimeError as error:  # e.g. a state of the wrong size for this generator
            reason = f"its saved state does not fit a {here} generator ({error})"
    else:
        reason = f"it was saved on {saved}, and a {here} generator cannot take a {saved} generator's state"
    generator.manual_seed(reseed_value(seed, step))
    log.warning(
        "resume at step %d is not bit-exact: the random generator (data order, negatives, jitter) is "
        "reseeded from the run's seed and step, because %s",
        step,
        reason,
    )
    return False
