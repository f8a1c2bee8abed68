"""Style augmentation (ffcore/augment.py) and its hook in the training loop."""

import pytest
import torch

import ffcore.train
from ffcore import RunConfig, Trainer, load_training_state, save_training_state
from ffcore.augment import (
    _DRAWS,
    _blur_operators,
    _refit,
    _resolution_operators,
    _separable,
    _thickness,
    augment_styles,
    restyle,
)
from ffcore.config import NUM_CLASSES
from ffcore.model import FirstLayerInput, embed_labels, rms_normalize


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def digits(mnist_slice, n: int = 200) -> torch.Tensor:
    return mnist_slice.train.images[:n]


def grid(images: torch.Tensor) -> torch.Tensor:
    return images.view(-1, 1, 28, 28)


def test_restyled_images_keep_their_shape_and_pixel_range(mnist_slice):
    images = digits(mnist_slice)
    out = augment_styles(images, 1.0, generator())
    assert out.shape == images.shape and out.dtype == images.dtype
    assert torch.isfinite(out).all()
    assert out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, images)
    # Every digit keeps a digit's worth of ink: none vanishes, none fills the field.
    ink = out.sum(dim=1)
    assert (ink > 0.1 * images.sum(dim=1)).all() and (ink < 400).all()


def test_the_label_pixels_pass_through_untouched():
    # Ink everywhere, the label pixels included: none of them may change.
    images = torch.rand((300, 784), generator=generator(1))
    out = augment_styles(images, 1.0, generator())
    assert torch.equal(out[:, :NUM_CLASSES], images[:, :NUM_CLASSES])
    assert not torch.equal(out[:, NUM_CLASSES:], images[:, NUM_CLASSES:])


def test_the_same_seed_gives_the_same_styles_and_another_seed_others(mnist_slice):
    images = digits(mnist_slice)
    first = augment_styles(images, 0.5, generator(7))
    assert torch.equal(first, augment_styles(images, 0.5, generator(7)))
    assert not torch.equal(first, augment_styles(images, 0.5, generator(8)))


def test_the_fraction_decides_how_many_images_are_restyled(mnist_slice):
    images = digits(mnist_slice, 400)
    assert torch.equal(augment_styles(images, 0.0, generator()), images)
    changed = (augment_styles(images, 1.0, generator()) != images).any(dim=1)
    assert changed.all()
    half = (augment_styles(images, 0.5, generator()) != images).any(dim=1).float().mean()
    assert 0.35 < half < 0.65, half


def test_on_a_cpu_only_the_chosen_images_are_restyled_as_restyling_all_would(mnist_slice):
    images = digits(mnist_slice)
    out = augment_styles(images, 0.5, generator(3))
    draws = torch.rand((len(images), _DRAWS), generator=generator(3))
    chosen = draws[:, 0] < 0.5
    everything = restyle(images, draws)
    assert torch.allclose(out[chosen, NUM_CLASSES:], everything[chosen, NUM_CLASSES:], atol=1e-6)
    assert torch.equal(out[~chosen], images[~chosen])


def test_thickness_grows_and_shrinks_the_strokes(mnist_slice):
    x = grid(digits(mnist_slice, 50))
    ink = x.sum()
    amounts = torch.full((50,), 1.0)
    assert _thickness(x, amounts).sum() > 1.3 * ink
    assert _thickness(x, 0.5 * amounts).sum() < _thickness(x, amounts).sum()
    assert _thickness(x, -amounts).sum() < 0.7 * ink
    assert torch.equal(_thickness(x, 0 * amounts), x)


