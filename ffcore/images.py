"""MNIST-style preprocessing of any digit image (and Fashion-MNIST-style of any garment picture).

MNIST digits were made by fitting the ink of each scanned digit into a 20x20 box (keeping its aspect
ratio, anti-aliased) and placing that box in a 28x28 field so that the centre of mass of the ink sits
at the field's centre; ink is white (1) on black (0). A model trained on MNIST only recognises digits
prepared the same way, so a drawn or photographed digit goes through `preprocess_digit` first.

A picture is first shrunk in 8 bits (`shrink_picture`: grey or grey + alpha, at most WORKING_SIDE pixels
on its longer side; a JPEG is decoded at reduced scale) and only then turned into floats: a 20x20 digit
needs no more, and a large picture as float arrays would cost gigabytes. Only the band the ink is read
from is kept (`ink_levels`: the opacity of a transparent canvas, else the grey), and only its ink's
bounding box becomes floats, found in 8 bits (the float pass maps each level to one value).

Fashion-MNIST was made differently: each product photo was trimmed to the product, its longer edge
resized to 28 pixels, and the result centred (by its bounding box) and negated, light on dark. A
garment picture goes through `preprocess_garment`; `preprocess_picture(image, dataset)` picks the
one a model's data set needs.
"""

from __future__ import annotations

from typing import NamedTuple

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


class InkLevels(NamedTuple):
    """A picture's 8-bit levels that its ink is read from (`ink_levels`)."""

    levels: np.ndarray  # uint8 (H, W), the picture shrunk as by `shrink_picture`
    opacity: bool  # the levels are opacities (a transparent background), else grey


class EmptyImageError(ValueError):
    """The image holds no digit: no ink stands out from the background."""

    def __init__(self) -> None:
        super().__init__("the image has no ink")


def preprocess_digit(image: Image.Image | InkLevels | np.ndarray) -> np.ndarray:
    """A digit image of any size as MNIST would have it: float32 (28, 28), ink 1 on background 0.

    Accepts a PIL image (any mode; shrunk first as by `shrink_picture`, which decodes an unloaded JPEG
    at reduced scale, changing that image object), its `ink_levels`, or an array: (H, W) grey,
    (H, W, 3) RGB or (H, W, 4) RGBA, either uint8 (0..255) or float in [0, 1]. Dark ink on a light
    background is inverted. With a transparent background (RGBA, e.g. a drawing canvas) the opacity is
    the ink. Raises EmptyImageError when there is no ink, ValueError for an array that is not an image.
    """
    digit = _fit_in_box(_trimmed_ink(image))
    return _place_by_centre_of_mass(digit)


def preprocess_garment(image: Image.Image | InkLevels | np.ndarray) -> np.ndarray:
    """A garment picture as Fashion-MNIST would have it: float32 (28, 28), the product trimmed, its
    longer side 28 pixels, centred by its bounding box, light on a dark background. Accepts what
    `preprocess_digit` accepts (a photo on light paper is inverted); raises EmptyImageError when
    nothing stands out from the background."""
    product = _fit_in_box(_trimmed_ink(image), IMAGE_SIZE)
    field = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    h, w = product.shape
    top, left = (IMAGE_SIZE - h) // 2, (IMAGE_SIZE - w) // 2
    field[top : top + h, left : left + w] = product
    return field


def preprocess_picture(image: Image.Image | InkLevels | np.ndarray, dataset: str = "mnist") -> np.ndarray:
    """The picture as the data set `dataset` ('mnist' or 'fashion-mnist') prepared its images."""
    return preprocess_garment(image) if dataset == "fashion-mnist" else preprocess_digit(image)


def shrink_picture(image: Image.Image, longest_side: int = WORKING_SIDE) -> Image.Image:
    """The picture in 8 bits, grey (L) or grey + opacity (LA) when it has any transparency, at most
    `longest_side` pixels on its longer side (box-averaged by a whole factor).

    An unloaded JPEG is decoded straight at 1/2, 1/4 or 1/8 scale and in grey (PIL's draft, which
    changes `image`); other pictures are decoded whole (`load`) and raise what PIL raises for a damaged
    file (OSError, SyntaxError, ValueError). Costs about one 8-bit copy of the decoded picture.
    """
    image, mode = _decoded(image, longest_side)
    return _reduced(image.convert(mode) if image.mode != mode else image, longest_side)


def _decoded(image: Image.Image, longest_side: int) -> tuple[Image.Image, str]:
    """`image` loaded (a JPEG in grey at reduced scale), 16-bit grey as 8 bits, and the mode
    `shrink_picture` gives it: LA when it has any transparency, else L."""
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
    return image, mode


