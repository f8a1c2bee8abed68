import numpy as np
import pytest
import torch

from ffcore import FFNetwork, RunConfig, predict
from ffcore.model import (
    NEUTRAL_LABEL_VALUE,
    FirstLayerInput,
    embed_labels,
    embed_neutral,
    goodness,
    rms_normalize,
)


def make_model(**overrides) -> FFNetwork:
    model = FFNetwork(RunConfig(hidden=[64, 48, 32], **overrides))
    model.reset_parameters(torch.Generator().manual_seed(1))
    return model


def label_goodness_explicit(model: FFNetwork, images: torch.Tensor) -> torch.Tensor:
    """`probe`'s goodness the obvious way, embedding each label: the oracle for the shared first layer."""
    n = len(images)
    labels = torch.arange(10).repeat(n)
    x = embed_labels(images.repeat_interleave(10, dim=0), labels)
    per_layer = [goodness(z, model.config.goodness) for z in model.activations(x)]
    return torch.stack(per_layer, dim=1).view(n, 10, len(model.layers))


def test_embed_labels_writes_a_one_hot_into_the_first_ten_pixels():
    images = torch.randn(3, 784)
    x = embed_labels(images, torch.tensor([0, 7, 9]))
    expected = torch.zeros(3, 10)
    expected[0, 0] = expected[1, 7] = expected[2, 9] = 1.0
    assert torch.equal(x[:, :10], expected)
    assert torch.equal(x[:, 10:], images[:, 10:])
    assert not torch.equal(images[:, :10], expected)  # the input is left alone


def test_neutral_label_is_ten_entries_of_a_tenth():
    x = embed_neutral(torch.randn(2, 784))
    assert torch.allclose(x[:, :10], torch.full((2, 10), NEUTRAL_LABEL_VALUE))


def test_goodness_is_the_sum_or_mean_of_squares():
    z = torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 3.0]])
    assert torch.equal(goodness(z, "sum"), torch.tensor([9.0, 9.0]))
    assert torch.equal(goodness(z, "mean"), torch.tensor([3.0, 3.0]))


@pytest.mark.parametrize("kind", ["sum", "mean"])
def test_batched_label_goodness_equals_embedding_each_label(kind):
    model = make_model(goodness=kind)
    images = torch.randn(20, 784)
    fast, _ = model.probe(images)
    assert fast.shape == (20, 10, 3)
    torch.testing.assert_close(fast, label_goodness_explicit(model, images), rtol=1e-4, atol=1e-5)
    # and each label's goodness is that label's own forward pass
    x = embed_labels(images, torch.full((20,), 4))
    own = torch.stack([goodness(z, kind) for z in model.activations(x)], dim=1)
    torch.testing.assert_close(fast[:, 4, :], own, rtol=1e-4, atol=1e-5)


def test_probe_head_logits_equal_the_neutral_label_pass():
    model = make_model()
    torch.nn.init.normal_(model.head.weight)
    images = torch.rand(20, 784)
    _, logits = model.probe(images)
    explicit = model.head(model.head_features(model.activations(embed_neutral(images))))
    torch.testing.assert_close(logits, explicit, rtol=1e-4, atol=1e-5)


def test_label_scan_is_the_argmax_of_goodness_summed_over_the_scan_layers():
    model = make_model(scan_layers=[0, 2])
    pixels = np.random.default_rng(0).random((30, 28, 28), dtype=np.float32)
    result = predict(model, pixels)
    summed = result.goodness[:, :, [0, 2]].sum(axis=2)
    np.testing.assert_allclose(result.scan_scores, summed, rtol=1e-5)
    assert np.array_equal(result.scan_label, summed.argmax(axis=1))
    assert result.head_probs.shape == (30, 10)
    np.testing.assert_allclose(result.head_probs.sum(axis=1), 1.0, rtol=1e-5)


def test_predict_accepts_flat_or_square_images_in_batches():
    model = make_model()
    pixels = np.random.default_rng(1).random((7, 784), dtype=np.float32)
    whole = predict(model, pixels)
    batched = predict(model, pixels.reshape(7, 28, 28), batch_size=3)
    np.testing.assert_allclose(whole.goodness, batched.goodness, rtol=1e-5)


def test_first_layer_input_equals_embedding_the_labels():
    # float64: the identity is exact, so only rounding could separate the two sides
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 784, generator=generator, dtype=torch.float64)
    images = torch.randn(12, 784, generator=generator, dtype=torch.float64)
    labels = torch.randint(0, 10, (12,), generator=generator)
    negatives = torch.randint(0, 10, (12,), generator=generator)
    shared = FirstLayerInput(images, weight)
    explicit = rms_normalize(embed_labels(images, labels)) @ weight.T
    torch.testing.assert_close(shared.one_hot(labels), explicit, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        shared.neutral(), rms_normalize(embed_neutral(images)) @ weight.T, rtol=1e-4, atol=1e-5
    )
    torch.testing.assert_close(shared.every_label()[torch.arange(12), labels], explicit, rtol=1e-4, atol=1e-5)

    # The weight gradient of [positives; negatives] computed with one product equals the plain one.
    grad_pos = torch.randn(12, 64, generator=generator, dtype=torch.float64)
    grad_neg = torch.randn(12, 64, generator=generator, dtype=torch.float64)
    x_in = rms_normalize(torch.cat([embed_labels(images, labels), embed_labels(images, negatives)]))
    plain = torch.cat([grad_pos, grad_neg]).T @ x_in
    torch.testing.assert_close(
        shared.weight_grad(grad_pos, grad_neg, labels, negatives), plain, rtol=1e-4, atol=1e-4
    )


def test_head_label_is_the_argmax_of_the_head_probabilities():
    model = make_model()
    torch.nn.init.normal_(model.head.weight)
    result = predict(model, np.random.default_rng(2).random((9, 784), dtype=np.float32))
    assert result.head_label.shape == (9,)
    assert np.array_equal(result.head_label, result.head_probs.argmax(axis=1))
