"""The generated set of styled digits (tests/support/styled_digits.py), read through the predict path."""

import io

import numpy as np
import pytest
from PIL import Image

from ffcore import RunConfig, Trainer, predict
from ffcore.data import Dataset, Split
from ffcore.images import preprocess_digit
from tests.support.styled_digits import EASY, VARIED, available_fonts, styled_digits


@pytest.fixture(scope="module")
def varied():
    return styled_digits(60, seed=3)


def test_a_picture_depends_only_on_the_seed_and_its_place(varied):
    again = styled_digits(12, seed=3)  # fewer pictures: the first twelve are the same ones
    assert [d.data for d in again] == [d.data for d in varied[:12]]
    assert [d.style for d in again] == [d.style for d in varied[:12]]
    other = styled_digits(12, seed=4)
    assert all(a.data != b.data for a, b in zip(other, varied, strict=False))


def test_every_class_is_drawn_in_turn(varied):
    assert [d.label for d in varied] == [i % 10 for i in range(60)]


def test_the_pictures_are_files_of_many_styles(varied):
    formats = {Image.open(io.BytesIO(d.data)).format for d in varied}
    assert formats == {"PNG", "JPEG"}
    assert {d.style["light_on_dark"] for d in varied} == {True, False}
    assert any(d.style["low_resolution_height"] is not None for d in varied)
    sizes = {d.picture().size for d in varied}
    assert len(sizes) > 50  # pictures of all sizes, not 28x28
    sources = {"pen" if d.style["source"].startswith("pen") else "font" for d in varied}
    assert sources == ({"pen", "font"} if available_fonts() else {"pen"})
    strokes = [d.style["stroke"] for d in varied]
    assert min(strokes) < 0.05 and max(strokes) > 0.12  # thin pens and thick markers


def test_every_picture_holds_a_digit_the_predict_path_finds(varied):
    for digit in varied:
        picture = digit.picture()
        pixels = preprocess_digit(picture)  # as the API does with an upload
        assert pixels.shape == (28, 28)
        assert pixels.max() > 0.5
        # A digit's worth of ink, not a speck or a filled box (MNIST's digits hold 100 +- 40).
        assert 20 < pixels.sum() < 250, (digit.style, pixels.sum())


def test_the_easy_pictures_stay_within_their_ranges():
    for digit in styled_digits(30, seed=5, ranges=EASY):
        assert digit.style["source"].startswith("pen")
        assert digit.style["low_resolution_height"] is None
        assert EASY.slant[0] <= digit.style["slant"] <= EASY.slant[1]
        assert Image.open(io.BytesIO(digit.data)).format == "PNG"
    assert VARIED.slant[1] > EASY.slant[1]


def head(split: Split, n: int) -> Split:
    return Split(split.images[:n], split.labels[:n])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_quick_network_reads_most_easy_pictures(mnist):
    # One epoch of the quick preset (a few tens of seconds), evaluated on a slice.
    data = Dataset(mnist.name, mnist.train, head(mnist.val, 1000), head(mnist.test, 1000))
    trainer = Trainer(RunConfig.from_preset("quick", epochs=1, device="cpu"), data)
    trainer.fit()
    digits = styled_digits(100, seed=11, ranges=EASY)
    pixels = np.stack([preprocess_digit(d.picture()) for d in digits])
    labels = np.array([d.label for d in digits])
    prediction = predict(trainer.model, pixels)
    # Chance is 10%; the quick preset reads about 99% of these after three epochs.
    assert (prediction.head_label == labels).mean() > 0.8
    assert (prediction.scan_label == labels).mean() > 0.7
