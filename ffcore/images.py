"""MNIST-style preprocessing of any digit image (and Fashion-MNIST-style of any garment picture).

MNIST digits were made by fitting the ink of each scanned digit into a 20x20 box (keeping its aspect
ratio, anti-aliased) and placing that box in a 28x28 field so that the centre of mass of the ink sits
at the field's centre; ink is white (1) on black (0). A model trained on MNIST only recognises digits
prepared the same way, so a drawn or photographed digit goes through `preprocess_digit` first.

A picture is first shrunk in 8 bits (`shrink_picture`: grey or grey + alpha, at most WORKING_SIDE pixels
on its longer side; a JPEG is decoded at reduced scale) and only then turned into floats: a 20x20 digit
needs no more, and a large picture as float arrays would cost gigabytes.

Fashion-MNIST was made differently: each product photo was trimmed to the product, its longer edge
resized to 28 pixels, and the result centred (by its bounding box) and negated, light on dark. A
garment picture goes through `preprocess_garment`; `preprocess_picture(image, dataset)` picks the
one a model's data set needs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ffcore.config import IMAGE_SIZE

BOX = 20  # MNIST fitted each digit's ink into a 20x20 box
CENTRE = IMAGE_SIZE // 2  # and placed the box so that the ink's centre of mass sits here
# Ink below this fraction of the strongest stroke is paper noise, not part of the digit.
NOISE_FLOOR = 0.1
# An image whose ink contrast stays under this is blank.
MIN_CONTRAST = 0.1
# Pictures are shrunk to at most this many pixels on their longer side before any float conversion:
# plenty to find and measure a digit that ends up 20 pixels tall.
WORKING_SIDE = 512
# Below this opacity somewhere, a picture has a transparent background and its opacity is the ink.
OPAQUE = 0.98


class EmptyImageError(ValueError):
    """The image holds no digit: no ink stands out from the background."""

    def __init__(self) -> None:
        super().__init__("the image has no ink")


def preprocess_digit(image: Image.Image | np.ndarray) -> np.ndarray:
    """A digit image of any size as MNIST would have it: float32 (28, 28), ink 1 on background 0.

    Accepts a PIL image (any mode; shrunk first with `shrink_picture`, which decodes an unloaded JPEG
    at reduced scale, changing that image object) or an array: (H, W) grey, (H, W, 3) RGB or (H, W, 4)
    RGBA, either uint8 (0..255) or float in [0, 1]. Dark ink on a light background is inverted. With a
    transparent background (RGBA, e.g. a drawing canvas) the opacity is the ink. Raises EmptyImageError
    when there is no ink, ValueError for an array that is not an image.
    """
    ink = _picture_ink(shrink_picture(image)) if isinstance(image, Image.Image) else _array_ink(image)
    ink = _remove_background(ink)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    digit = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    digit = _fit_in_box(digit)
    return _place_by_centre_of_mass(digit)


def preprocess_garment(image: Image.Image | np.ndarray) -> np.ndarray:
    """A garment picture as Fashion-MNIST would have it: float32 (28, 28), the product trimmed, its
    longer side 28 pixels, centred by its bounding box, light on a dark background. Accepts what
    `preprocess_digit` accepts (a photo on light paper is inverted); raises EmptyImageError when
    nothing stands out from the background."""
    ink = _picture_ink(shrink_picture(image)) if isinstance(image, Image.Image) else _array_ink(image)
    ink = _remove_background(ink)
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    product = _fit_in_box(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], IMAGE_SIZE)
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    h, w = product.shape
    top, left = (IMAGE_SIZE - h) // 2, (IMAGE_SIZE - w) // 2
    field[top : top + h, left : left + w] = product
    return field


def preprocess_picture(image: Image.Image | np.ndarray, dataset: str = "mnist") -> np.ndarray:
    """The picture as the data set `dataset` ('mnist' or 'fashion-mnist') prepared its images."""
    return preprocess_garment(image) if dataset == "fashion-mnist" else preprocess_digit(image)


def shrink_picture(image: Image.Image, longest_side: int = WORKING_SIDE) -> Image.Image:
    """The picture in 8 bits, grey (L) or grey + opacity (LA) when it has any transparency, at most
    `longest_side` pixels on its longer side (box-averaged by a whole factor).

    An unloaded JPEG is decoded straight at 1/2, 1/4 or 1/8 scale and in grey (PIL's draft, which
    changes `image`); other pictures are decoded whole (`load`) and raise what PIL raises for a damaged
    file (OSError, SyntaxError, ValueError). Costs about one 8-bit copy of the decoded picture.
    """
    if image.width == 0 or image.height == 0:
        raise ValueError("the image is empty (zero pixels)")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    mode = "LA" if has_alpha else "L"
    scale = min(1.0, longest_side / max(image.size))
    image.draft(mode, (max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    image.load()
    if image.mode == "I" or image.mode.startswith("I;16"):
        # 16-bit grey (PNG): PIL's convert("L") would clip every value above 255 to white.
        image = Image.fromarray((np.asarray(image) >> 8).clip(0, 255).astype(np.uint8))
    small = image.convert(mode) if image.mode != mode else image
    factor = -(-max(small.size) // longest_side)  # ceil: the longer side ends at most longest_side
    return small.reduce(factor) if factor > 1 else small


def _picture_ink(picture: Image.Image) -> np.ndarray:
    """Ink density in [0, 1] of a shrunk (L or LA) picture, still with its background level."""
    array = np.asarray(picture, dtype=np.float32) / 255.0
    if picture.mode == "LA":
        opacity = array[..., 1]
        if opacity.min() < OPAQUE:
            # A transparent background (a drawing canvas): whatever is opaque is the drawing,
            # whatever its colour.
            return opacity
        array = array[..., 0]
    return _invert_if_light_background(array)


def _array_ink(image: np.ndarray) -> np.ndarray:
    """Ink density in [0, 1] of an image array, where 1 is the strongest ink (still with its background
    level)."""
    array = _array_in_unit_range(np.asarray(image))
    if array.ndim == 3:
        channels = array.shape[2]
        if channels not in (1, 3, 4):
            raise ValueError(f"an image array has 1, 3 or 4 channels, got shape {array.shape}")
        if channels == 4:
            alpha = array[..., 3]
            if alpha.min() < OPAQUE:
                return alpha  # a transparent background: the opacity is the ink
            array = array[..., :3]
        # ITU-R 601 luma, as PIL's convert("L").
        array = array[..., 0] if channels == 1 else array @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return _invert_if_light_background(array)


def _array_in_unit_range(array: np.ndarray) -> np.ndarray:
    if array.ndim not in (2, 3):
        raise ValueError(f"an image is (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    if array.size == 0:
        raise ValueError("the image is empty (zero pixels)")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise ValueError(f"pixel values must be real numbers, got {array.dtype}")
    array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise ValueError("pixel values must be finite (no NaN or infinity)")
    if array.min() < 0 or array.max() > 1:
        raise ValueError("float pixel values must lie in [0, 1] (use uint8 for 0..255)")
    return array


def _invert_if_light_background(grey: np.ndarray) -> np.ndarray:
    # The border is mostly background; the ink is whatever lies farthest from it. Ink darker than
    # the background (dark ink on paper, even on grey paper in a dim photo) is inverted.
    background = float(np.median(np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])))
    darker, lighter = background - float(grey.min()), float(grey.max()) - background
    return 1.0 - grey if darker > lighter else grey


def _remove_background(ink: np.ndarray) -> np.ndarray:
    """Stretch ink so the background is 0 and the strongest stroke 1; blank images raise."""
    border = np.concatenate([ink[0], ink[-1], ink[:, 0], ink[:, -1]])
    background = float(np.median(border))
    peak = float(ink.max())
    if peak - background < MIN_CONTRAST:
        raise EmptyImageError()
    ink = np.clip((ink - background) / (peak - background), 0.0, 1.0)
    ink[ink < NOISE_FLOOR] = 0.0
    return ink


def _fit_in_box(digit: np.ndarray, box: int = BOX) -> np.ndarray:
    """Scale so the longer side is `box` pixels, keeping the aspect ratio (anti-aliased)."""
    height, width = digit.shape
    scale = box / max(height, width)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(digit.astype(np.float32)).resize(new_size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _place_by_centre_of_mass(digit: np.ndarray) -> np.ndarray:
    """Put the digit into a 28x28 field with its centre of mass at the field's centre (integer shift)."""
    total = digit.sum()
    rows, cols = np.indices(digit.shape)
    com_row, com_col = (rows * digit).sum() / total, (cols * digit).sum() / total
    # MNIST digits have their centre of mass at pixel (14, 14) (measured over the test set: 14.0 +- 0.3).
    top, left = round(CENTRE - com_row), round(CENTRE - com_col)
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    h, w = digit.shape
    # Clip the paste at the field's edges (a lopsided digit may reach past them, as in MNIST).
    dst_top, dst_left = max(top, 0), max(left, 0)
    dst_bottom, dst_right = min(top + h, IMAGE_SIZE), min(left + w, IMAGE_SIZE)
    field[dst_top:dst_bottom, dst_left:dst_right] = digit[
        dst_top - top : dst_bottom - top, dst_left - left : dst_right - left
    ]
    return field
