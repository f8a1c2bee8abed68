"""Digits 0-9 drawn in many styles, as picture files: a generated test set for the predict path.

People draw digits with a mouse, a finger or a pen, scan paper forms and photograph notepads. This
module imitates that, deterministically from a seed: each digit is a TrueType glyph (every font
family and weight found on this machine) or a synthetic pen stroke (a polyline per digit with
jittered control points, smoothed), then drawn thin or thick, slanted, rotated, narrow or wide,
small or large in a bigger picture and off-centre, dark ink on light paper or light ink on a dark
ground, on a paper-like background (a mild gradient and noise), optionally blurred and shrunk to a
low resolution (kept small, or enlarged back), and saved as PNG or JPEG. The pictures go through the
real predict path: `ffcore.images.preprocess_digit(Image.open(file))`, as the API does with an upload.

This is NOT a held-out set of real handwriting (that one is kept apart from this project): it is
synthetic, and the fonts differ between machines, so its figures compare models on one machine.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_FOLDERS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"))
# Monospaced and mathematical fonts draw zeros with a dot or a slash, which no one writes.
SKIPPED_FONT_WORDS = ("mono", "math", "symbol", "emoji", "dingbat")
GLYPH_CANVAS = 320  # pixels a side of the canvas one glyph is drawn on, before styling
GLYPH_HEIGHT = 200  # a glyph's height on that canvas, in pixels
MIN_STROKE_PIXELS = 1.5  # the narrowest stroke in a final picture


@dataclass(frozen=True)
class StyleRanges:
    """The ranges each picture's style is drawn from (uniformly unless said otherwise)."""

    pen_fraction: float  # the share of pen strokes; the rest are font glyphs
    stroke: tuple[float, float]  # stroke width as a fraction of the digit's height
    slant: tuple[float, float]  # horizontal shear per unit of height
    rotation_degrees: tuple[float, float]
    aspect: tuple[float, float]  # width multiplier: narrow or wide writing
    digit_fraction: tuple[float, float]  # the digit's height as a fraction of the picture's height
    picture_side: tuple[int, int]  # the picture's height and, independently, width, in pixels
    blur: tuple[float, float]  # Gaussian radius in MNIST pixels (a 20-pixel-tall digit)
    low_resolution: float  # the chance of being shrunk to a digit height in low_resolution_height
    low_resolution_height: tuple[int, int]
    light_on_dark: float  # the chance of light ink on a dark ground
    contrast: tuple[float, float]  # |ink - paper| as a fraction of 255
    jpeg: float  # the chance of being saved as JPEG (else PNG)


VARIED = StyleRanges(
    pen_fraction=0.5,
    stroke=(0.02, 0.16),
    slant=(-0.35, 0.35),
    rotation_degrees=(-15, 15),
    aspect=(0.75, 1.25),
    digit_fraction=(0.15, 0.85),
    picture_side=(64, 720),
    blur=(0.0, 1.2),
    low_resolution=0.35,
    low_resolution_height=(9, 18),
    light_on_dark=0.3,
    contrast=(0.35, 0.95),
    jpeg=0.4,
)
# Clear pictures of plainly drawn digits: what any usable model should read.
EASY = StyleRanges(
    pen_fraction=1.0,
    stroke=(0.07, 0.12),
    slant=(-0.1, 0.1),
    rotation_degrees=(-5, 5),
    aspect=(0.9, 1.1),
    digit_fraction=(0.5, 0.8),
    picture_side=(120, 400),
    blur=(0.0, 0.3),
    low_resolution=0.0,
    low_resolution_height=(20, 20),
    light_on_dark=0.3,
    contrast=(0.7, 0.95),
    jpeg=0.0,
)

