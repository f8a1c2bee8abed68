"""preprocess_digit: any digit picture becomes what MNIST would have made of it."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ffcore.images import WORKING_SIDE, EmptyImageError, preprocess_digit, shrink_picture
from tests.support.mnist import mnist_test_images


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(np.ravel(a), np.ravel(b))[0, 1])


def centre_of_mass(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.indices(image.shape)
    total = image.sum()
    return float((rows * image).sum() / total), float((cols * image).sum() / total)


def ink_box(image: np.ndarray) -> tuple[int, int]:
    rows = np.flatnonzero(image.any(axis=1))
    cols = np.flatnonzero(image.any(axis=0))
    return int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)


def test_mnist_digits_come_back_almost_unchanged(mnist_dir: str) -> None:
    # MNIST was made by this procedure, so redoing it must not move or rescale its digits.
    digits = mnist_test_images(mnist_dir, 300)
    scores = [correlation(preprocess_digit(d), d / 255.0) for d in digits]
    assert np.median(scores) > 0.99
    assert np.mean(np.array(scores) > 0.9) > 0.95


def test_output_is_28x28_float_in_unit_range_with_ink_fitted_and_centred() -> None:
    # A small off-centre blob in a corner of a big black field.
    field = np.zeros((300, 500), dtype=np.uint8)
    field[20:80, 400:430] = 255  # 60 tall, 30 wide

    out = preprocess_digit(field)

    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() >= 0.0 and out.max() <= 1.0
    height, width = ink_box(out > 0.05)
    assert height in (20, 21) and width in (10, 11, 12)  # longer side 20, aspect kept (anti-aliased edges)
    row, col = centre_of_mass(out)
    assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5


def test_a_large_dark_on_light_picture_matches_the_mnist_digit(mnist_dir: str) -> None:
    digit = mnist_test_images(mnist_dir, 1)[0]
    # Black ink on white paper, ten times the size, placed off-centre on a wide sheet.
    big = Image.fromarray(255 - digit).resize((280, 280), Image.Resampling.BICUBIC)
    sheet = Image.new("L", (640, 400), 255)
    sheet.paste(big, (40, 100))

    out = preprocess_digit(sheet)

    assert correlation(out, digit / 255.0) > 0.95
    assert out[0, 0] == 0.0  # the paper became background


def test_grey_paper_and_colour_photos_lose_their_background(mnist_dir: str) -> None:
    # Blue ink on light grey paper, RGB floats, five times the size.
    paper = np.array([0.8, 0.78, 0.75], dtype=np.float32)
    ink = np.array([0.1, 0.1, 0.5], dtype=np.float32)
    scores = []
    for digit in mnist_test_images(mnist_dir, 5).astype(np.float32) / 255.0:
        big = np.asarray(Image.fromarray(digit).resize((140, 140), Image.Resampling.BICUBIC))
        rgb = paper + np.clip(big, 0, 1)[..., None] * (ink - paper)

        out = preprocess_digit(rgb)

        scores.append(correlation(out, digit))
        assert (out == 0).mean() > 0.6  # background is exactly 0 again, as in MNIST
    # Upscaling blurs the strokes a little, so the match is close but not exact.
    assert min(scores) > 0.85 and np.median(scores) > 0.95


def test_transparent_canvas_strokes_are_ink_whatever_their_colour() -> None:
    # What a drawing canvas returns: RGBA, transparent background, opaque black strokes.
    canvas = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).line([(140, 40), (140, 240)], fill=(0, 0, 0, 255), width=18)
    white_on_black = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(white_on_black).line([(140, 40), (140, 240)], fill=255, width=18)

    from_canvas = preprocess_digit(canvas)
    reference = preprocess_digit(white_on_black)

    assert from_canvas.max() == pytest.approx(1.0)
    np.testing.assert_allclose(from_canvas, reference, atol=0.02)
    assert from_canvas[:, 14].sum() > 15  # a vertical stroke down the middle


@pytest.mark.parametrize(
    "blank",
    [
        np.zeros((28, 28), dtype=np.uint8),
        np.full((100, 60), 255, dtype=np.uint8),
        np.full((50, 50), 0.5, dtype=np.float32),
        np.zeros((280, 280, 4), dtype=np.uint8),  # an untouched transparent canvas
    ],
    ids=["black", "white", "grey", "transparent"],
)
def test_an_image_without_ink_is_refused(blank: np.ndarray) -> None:
    with pytest.raises(EmptyImageError, match="the image has no ink"):
        preprocess_digit(blank)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((28, 28), np.nan, dtype=np.float32), "finite"),
        (np.full((28, 28), 2.0), r"\[0, 1\]"),
        (np.zeros((2, 3, 4, 5)), "shape"),
        (np.zeros((28, 28, 2)), "channels"),
        (np.zeros((0, 28)), "empty"),
    ],
    ids=["nan", "out-of-range", "4d", "2-channels", "no-pixels"],
)
def test_arrays_that_are_not_images_get_a_clear_error(array: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        preprocess_digit(array)


def encoded(image: Image.Image, format_name: str) -> Image.Image:
    """`image` written as `format_name` and opened again, not yet decoded (as an upload arrives)."""
    buffer = io.BytesIO()
    image.save(buffer, format=format_name)
    return Image.open(io.BytesIO(buffer.getvalue()))


def a_large_seven(mode: str, size: tuple[int, int] = (2400, 1800)) -> Image.Image:
    width, height = size
    picture = Image.new(mode, size, "white")
    stroke = [(width // 3, height // 5), (width * 2 // 3, height // 5), (width * 2 // 5, height * 4 // 5)]
    ImageDraw.Draw(picture).line(stroke, fill="black", width=height // 12)
    return picture


@pytest.mark.parametrize(
    ("make_picture", "mode"),
    [
        (lambda: a_large_seven("RGB"), "L"),
        (lambda: a_large_seven("RGBA"), "LA"),
        (lambda: Image.new("RGBA", (1999, 2000), (0, 0, 0, 0)), "LA"),
        (lambda: encoded(a_large_seven("RGB"), "JPEG"), "L"),
        (lambda: encoded(a_large_seven("P"), "PNG"), "L"),
        (lambda: encoded(a_large_seven("1"), "PNG"), "L"),
    ],
    ids=["rgb", "rgba", "transparent-rgba", "jpeg", "palette", "1-bit"],
)
def test_pictures_are_shrunk_in_8_bits(make_picture, mode: str) -> None:
    picture = make_picture()
    width, height = picture.size

    shrunk = shrink_picture(picture)

    assert shrunk.mode == mode
    assert WORKING_SIDE // 2 < max(shrunk.size) <= WORKING_SIDE
    assert shrunk.width / shrunk.height == pytest.approx(width / height, rel=0.02)


def test_a_jpeg_is_decoded_at_reduced_scale() -> None:
    jpeg = encoded(a_large_seven("RGB"), "JPEG")

    shrink_picture(jpeg)

    # PIL's draft decoded the file itself at 1/2, 1/4 or 1/8 scale, in grey: never the full 2400x1800.
    assert jpeg.mode == "L" and jpeg.size in [(1200, 900), (600, 450)]


@pytest.mark.parametrize(
    "make_picture",
    [
        lambda: a_large_seven("RGB"),
        lambda: encoded(a_large_seven("RGB"), "JPEG"),
        lambda: encoded(a_large_seven("L").convert("LA"), "PNG"),
    ],
    ids=["rgb", "jpeg", "grey-alpha"],
)
def test_shrinking_first_keeps_the_digit_a_full_size_float_pass_makes(make_picture) -> None:
    full_size = preprocess_digit(np.asarray(make_picture().convert("RGB")))  # arrays: every pixel, floats

    from_picture = preprocess_digit(make_picture())

    # The same digit up to rounding: the box's shorter side and the centring shift are whole pixels,
    # and the shrunk picture's ink box may round to the other side of a half pixel.
    assert_same_digit_up_to_a_pixel(from_picture, full_size)


def test_a_transparent_canvas_stays_ink_after_shrinking() -> None:
    canvas = Image.new("RGBA", (1999, 2000), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).line([(1000, 250), (1000, 1750)], fill=(0, 0, 0, 255), width=100)

    out = preprocess_digit(encoded(canvas, "PNG"))

    assert out[:, 14].sum() > 15  # a vertical stroke down the middle, black strokes read as ink
    assert_same_digit_up_to_a_pixel(out, preprocess_digit(np.asarray(canvas)))


def assert_same_digit_up_to_a_pixel(digit: np.ndarray, reference: np.ndarray) -> None:
    assert correlation(digit, reference) > 0.9
    assert np.abs(np.subtract(ink_box(digit > 0.05), ink_box(reference > 0.05))).max() <= 1
    assert centre_of_mass(digit) == pytest.approx((14, 14), abs=0.6)
    assert centre_of_mass(reference) == pytest.approx((14, 14), abs=0.6)
    assert digit.sum() == pytest.approx(reference.sum(), rel=0.1)  # as much ink


def test_16_bit_grey_reads_as_its_8_bit_twin() -> None:
    digit = np.full((300, 200), 10_000, dtype=np.uint16)  # dark grey paper
    digit[50:250, 90:110] = 50_000  # light ink (clipped to 8 bits, paper and ink would both be white)
    eight_bit = (digit >> 8).astype(np.uint8)

    out = preprocess_digit(encoded(Image.fromarray(digit), "PNG"))

    np.testing.assert_allclose(out, preprocess_digit(Image.fromarray(eight_bit)), atol=1e-6)
    assert out.max() == pytest.approx(1.0)


def test_a_garment_photo_is_prepared_as_fashion_mnist_was():
    from ffcore.images import preprocess_garment, preprocess_picture

    # A dark, wide "bag" photographed on white paper, off-centre in a big picture.
    photo = Image.new("L", (400, 300), 240)
    ImageDraw.Draw(photo).rectangle([40, 60, 240, 160], fill=30)
    garment = preprocess_garment(photo)
    rows, cols = np.flatnonzero(garment.any(axis=1)), np.flatnonzero(garment.any(axis=0))
    assert garment.shape == (28, 28) and garment.max() == pytest.approx(1.0, abs=0.02)  # light on dark
    assert len(cols) == 28, "the product's longer side fills the 28 pixels"
    assert 13 <= len(rows) <= 15 and abs((rows[0] + rows[-1]) / 2 - 13.5) <= 0.5, "centred by its box"
    assert garment[0].max() == 0 and garment[-1].max() == 0
    np.testing.assert_array_equal(preprocess_picture(photo.copy(), "fashion-mnist"), garment)
    digit = preprocess_picture(photo.copy(), "mnist")
    assert np.flatnonzero(digit.any(axis=0)).size <= 21, "digits still go into MNIST's 20-pixel box"


@pytest.mark.parametrize("paper", [220, 140, 120, 100])
def test_dark_ink_on_grey_paper_is_found_however_dim_the_photo(paper):
    # A dim photo: the paper is darker than mid-grey, the ink darker still.
    photo = Image.new("L", (120, 120), paper)
    ImageDraw.Draw(photo).line([(40, 20), (80, 20), (55, 100)], fill=paper - 90, width=6)
    digit = preprocess_digit(photo)
    assert digit.max() == pytest.approx(1.0, abs=0.05) and digit[0].max() == 0  # ink found, background 0
    assert np.flatnonzero(digit.any(axis=0)).size <= 21


def noisy_pictures() -> list[Image.Image]:
    """Grey photos (dark ink on light paper, light on dark, both noisy) and drawing canvases (any
    colour, partly opaque strokes), none larger than WORKING_SIDE: shrinking leaves them as they are."""
    rng = np.random.default_rng(7)
    stroke = Image.new("L", (300, 260), 0)
    ImageDraw.Draw(stroke).line([(90, 40), (210, 50), (120, 220)], fill=255, width=22)
    ink = np.asarray(stroke.resize((150, 130), Image.Resampling.BILINEAR).resize((300, 260)), dtype=float)
    noise = rng.normal(0, 12, ink.shape)
    dark_on_light = np.clip(200 - 0.7 * ink + noise, 0, 255).astype(np.uint8)
    light_on_dark = np.clip(40 + 0.6 * ink + noise, 0, 255).astype(np.uint8)
    canvas = np.dstack([rng.integers(0, 256, (*ink.shape, 3)), ink]).astype(np.uint8)
    return [Image.fromarray(dark_on_light), Image.fromarray(light_on_dark), Image.fromarray(canvas, "RGBA")]


@pytest.mark.parametrize("dataset", ["mnist", "fashion-mnist"])
@pytest.mark.parametrize("index", [0, 1, 2], ids=["dark-on-light", "light-on-dark", "canvas"])
def test_a_picture_is_prepared_exactly_as_its_pixels_in_floats(index: int, dataset: str) -> None:
    # A picture's ink is found in 8 bits and only its bounding box becomes floats; an array goes the
    # whole float pass. The answer must not differ in a single bit.
    from ffcore.images import ink_levels, preprocess_picture

    picture = noisy_pictures()[index]
    from_floats = preprocess_picture(np.asarray(picture), dataset)

    assert np.array_equal(preprocess_picture(picture.copy(), dataset), from_floats)
    assert np.array_equal(preprocess_picture(ink_levels(picture.copy()), dataset), from_floats)
    assert np.array_equal(preprocess_picture(encoded(picture, "PNG"), dataset), from_floats)