def _reduced(small: Image.Image, longest_side: int) -> Image.Image:
    factor = -(-max(small.size) // longest_side)  # ceil: the longer side ends at most longest_side
    return small.reduce(factor) if factor > 1 else small


def _trimmed_ink(image: Image.Image | InkLevels | np.ndarray) -> np.ndarray:
    """The image's ink in [0, 1] with its background removed (`_remove_background`), cut to the ink's
    bounding box."""
    if isinstance(image, Image.Image):
        image = ink_levels(image)
    if isinstance(image, InkLevels):
        return _trimmed_picture_ink(*image)
    ink = _remove_background(_array_ink(image))
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def ink_levels(image: Image.Image) -> InkLevels:
    """The 8-bit levels of a picture, shrunk as by `shrink_picture` (decoding it, which changes
    `image`, and raising what that raises), that its ink is read from: with a transparent background
    (a drawing canvas) its opacity, as whatever is opaque is the drawing, whatever its colour; else its
    grey levels. `preprocess_picture` takes these as it takes the picture."""
    image, mode = _decoded(image, WORKING_SIDE)
    if image.mode in ("RGBA", "LA"):
        # The opacity alone, without the grey levels `shrink_picture` would compute from the colours:
        # its LA picture has these very opacities (the shrinking box-averages every band on its own).
        opacity = np.asarray(_reduced(image.getchannel("A"), WORKING_SIDE))
        if _is_transparent(opacity):
            return InkLevels(opacity, True)
    picture = _reduced(image.convert(mode) if image.mode != mode else image, WORKING_SIDE)
    if picture.mode == "LA":
        opacity = np.asarray(picture.getchannel("A"))
        if _is_transparent(opacity):
            return InkLevels(opacity, True)
        return InkLevels(np.asarray(picture.getchannel("L")), False)
    return InkLevels(np.asarray(picture), False)


def _is_transparent(opacity: np.ndarray) -> bool:
    return bool(_unit(opacity.min()) < OPAQUE)


def _trimmed_picture_ink(pixels: np.ndarray, transparent: bool) -> np.ndarray:
    """`_trimmed_ink` of a picture's 8-bit levels (`ink_levels`): the same float pass as for an array
    (to [0, 1], inverted if the ink is dark, background removed), but run only on the ink's bounding
    box. That box is found in 8 bits: the pass maps each 8-bit level to one float, monotonically, so it
    is first run on the 256 levels to learn which of them stay ink, the background and peak coming from
    the picture's border and extremes, which are levels too."""
    darkest, lightest = pixels.min(), pixels.max()
    invert = not transparent and _ink_is_darker(_unit(_border(pixels)), _unit(darkest), _unit(lightest))

    def ink_of(levels: np.ndarray) -> np.ndarray:
        grey = _unit(levels)
        return 1.0 - grey if invert else grey

    table = ink_of(np.arange(256, dtype=np.uint8))
    # The table is monotonic: the strongest ink is at the darkest or the lightest level.
    background, peak = _background_and_peak(table[_border(pixels)], max(table[darkest], table[lightest]))
    kept = np.flatnonzero(_stretch(table, background, peak))  # an interval of levels: the table is monotonic
    lowest, highest = int(kept[0]), int(kept[-1])  # Python ints: compared with uint8 pixels in 8 bits
    mask = (pixels >= lowest) & (pixels <= highest)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return _stretch(ink_of(pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]), background, peak)


def _unit(levels: np.ndarray | np.generic) -> np.ndarray:
    """8-bit levels as float32 in [0, 1]."""
    return np.asarray(levels, dtype=np.float32) / 255.0


def _border(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])


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
    return 1.0 - array if _ink_is_darker(_border(array), array.min(), array.max()) else array


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


def _ink_is_darker(border: np.ndarray, darkest: np.generic, lightest: np.generic) -> bool:
    """Whether the ink of a grey picture (in [0, 1]) whose border pixels are `border` and extremes
    `darkest` and `lightest` is darker than its background (then the picture is inverted)."""
    # The border is mostly background; the ink is whatever lies farthest from it. Ink darker than
    # the background (dark ink on paper, even on grey paper in a dim photo) is inverted.
    background = float(np.median(border))
    darker, lighter = background - float(darkest), float(lightest) - background
    return darker > lighter


def _remove_background(ink: np.ndarray) -> np.ndarray:
    """Stretch ink so the background is 0 and the strongest stroke 1; blank images raise."""
    return _stretch(ink, *_background_and_peak(_border(ink), ink.max()))


def _background_and_peak(border: np.ndarray, peak: np.generic) -> tuple[float, float]:
    """The background level (median of the border pixels `border`) and the strongest ink `peak` of a
    picture's ink; EmptyImageError when the ink stands out too little."""
    background = float(np.median(border))
    if float(peak) - background < MIN_CONTRAST:
        raise EmptyImageError()
    return background, float(peak)


def _stretch(ink: np.ndarray, background: float, peak: float) -> np.ndarray:
    """Ink with `background` made 0 and `peak` 1, faint ink (below NOISE_FLOOR) 0."""
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