# Pen strokes per digit: polylines in a unit box (x to the right, y down), as people commonly write
# them; each digit has one or more variants. The control points are jittered per picture.
Stroke = list[tuple[float, float]]
_OVAL = [(0.5 + 0.3 * math.sin(a), 0.5 - 0.46 * math.cos(a)) for a in np.linspace(0, 2 * math.pi, 13)]
PEN_DIGITS: dict[int, list[list[Stroke]]] = {
    0: [[_OVAL], [[(0.55, 0.04), *_OVAL[1:], (0.45, 0.06)]]],
    1: [[[(0.52, 0.04), (0.5, 0.96)]], [[(0.4, 0.16), (0.54, 0.04), (0.52, 0.96)]]],
    2: [
        [[(0.2, 0.26), (0.32, 0.08), (0.52, 0.03), (0.72, 0.1), (0.76, 0.3), (0.62, 0.52), (0.4, 0.72),
          (0.18, 0.95), (0.82, 0.95)]],
        [[(0.22, 0.22), (0.45, 0.04), (0.72, 0.14), (0.7, 0.4), (0.2, 0.95), (0.45, 0.88), (0.82, 0.93)]],
    ],
    3: [
        [[(0.22, 0.12), (0.45, 0.03), (0.7, 0.1), (0.74, 0.28), (0.6, 0.44), (0.4, 0.48), (0.66, 0.55),
          (0.78, 0.74), (0.68, 0.92), (0.45, 0.97), (0.2, 0.88)]],
    ],
    4: [
        [[(0.62, 0.03), (0.16, 0.66), (0.86, 0.66)], [(0.64, 0.3), (0.64, 0.97)]],
        [[(0.26, 0.04), (0.2, 0.58), (0.82, 0.58)], [(0.66, 0.05), (0.66, 0.97)]],
    ],
    5: [
        [[(0.3, 0.06), (0.26, 0.44), (0.5, 0.38), (0.72, 0.48), (0.78, 0.72), (0.64, 0.93), (0.4, 0.97),
          (0.2, 0.86)], [(0.3, 0.06), (0.78, 0.05)]],
    ],
    6: [
        [[(0.7, 0.04), (0.45, 0.2), (0.27, 0.5), (0.25, 0.76), (0.38, 0.95), (0.6, 0.95), (0.75, 0.78),
          (0.68, 0.58), (0.48, 0.53), (0.28, 0.64)]],
    ],
    7: [
        [[(0.18, 0.06), (0.82, 0.06), (0.56, 0.5), (0.42, 0.96)]],
        [[(0.18, 0.14), (0.2, 0.06), (0.82, 0.06), (0.56, 0.5), (0.42, 0.96)], [(0.36, 0.5), (0.76, 0.5)]],
    ],
    8: [
        [[(0.5, 0.49), (0.7, 0.37), (0.72, 0.17), (0.5, 0.04), (0.28, 0.17), (0.3, 0.37), (0.5, 0.49),
          (0.74, 0.67), (0.72, 0.88), (0.5, 0.97), (0.28, 0.88), (0.26, 0.67), (0.5, 0.49)]],
    ],
    9: [
        [[(0.72, 0.28), (0.6, 0.07), (0.4, 0.05), (0.26, 0.22), (0.32, 0.42), (0.52, 0.45), (0.72, 0.28),
          (0.7, 0.6), (0.62, 0.96)]],
        [[(0.72, 0.26), (0.58, 0.06), (0.36, 0.06), (0.26, 0.24), (0.36, 0.42), (0.58, 0.4), (0.72, 0.26),
          (0.72, 0.96)]],
    ],
}  # fmt: skip


@dataclass(frozen=True)
class StyledDigit:
    """One generated picture: its true digit, the picture file, and how it was drawn."""

    label: int
    data: bytes  # a PNG or JPEG file
    style: dict[str, Any]

    def picture(self) -> Image.Image:
        """The file opened (not yet decoded), as the API opens an upload."""
        return Image.open(io.BytesIO(self.data))


@cache
def available_fonts() -> tuple[Path, ...]:
    """Every TrueType/OpenType font file on this machine that draws ordinary digits, sorted."""
    found = set()
    for folder in FONT_FOLDERS:
        if folder.is_dir():
            found.update(p for p in folder.rglob("*") if p.suffix.lower() in (".ttf", ".otf"))
    return tuple(sorted(p for p in found if not any(w in p.name.lower() for w in SKIPPED_FONT_WORDS)))


def styled_digits(count: int, seed: int = 0, ranges: StyleRanges = VARIED) -> list[StyledDigit]:
    """`count` pictures, labels 0, 1, ..., 9, 0, ... in turn; picture i depends only on (seed, i)."""
    return [styled_digit(i % 10, np.random.default_rng([seed, i]), ranges) for i in range(count)]


