"""ffcore.probes: each layer's own label scan, goodness quantiles, a linear probe, receptive fields."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from ffcore import RunConfig, Trainer, evaluate
from ffcore.probes import fields_grid_png, linear_probe_error, quantile_names, receptive_fields


@pytest.fixture(scope="module")
def trained(mnist_slice) -> Trainer:
    config = RunConfig.from_preset("quick", hidden=[64, 64], epochs=2, device="cpu", batch_size=50)
    trainer = Trainer(config, mnist_slice)
    trainer.fit()
    return trainer


def test_the_probes_come_from_the_evaluation_pass_and_agree_with_it(trained, mnist_slice):
    split = mnist_slice.split("val")
    plain = evaluate(trained.model, split, batch_size=128)
    probed = evaluate(trained.model, split, batch_size=128, probes=True)
    assert {k: probed[k] for k in plain} == plain, "probes change nothing else"
    layers = probed["layers"]
    assert [layer["layer"] for layer in layers] == [0, 1]
    label_goodness, _ = trained.model.probe(split.images)
    for i, layer in enumerate(layers):
        own = label_goodness[:, :, i].argmax(dim=1)
        assert layer["error_scan"] == int((own != split.labels).sum()) / len(split)
        positive = label_goodness[torch.arange(len(split)), split.labels, i]
        assert layer["goodness_pos_q50"] == pytest.approx(float(positive.double().quantile(0.5)), rel=1e-4)
        assert [k for k in layer if k.startswith("goodness_pos")] == quantile_names("goodness_pos")
        assert layer["threshold"] == trained.model.thresholds[i]
        wrong = torch.ones_like(label_goodness[:, :, i], dtype=torch.bool)
        wrong[torch.arange(len(split)), split.labels] = False
        negative = label_goodness[:, :, i][wrong]
        assert negative.numel() == 9 * len(split)
        assert layer["goodness_neg_q95"] == pytest.approx(float(negative.double().quantile(0.95)), rel=1e-4)
        # Fitted on 250 images (half of this small split) the probe is far from its best, but far
        # better than chance (0.9).
        assert 0 <= layer["error_probe"] < 0.75


def test_the_linear_probe_reads_separable_features_and_not_noise():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (2000,), generator=generator)
    noise = torch.randn(2000, 50, generator=generator)
    informative = torch.cat([torch.nn.functional.one_hot(labels, 10).float() * 3, noise], dim=1)
    assert linear_probe_error(informative, labels) < 0.02
    assert linear_probe_error(noise, labels) > 0.8  # chance is 0.9
    # Wider than the images it fits on: the kernel form of the solve reads them as well.
    wide = torch.cat([informative[:300, :10], torch.randn(300, 180, generator=generator)], dim=1)
    assert wide.shape[1] > 150 and linear_probe_error(wide, labels[:300]) < 0.05


def test_receptive_fields_are_the_first_layers_weights_largest_first(trained):
    weight = trained.model.layers[0].weight.detach()
    fields, units = receptive_fields(trained.model, count=10)
    assert fields.shape == (10, 28, 28) and len(set(units.tolist())) == 10
    norms = weight.norm(dim=1)
    assert float(norms[units[0]]) == pytest.approx(float(norms.max()))
    assert np.all(np.diff(norms[units].numpy()) <= 1e-6)
    np.testing.assert_array_equal(fields[3].reshape(-1), weight[units[3]].numpy())
    # The label pixels are the top row's first ten.
    np.testing.assert_array_equal(fields[:, 0, :10], weight[units, :10].numpy())


def test_the_grid_png_holds_every_field_in_colour():
    fields = np.zeros((5, 28, 28), dtype=np.float32)
    fields[0, 0, 0], fields[1, 0, 0] = 1.0, -1.0
    image = Image.open(io.BytesIO(fields_grid_png(fields, scale=2, gap=1)))
    assert image.format == "PNG" and image.size == (3 * 57 + 1, 2 * 57 + 1)  # 3 x 2 cells of 56 + gap
    pixels = np.asarray(image)
    assert tuple(pixels[1, 1]) == (255, 0, 0), "a positive weight is red"
    assert tuple(pixels[1, 58]) == (0, 0, 255), "a negative weight is blue"
    assert tuple(pixels[30, 30]) == (255, 255, 255), "zero is white"


def test_every_eval_record_of_a_run_carries_its_layers_probes(mnist_slice):
    config = RunConfig.from_preset("quick", hidden=[32, 32, 32], epochs=2, device="cpu", batch_size=100)
    records: list[dict] = []
    Trainer(config, mnist_slice).fit(on_metrics=records.append)
    evals = [r for r in records if r["kind"] == "eval"]
    assert [(r["split"], r.get("final", False)) for r in evals] == [
        ("val", False),
        ("val", False),
        ("test", True),
    ]
    for record in evals:
        assert [layer["layer"] for layer in record["layers"]] == [0, 1, 2]
        assert all(
            0 <= layer["error_scan"] <= 1 and layer["error_probe"] is not None for layer in record["layers"]
        )