def ink_box_and_centre(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The longer side of each image's ink box (ink: a tenth of its strongest or more), and the row
    and column of its centre of mass, as preprocess_digit measures them."""
    x = images.view(-1, 28, 28)
    ink = x > 0.1 * x.amax(dim=(1, 2), keepdim=True)
    index = torch.arange(28)
    sides = []
    for axis in (2, 1):
        lines = ink.any(dim=axis)
        sides.append(torch.where(lines, index, -1).amax(1) - torch.where(lines, index, 28).amin(1) + 1)
    mass = x * ink
    total = mass.sum(dim=(1, 2))
    row = (mass.sum(dim=2) * index).sum(dim=1) / total
    column = (mass.sum(dim=1) * index).sum(dim=1) / total
    return torch.maximum(*sides).float(), row, column


def refit(x, slant=0.0, rotation=0.0, aspect=1.0, scale=1.0, shift=(0.0, 0.0)):
    n = len(x)
    return _refit(
        x,
        slant=torch.full((n,), slant),
        rotation=torch.full((n,), rotation),
        aspect=torch.full((n,), aspect),
        scale=torch.full((n,), scale),
        shift=torch.tensor([shift]).repeat(n, 1),
    )


def test_the_refit_puts_any_digit_in_the_box_with_its_mass_centred(mnist_slice):
    x = grid(digits(mnist_slice, 50))
    # MNIST's digits already are: the refit leaves them about as they are.
    assert (refit(x) - x).abs().mean() < 0.05
    # A small digit in a corner comes back filling the 20-pixel box, its centre of mass at (14, 14).
    small = torch.nn.functional.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True)
    small = torch.nn.functional.pad(small, (2, 12, 12, 2))
    side, row, column = ink_box_and_centre(small)
    assert (side < 13).all() and (row > 17).all() and (column < 10).all()
    side, row, column = ink_box_and_centre(refit(small))
    assert ((side >= 18) & (side <= 22)).all(), side
    assert torch.allclose(row, torch.full_like(row, 14.0), atol=0.3)
    assert torch.allclose(column, torch.full_like(column, 14.0), atol=0.3)


def test_the_refit_scales_shifts_slants_rotates_and_widens(mnist_slice):
    x = grid(digits(mnist_slice, 50))
    side, row, column = ink_box_and_centre(refit(x, scale=0.8, shift=(2.0, -1.0)))
    assert ((side >= 15) & (side <= 18)).all(), side
    assert torch.allclose(column, torch.full_like(column, 16.0), atol=0.3)  # x: 2 pixels right
    assert torch.allclose(row, torch.full_like(row, 13.0), atol=0.3)  # y: 1 pixel up
    for change in ({"slant": 0.3}, {"rotation": 0.2}, {"aspect": 0.7}):
        changed = refit(x, **change)
        assert (changed - x).abs().mean() > 0.05, change
        side, row, column = ink_box_and_centre(changed)
        assert ((side >= 18) & (side <= 22)).all(), (change, side)
        assert torch.allclose(row, torch.full_like(row, 14.0), atol=0.3), change
    # Narrower writing: the ink's box ends up less wide than tall.
    narrow = refit(x, aspect=0.6).view(-1, 28, 28) > 0.1
    assert narrow.any(dim=1).sum() < 0.8 * narrow.any(dim=2).sum()


def test_blur_spreads_ink_and_keeps_its_amount(mnist_slice):
    x = grid(digits(mnist_slice, 50))
    assert torch.allclose(_separable(x, _blur_operators(torch.zeros(50))), x, atol=1e-6)
    blurred = _separable(x, _blur_operators(torch.full((50,), 1.0)))
    assert (blurred > 0.01).sum() > 1.3 * (x > 0.01).sum()
    assert blurred.max() < x.max()
    assert torch.allclose(blurred.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.02)


def test_low_resolution_loses_detail_for_the_drawn_share(mnist_slice):
    x = grid(digits(mnist_slice, 50))
    assert torch.equal(_separable(x, _resolution_operators(torch.full((50,), 0.99))), x)
    blocky = _separable(x, _resolution_operators(torch.full((50,), 0.3)))  # the coarsest side
    assert not torch.allclose(blocky, x, atol=0.1)
    # Shrinking and enlarging back keeps the ink where it was (its centre of mass), about as much of it.
    assert torch.allclose(blocky.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.05)
    rows = torch.arange(28.0)[:, None]
    centre = (x.squeeze(1) * rows).sum(dim=(1, 2)) / x.sum(dim=(1, 2, 3))
    blocky_centre = (blocky.squeeze(1) * rows).sum(dim=(1, 2)) / blocky.sum(dim=(1, 2, 3))
    assert torch.allclose(blocky_centre, centre, atol=0.3)


def test_without_augmentation_training_never_calls_it(mnist_slice, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("augment_styles called with augment='none'")

    monkeypatch.setattr(ffcore.train, "augment_styles", refuse)
    config = RunConfig(device="cpu", hidden=[30, 20], epochs=1)
    assert config.augment == "none"
    assert Trainer(config, mnist_slice).fit(max_steps=3).steps == 3


def test_the_network_sees_restyled_images_under_exact_label_pixels(mnist_slice, monkeypatch):
    """The batch is restyled before the step and the labels are embedded after: the first layer's
    input holds the augmented image with exactly the one-hot label in its label pixels."""
    seen: list[FirstLayerInput] = []

    class Recording(FirstLayerInput):
        def __init__(self, images, weight):
            super().__init__(images, weight)
            # The step updates the weights in place after this: keep what the inputs were built from.
            self.images, self.weight = images.clone(), weight.clone()
            self.label_columns = self.label_columns.clone()
            seen.append(self)

    monkeypatch.setattr(ffcore.train, "FirstLayerInput", Recording)
    config = RunConfig(device="cpu", hidden=[30, 20], epochs=1, augment="styles", augment_fraction=1.0)
    trainer = Trainer(config, mnist_slice)
    trainer.fit(max_steps=2)
    order = trainer.order
    assert order is not None
    for step, first_input in enumerate(seen):
        raw = mnist_slice.train.images[order[step * 100 : (step + 1) * 100]]
        assert not torch.equal(first_input.images, raw)  # restyled before the step
        assert torch.equal(first_input.images[:, :NUM_CLASSES], raw[:, :NUM_CLASSES])
        labels = mnist_slice.train.labels[order[step * 100 : (step + 1) * 100]]
        network_input = embed_labels(first_input.images, labels)
        assert torch.equal(
            network_input[:, :NUM_CLASSES], torch.nn.functional.one_hot(labels, NUM_CLASSES).float()
        )
        expected = rms_normalize(network_input) @ first_input.weight.T
        assert torch.allclose(first_input.one_hot(labels), expected, atol=1e-4)


def test_a_resumed_run_restyles_as_an_uninterrupted_one(mnist_slice):
    config = RunConfig(device="cpu", hidden=[50, 40], epochs=2, augment="styles", jitter=1)
    straight = Trainer(config, mnist_slice)
    straight.fit()
    first = Trainer(config, mnist_slice)
    first.fit(max_steps=27)
    resumed = load_training_state(save_training_state(first), mnist_slice)
    resumed.fit()
    for key, value in straight.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_a_small_network_still_learns_with_augmentation(mnist_slice):
    # On 2,000 digits, five epochs: without augmentation about 20% (softmax) and 41% (label scan).
    config = RunConfig.from_preset("quick", hidden=[200, 200], epochs=5, augment="styles", device="cpu")
    result = Trainer(config, mnist_slice).fit()
    assert result.test_error_softmax < 0.35, result  # chance is 0.9
    assert result.test_error_scan < 0.65, result


@pytest.mark.parametrize("fraction", [-0.1, 1.5])
def test_the_fraction_is_validated(fraction):
    with pytest.raises(ValueError, match="augment_fraction"):
        RunConfig(augment="styles", augment_fraction=fraction)


def test_an_unknown_augmentation_is_refused():
    with pytest.raises(ValueError, match="augment"):
        RunConfig(augment="elastic")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_same_draws_restyle_as_on_the_cpu(mnist_slice):
    """The GPU path restyles every image and keeps the chosen ones, with no host read; the result is
    the CPU's (which restyles only the chosen) up to rounding."""
    images = digits(mnist_slice)
    draws = torch.rand((len(images), _DRAWS), generator=generator(5))
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")  # TF32 products would differ by far more
    try:
        on_gpu = restyle(images.cuda(), draws.cuda()).cpu()
    finally:
        torch.set_float32_matmul_precision(previous)
    assert torch.allclose(on_gpu, restyle(images, draws), atol=1e-4)
    gpu_generator = torch.Generator(device="cuda").manual_seed(0)
    out = augment_styles(images.cuda(), 0.5, gpu_generator)
    assert out.device.type == "cuda" and out.shape == images.shape
    assert torch.equal(out[:, :NUM_CLASSES].cpu(), images[:, :NUM_CLASSES])