def styled_digit(label: int, rng: np.random.Generator, ranges: StyleRanges = VARIED) -> StyledDigit:
    """One picture of `label` in a style drawn from `ranges` with `rng`."""
    fonts = available_fonts()
    font = None
    if not fonts or rng.random() < ranges.pen_fraction:
        variant = int(rng.integers(len(PEN_DIGITS[label])))
        source = f"pen {variant}"
    else:
        font = fonts[int(rng.integers(len(fonts)))]
        source = font.name
    style: dict[str, Any] = {
        "source": source,
        "stroke": float(rng.uniform(*ranges.stroke)),
        "slant": float(rng.uniform(*ranges.slant)),
        "rotation": float(rng.uniform(*ranges.rotation_degrees)),
        "aspect": float(rng.uniform(*ranges.aspect)),
        "digit_fraction": float(rng.uniform(*ranges.digit_fraction)),
        "height": int(rng.integers(ranges.picture_side[0], ranges.picture_side[1] + 1)),
        "width": int(rng.integers(ranges.picture_side[0], ranges.picture_side[1] + 1)),
        "blur": float(rng.uniform(*ranges.blur)),
        "light_on_dark": bool(rng.random() < ranges.light_on_dark),
        "contrast": float(rng.uniform(*ranges.contrast)),
        "format": "JPEG" if rng.random() < ranges.jpeg else "PNG",
    }
    low_resolution = rng.random() < ranges.low_resolution
    low_height = int(rng.integers(ranges.low_resolution_height[0], ranges.low_resolution_height[1] + 1))
    style["low_resolution_height"] = low_height if low_resolution else None
    style["enlarge_back"] = bool(rng.random() < 0.5)
    # A stroke narrower than MIN_STROKE_PIXELS in the final picture fades into the paper's noise (a
    # picture no one could read): such strokes are drawn that wide instead.
    final_height = min(style["digit_fraction"] * style["height"], low_height if low_resolution else math.inf)
    style["stroke"] = max(style["stroke"], MIN_STROKE_PIXELS / final_height)

    if font is None:
        glyph = _pen_glyph(label, variant, style["stroke"], rng)
    else:
        glyph = _font_glyph(label, font, style["stroke"])
    picture = _compose(_shape(glyph, style), style, rng)
    buffer = io.BytesIO()
    if style["format"] == "JPEG":
        style["jpeg_quality"] = int(rng.integers(55, 95))
        picture.save(buffer, format="JPEG", quality=style["jpeg_quality"])
    else:
        picture.save(buffer, format="PNG")
    return StyledDigit(label=label, data=buffer.getvalue(), style=style)


def _pen_glyph(label: int, variant: int, stroke: float, rng: np.random.Generator) -> Image.Image:
    """The digit's pen strokes, control points jittered and smoothed, as an ink mask (L)."""
    canvas = Image.new("L", (GLYPH_CANVAS, GLYPH_CANVAS), 0)
    draw = ImageDraw.Draw(canvas)
    width = max(1, round(stroke * GLYPH_HEIGHT))
    margin = (GLYPH_CANVAS - GLYPH_HEIGHT) / 2
    for points in PEN_DIGITS[label][variant]:
        jittered = np.asarray(points) + rng.normal(0.0, 0.025, (len(points), 2))
        smooth = _chaikin(jittered, rounds=3) * GLYPH_HEIGHT + margin
        path = [(float(x), float(y)) for x, y in smooth]
        draw.line(path, fill=255, width=width, joint="curve")
        for x, y in (path[0], path[-1]):  # round pen ends
            draw.ellipse((x - width / 2, y - width / 2, x + width / 2, y + width / 2), fill=255)
    return canvas


def _chaikin(points: np.ndarray, rounds: int) -> np.ndarray:
    """Corner cutting: a smooth curve through the polyline's ends that follows its control points."""
    for _ in range(rounds):
        a, b = points[:-1], points[1:]
        cut = np.empty((2 * len(a), 2))
        cut[0::2], cut[1::2] = 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b
        points = np.vstack([points[:1], cut, points[-1:]])
    return points


def _font_glyph(label: int, font_path: Path, stroke: float) -> Image.Image:
    """The digit in a font, thickened (or thinned) towards `stroke`, as an ink mask (L)."""
    font = ImageFont.truetype(str(font_path), size=round(GLYPH_HEIGHT * 1.35))
    canvas = Image.new("L", (GLYPH_CANVAS, GLYPH_CANVAS), 0)
    ImageDraw.Draw(canvas).text(
        (GLYPH_CANVAS / 2, GLYPH_CANVAS / 2), str(label), fill=255, font=font, anchor="mm"
    )
    # A regular font's strokes are about a tenth of its digits' height: grow or shrink them towards the
    # drawn width, a pixel a side per pass, thinning no further than to 40% of the ink (light weights).
    change = round((stroke - 0.1) * GLYPH_HEIGHT / 2)
    ink = np.count_nonzero(np.asarray(canvas))
    for _ in range(abs(change)):
        thinner = canvas.filter(ImageFilter.MaxFilter(3) if change > 0 else ImageFilter.MinFilter(3))
        if change < 0 and np.count_nonzero(np.asarray(thinner)) < 0.4 * ink:
            break
        canvas = thinner
    return canvas


