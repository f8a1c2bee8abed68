import pytest
import torch
import torch.nn.functional as F

from ffcore import DivergedError, RunConfig, Trainer, load_training_state, save_training_state
from ffcore.data import Dataset, Split, flip_images, shift_images
from ffcore.model import FirstLayerInput, embed_labels, rms_normalize
from ffcore.train import lr_factor


class FullGradReLU(torch.autograd.Function):
    """The reference port's ReLU: forward clamps, backward passes the gradient unchanged."""

    @staticmethod
    def forward(ctx, a):
        return a.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        return grad


@pytest.mark.parametrize("kind", ["sum", "mean"])
def test_hand_written_gradients_match_autograd(synthetic, kind):
    config = RunConfig(device="cpu", hidden=[30, 20], batch_size=8, peer_norm_weight=0.5, goodness=kind)
    trainer = Trainer(config, synthetic)
    layer = trainer.model.layers[0]
    images, labels = synthetic.train.images[:8], synthetic.train.labels[:8]
    x = torch.cat([embed_labels(images, labels), embed_labels(images, (labels + 3) % 10)])
    targets = torch.cat([torch.ones(8), torch.zeros(8)])

    # The loss written plainly, differentiated by autograd.
    weight = layer.weight.detach().clone().requires_grad_()
    bias = layer.bias.detach().clone().requires_grad_()
    z = FullGradReLU.apply(rms_normalize(x) @ weight.T + bias)
    squares = z.pow(2).sum(1) if kind == "sum" else z.pow(2).mean(1)
    ff_loss = F.binary_cross_entropy_with_logits(squares - config.layer_threshold(30), targets)
    running_mean = 0.9 * trainer.model.running_mean(0) + 0.1 * z[:8].mean(0)
    peer_loss = ((running_mean.mean() - running_mean) ** 2).mean()
    (ff_loss + 0.5 * peer_loss).backward()

    x_in = rms_normalize(x)
    z = torch.relu(x_in @ layer.weight.T + layer.bias)
    dpre, _, _ = trainer._ff_layer_loss(0, z, z.pow(2).sum(1), targets, 8)
    torch.testing.assert_close(dpre.T @ x_in, weight.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(dpre.sum(0), bias.grad, rtol=1e-4, atol=1e-6)


def test_hinton_peer_norm_adds_weight_times_deviation_per_example(synthetic):
    # Hinton's code adds weight * (unit's running mean - layer's mean) to each positive example's
    # gradient; written as a loss, that is weight * deviation . mean activity, deviation held fixed.
    config = RunConfig(
        device="cpu", hidden=[30, 20], batch_size=8, peer_norm_weight=0.5, peer_norm_style="hinton"
    )
    trainer = Trainer(config, synthetic)
    layer = trainer.model.layers[0]
    images, labels = synthetic.train.images[:8], synthetic.train.labels[:8]
    x = rms_normalize(torch.cat([embed_labels(images, labels), embed_labels(images, (labels + 3) % 10)]))
    targets = torch.cat([torch.ones(8), torch.zeros(8)])
    trainer.model.running_mean(0).copy_(torch.linspace(0.0, 2.0, 30))  # clearly unequal units

    weight = layer.weight.detach().clone().requires_grad_()
    z = FullGradReLU.apply(x @ weight.T + layer.bias)
    ff_loss = F.binary_cross_entropy_with_logits(z.pow(2).sum(1) - 30.0, targets)
    running_mean = 0.9 * trainer.model.running_mean(0) + 0.1 * z[:8].mean(0).detach()
    deviation = running_mean - running_mean.mean()
    (ff_loss + 0.5 * (deviation * z[:8].mean(0)).sum()).backward()

    z = torch.relu(x @ layer.weight.T + layer.bias)
    dpre, _, _ = trainer._ff_layer_loss(0, z, z.pow(2).sum(1), targets, 8)
    torch.testing.assert_close(dpre.T @ x, weight.grad, rtol=1e-4, atol=1e-6)
    # The port's pull on the same deviation is width / (2 (1 - momentum)) = 150 times weaker.
    pulls = {}
    for style, strength in (("hinton", 0.5), ("port", 0.5), ("port", 0.0)):
        other = Trainer(
            config.model_copy(update={"peer_norm_style": style, "peer_norm_weight": strength}), synthetic
        )
        other.model.running_mean(0).copy_(torch.linspace(0.0, 2.0, 30))
        pulls[style, strength] = other._ff_layer_loss(0, z, z.pow(2).sum(1), targets, 8)[0]
    hinton_pull = pulls["hinton", 0.5] - pulls["port", 0.0]
    port_pull = pulls["port", 0.5] - pulls["port", 0.0]
    torch.testing.assert_close(hinton_pull, 150 * port_pull, rtol=1e-3, atol=1e-7)


def test_head_gradient_matches_autograd(synthetic):
    trainer = Trainer(RunConfig(device="cpu", hidden=[30, 20], batch_size=8), synthetic)
    head = trainer.model.head
    torch.nn.init.normal_(head.weight)
    images, labels = synthetic.train.images[:8], synthetic.train.labels[:8]
    features = trainer.model.head_features(
        trainer.model.activations(embed_labels(images, labels) * 0 + images)
    )
    weight = head.weight.detach().clone().requires_grad_()
    F.cross_entropy(features @ weight.T, labels).backward()
    probs = torch.softmax(features @ head.weight.T, 1)
    manual = ((probs - F.one_hot(labels, 10)) / 8).T @ features
    torch.testing.assert_close(manual, weight.grad)


@pytest.mark.parametrize("negatives", ["random", "hard"])
def test_negative_labels_are_never_the_true_label(synthetic, negatives):
    trainer = Trainer(RunConfig(device="cpu", hidden=[20, 20], negatives=negatives), synthetic)
    labels = torch.arange(10).repeat(500)
    # A head that is nearly certain of the true label: hard negatives must still avoid it.
    probs = F.one_hot(labels, 10).float() * 0.999999 + 1e-7
    drawn = torch.stack([trainer._negative_labels(labels, probs) for _ in range(4)])
    assert not (drawn == labels).any()
    assert set(drawn.unique().tolist()) == set(range(10))


def test_hard_negatives_follow_the_heads_belief(synthetic):
    trainer = Trainer(RunConfig(device="cpu", hidden=[20, 20], negatives="hard"), synthetic)
    labels = torch.zeros(20_000, dtype=torch.long)
    probs = torch.tensor([0.5, 0.4, 0.1] + [0.0] * 7).repeat(20_000, 1)
    counts = torch.bincount(trainer._negative_labels(labels, probs), minlength=10)
    assert counts[0] == 0 and counts[3:].sum() < 20  # only labels the head believes in
    assert 0.75 < counts[1] / 20_000 < 0.85  # 0.4 / (0.4 + 0.1)


def test_linear_cooldown_holds_then_cools_to_near_zero():
    config = RunConfig(epochs=100)
    assert lr_factor(config, 0) == lr_factor(config, 50) == 1.0
    assert lr_factor(config, 51) == pytest.approx(1.0)
    assert lr_factor(config, 99) == pytest.approx(0.04)
    assert lr_factor(RunConfig(epochs=100, lr_schedule="constant"), 99) == 1.0


def test_shift_images_moves_the_digit_and_fills_with_background():
    image = torch.full((1, 28, 28), -1.0)
    image[0, 10:14, 10:14] = 5.0
    generator = torch.Generator().manual_seed(0)
    shifted = shift_images(image.reshape(1, 784).repeat(200, 1), 2, -1.0, generator).view(200, 28, 28)
    assert torch.equal((shifted == 5.0).sum(dim=(1, 2)), torch.full((200,), 16))  # never cut off
    rows = (shifted == 5.0).nonzero()[:, 1].view(200, 16).min(dim=1).values
    assert set(rows.tolist()) == {8, 9, 10, 11, 12}  # every offset in -2..2 occurs


def train_recording_steps(images: torch.Tensor, config: RunConfig, monkeypatch) -> tuple[Trainer, list]:
    """Train on `images` (N, 28, 28; labels 0-9 in turn) and record each batch the training step is
    given, after augmentation: (images, labels) pairs."""
    split = Split(images.reshape(len(images), 784), torch.arange(len(images)) % 10)
    trainer = Trainer(config, Dataset("mnist", split, None, split))
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    step = trainer.train_step
    monkeypatch.setattr(trainer, "train_step", lambda x, y: seen.append((x, y)) or step(x, y))
    trainer.fit()
    return trainer, seen


def test_jitter_shifts_the_picture_but_never_the_label_pixels(monkeypatch):
    # Ink along the top rows, where the ten label pixels live: shifts carry it into them.
    images = torch.zeros(200, 28, 28)
    images[:, 0:3, 0:14] = 1.0
    trainer, seen = train_recording_steps(
        images, RunConfig(device="cpu", hidden=[20, 20], epochs=1, jitter=2), monkeypatch
    )

    shifted = torch.cat([x for x, _ in seen])
    ink_in_label_pixels = shifted[:, :10].sum(dim=1)
    assert len(seen) == 2 and len(ink_in_label_pixels.unique()) > 2  # shifts moved ink in and out of them
    weight = trainer.model.layers[0].weight.detach()
    for x, y in seen:  # what the first layer is given: the label exactly, wherever the shift put the ink
        embedded = embed_labels(x, y)
        assert torch.equal(embedded[:, :10], F.one_hot(y, 10).float())
        assert torch.equal(embedded[:, 10:], x[:, 10:])
        expected = rms_normalize(embedded) @ weight.T
        assert torch.allclose(FirstLayerInput(x, weight).one_hot(y), expected, atol=1e-5)


def test_flip_images_mirrors_about_half_the_images_left_to_right():
    images = torch.rand(400, 784, generator=torch.Generator().manual_seed(0))
    flipped = flip_images(images, torch.Generator().manual_seed(1))
    mirrors = images.view(400, 28, 28).flip(2).reshape(400, 784)
    same = (flipped == images).all(dim=1)
    mirrored = (flipped == mirrors).all(dim=1)
    assert bool((same ^ mirrored).all())  # each image is itself or its mirror, never anything else
    assert 150 < int(mirrored.sum()) < 250


def test_flip_mirrors_the_picture_but_never_the_label_pixels(monkeypatch):
    # Ink on the top row's right end: a mirror carries it into the label pixels (the left end).
    images = torch.zeros(200, 28, 28)
    images[:, 0, 18:] = 1.0
    images[:, 5:20, 20:24] = 0.5
    _, seen = train_recording_steps(
        images, RunConfig(device="cpu", hidden=[20, 20], epochs=1, flip=True), monkeypatch
    )

    given = torch.cat([x for x, _ in seen])
    mirrored = given.view(-1, 28, 28)[:, 10, 4:8].sum(dim=1) > 0  # the bar now on the left
    assert 50 < int(mirrored.sum()) < 150
    for x, y in seen:
        embedded = embed_labels(x, y)
        assert torch.equal(embedded[:, :10], F.one_hot(y, 10).float())


def test_metrics_records_cover_every_layer(mnist_slice):
    records = []
    config = RunConfig(device="cpu", hidden=[40, 30, 20], epochs=1, batch_size=100)
    Trainer(config, mnist_slice, log_every=5).fit(on_metrics=records.append)
    train = [r for r in records if r["kind"] == "train"]
    evals = [r for r in records if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [5, 10, 15, 20]
    assert all(len(r["layers"]) == 3 for r in train)
    layer = train[-1]["layers"][2]
    assert set(layer) == {"layer", "goodness_pos", "goodness_neg", "threshold", "ff_loss", "ff_accuracy"}
    assert layer["threshold"] == 20.0 and 0.0 <= layer["ff_accuracy"] <= 1.0
    assert train[-1]["samples_per_s"] > 0 and 0.0 <= train[-1]["head_accuracy"] <= 1.0
    assert [(r["split"], r.get("final", False)) for r in evals] == [("val", False), ("test", True)]


def test_should_stop_and_max_steps_end_training_early(mnist_slice):
    config = RunConfig(device="cpu", hidden=[20, 20], epochs=3)
    result = Trainer(config, mnist_slice).fit(max_steps=7)
    assert result.stopped and result.steps == 7 and result.test_error_scan is None
    calls = []
    result = Trainer(config, mnist_slice).fit(should_stop=lambda: len(calls) > 3 or calls.append(1))
    assert result.stopped and result.steps == 4


@pytest.mark.parametrize("negatives", ["random", "hard"])
def test_resume_gives_the_same_weights_as_an_uninterrupted_run(mnist_slice, negatives):
    config = RunConfig(device="cpu", hidden=[50, 40], epochs=2, batch_size=100, negatives=negatives, jitter=1)
    straight = Trainer(config, mnist_slice)
    straight.fit()

    first = Trainer(config, mnist_slice)
    first.fit(max_steps=27)  # stop mid-epoch, as a killed worker would be taken up from
    second = load_training_state(save_training_state(first), mnist_slice)
    second.fit(max_steps=20 + 11)  # and again, exactly on the epoch boundary
    third = load_training_state(save_training_state(second), mnist_slice)
    result = third.fit()

    assert result.steps == straight.step == 40
    for key, value in straight.model.state_dict().items():
        assert torch.equal(third.model.state_dict()[key], value), key


def test_training_states_are_safetensors_not_pickle(mnist_slice):
    trainer = Trainer(RunConfig(device="cpu", hidden=[20, 20]), mnist_slice)
    state = save_training_state(trainer)
    assert b"__metadata__" in state[:4096] and not state.startswith(b"\x80")
    with pytest.raises(ValueError, match="not an ffcore training state"):
        load_training_state(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ", mnist_slice)


@pytest.mark.parametrize("negatives", ["random", "hard"])  # hard: drawn from a NaN belief
@pytest.mark.parametrize(("log_every", "caught_at"), [(2, 2), (1000, 8)])
def test_a_non_finite_loss_stops_training_with_the_step_and_no_broken_record(log_every, caught_at, negatives):
    # Infinite pixels make the losses non-finite from the first step, as a diverging run's become.
    images = torch.rand(400, 784, generator=torch.Generator().manual_seed(0))
    images[:, 500] = float("inf")  # (the first 10 pixels carry the label: it would overwrite them)
    split = Split(images, torch.randint(0, 10, (400,), generator=torch.Generator().manual_seed(1)))
    config = RunConfig.from_preset(
        "quick", hidden=[16, 16], batch_size=50, epochs=2, device="cpu", negatives=negatives
    )
    records: list[dict] = []
    ended: list[int] = []
    trainer = Trainer(config, dataset=Dataset("mnist", split, split, split), log_every=log_every)
    with pytest.raises(DivergedError, match=rf"^diverged at step {caught_at}: a non-finite loss"):
        # Caught at the first train record, or (records rarer than an epoch) at the epoch's end,
        # before its evaluation and checkpoint.
        trainer.fit(on_metrics=records.append, on_epoch_end=lambda t: ended.append(t.epoch))
    assert records == [] and ended == []