def _shape(glyph: Image.Image, style: dict[str, Any]) -> Image.Image:
    """Slant, rotate and stretch the glyph; crop it to its ink."""
    side = glyph.width
    # A shear of the sampled positions: x_in = x_out + slant * (y_out - centre).
    glyph = glyph.transform(
        (side, side), Image.Transform.AFFINE, (1, style["slant"], -style["slant"] * side / 2, 0, 1, 0),
        resample=Image.Resampling.BICUBIC,
    )  # fmt: skip
    glyph = glyph.rotate(style["rotation"], resample=Image.Resampling.BICUBIC, expand=True)
    box = glyph.getbbox()
    if box is None:
        raise ValueError("the glyph has no ink")  # thinning stops well before that
    glyph = glyph.crop(box)
    return glyph.resize(
        (max(1, round(glyph.width * style["aspect"])), glyph.height), Image.Resampling.BICUBIC
    )


def _compose(glyph: Image.Image, style: dict[str, Any], rng: np.random.Generator) -> Image.Image:
    """Place the glyph on a paper-like picture, then blur it and lower its resolution."""
    digit_height = max(8, round(style["digit_fraction"] * style["height"]))
    digit_width = max(2, round(glyph.width * digit_height / glyph.height))
    # Paper shows around the digit on every side (a margin of a tenth of its height at least), so
    # that the picture's border is background, as preprocessing expects.
    margin = max(2, round(0.1 * digit_height))
    height = style["height"] = max(style["height"], digit_height + 2 * margin)
    width = style["width"] = max(style["width"], digit_width + 2 * margin)
    mask = glyph.resize((digit_width, digit_height), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (width, height), 0)
    top = int(rng.integers(margin, height - digit_height - margin + 1))
    left = int(rng.integers(margin, width - digit_width - margin + 1))
    canvas.paste(mask, (left, top))
    ink = np.asarray(canvas, dtype=np.float32) / 255.0
    style["position"] = [left, top]

    contrast = style["contrast"] * 255
    # preprocess_digit tells the ink's polarity by whether the border is lighter than mid-grey, so
    # paper stays above it and a dark ground below it (dimmer paper is a gap of the predict path).
    if style["light_on_dark"]:
        paper = float(rng.uniform(0, min(255 - contrast, 0.45 * 255)))
        ink_level = paper + contrast
    else:
        paper = float(rng.uniform(max(contrast, 0.55 * 255), 255))
        ink_level = paper - contrast
    tint = rng.uniform(-6, 6, 3)  # paper and ink are rarely pure grey
    # Uneven light: a gradient across the picture of up to 4% of the contrast, and noise of 1.5%.
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    light = (rng.uniform(-1, 1) * xs + rng.uniform(-1, 1) * ys) * 0.04 * contrast
    background = paper + light + rng.normal(0.0, 0.015 * contrast, (height, width))
    grey = background * (1 - ink) + ink_level * ink
    rgb = np.clip(grey[..., None] + tint, 0, 255).astype(np.uint8)
    picture = Image.fromarray(rgb, "RGB")

    # The radius in MNIST pixels at this size; at most a stroke's width, or a thin stroke fades away.
    blur_pixels = min(style["blur"], style["stroke"] * 20) * digit_height / 20
    if blur_pixels > 0.05:
        picture = picture.filter(ImageFilter.GaussianBlur(blur_pixels))
    low = style["low_resolution_height"]
    if low is not None and low < digit_height:
        factor = low / digit_height
        small = picture.resize(
            (max(1, round(width * factor)), max(1, round(height * factor))), Image.Resampling.BOX
        )
        picture = small.resize((width, height), Image.Resampling.BILINEAR) if style["enlarge_back"] else small
    return picture


def style_summary(digit: StyledDigit) -> dict[str, Any]:
    """The digit's label and style, as JSON-ready values."""
    return {"label": digit.label, **digit.style}
