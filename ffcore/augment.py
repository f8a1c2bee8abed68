"""Style augmentation: MNIST digits redrawn as people's pictures of digits come out of preprocessing.

MNIST's digits are all written with a similar pen, scanned alike and then fitted into a 20x20 box.
Digits drawn with a mouse or a marker, written with a fine pen, scanned at low resolution or
photographed come out of `ffcore.images.preprocess_digit` thicker or thinner, slanted, blurred or
blocky. `augment_styles` redraws a random fraction of a training batch as such pictures would come
out of preprocessing, each image in its own style:

- stroke thickness: blended towards a 3x3 dilation or erosion (max-pooling, written as maxima of
  shifted views: several times faster than max_pool2d on a CPU);
- blur: a Gaussian of random width; resolution loss: shrunk to 16 or 12 pixels a side and enlarged
  back (bilinear, antialiased). Both are linear and separable, so each image gets one 28x28
  operator that two batched matrix products apply to its columns and rows;
- geometry: slant (shear), rotation and narrower or wider writing, after which the ink is fitted
  into the 20-pixel box and its centre of mass put at pixel (14, 14), as preprocess_digit does, then
  scaled down a little and shifted (as a speck of dirt in a picture makes preprocessing do): one
  affine map per image (`affine_grid` / `grid_sample`, bilinear);

Everything runs batched on the batch's device and draws from the training generator, so a seeded
run is reproducible and a resumed one continues the same draws; on a CPU only the chosen images are
restyled. The label pixels (the first NUM_CLASSES) are passed through untouched: the training step
embeds the labels there afterwards.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ffcore.config import IMAGE_SIZE, NUM_CLASSES

# The ranges each image's style is drawn from, uniformly.
# Blend towards an erosion (< 0) or a dilation (> 0); a full erosion leaves too little of MNIST's
# thinner digits (fainter than any preprocessed picture of a fine pen's digit).
THICKNESS = (-0.6, 1.0)
BLUR_SIGMA = (0.0, 1.0)  # pixels; below about 0.3 the Gaussian leaves an image as it is
BLUR_RADIUS = 3  # the kernel's taps on each side: enough for the widest sigma
LOW_RESOLUTIONS = (16, 12)  # sides an image may be shrunk to; each with this probability:
LOW_RESOLUTION_PROBABILITY = 0.2
SLANT = (-0.35, 0.35)  # horizontal shear per unit of height (0.35: about 19 degrees)
ROTATION_DEGREES = (-12.0, 12.0)
ASPECT = (0.75, 1.25)  # width multiplier: narrower or wider writing
SCALE = (0.8, 1.05)  # the ink's longer side, relative to the box it is fitted into
SHIFT_PIXELS = 2.0  # the centre of mass ends up to this many pixels away in x and in y
BOX = 20  # as ffcore.images: the box preprocessing fits the ink into,
CENTRE = 0.5  # and where it puts the centre of mass: pixel 14, half a pixel past the middle
NOISE_FLOOR = 0.1  # as ffcore.images: ink under this fraction of the strongest is background

# The columns of the one uniform draw per image.
_CHOSEN, _THICKNESS, _BLUR, _LOW_RESOLUTION, _SLANT, _ROTATION, _ASPECT, _SCALE, _SHIFT_X, _SHIFT_Y = range(
    10
)
_DRAWS = 10


def augment_styles(images: torch.Tensor, fraction: float, rng: torch.Generator) -> torch.Tensor:
    """Restyle about `fraction` of `images` (N, 784; pixel values in [0, 1]), each with its own random
    thickness, geometry, blur and resolution; the other images and every image's label pixels are
    returned as they were. A new tensor on the images' device, values in [0, 1]."""
    draws = torch.rand((len(images), _DRAWS), generator=rng, device=images.device, dtype=images.dtype)
    chosen = draws[:, _CHOSEN] < fraction
    if images.device.type == "cpu":
        # Restyle only the chosen images: finding them costs a CPU nothing. (On a GPU that would wait
        # for the device; restyling every image and keeping the chosen ones costs it next to nothing.)
        index = chosen.nonzero().squeeze(1)
        out = images.clone()
        if len(index):
            out[index] = restyle(images[index], draws[index])
    else:
        out = torch.where(chosen[:, None], restyle(images, draws), images)
    out[:, :NUM_CLASSES] = images[:, :NUM_CLASSES]  # the label pixels are the training step's
    return out


def restyle(images: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """Every image (N, 784) restyled by its row of `draws` (N, 10; uniform in [0, 1)), label pixels
    included (the caller restores them)."""
    n = len(images)

    def uniform(column: int, bounds: tuple[float, float]) -> torch.Tensor:
        low, high = bounds
        return low + (high - low) * draws[:, column]

    x = images.view(n, 1, IMAGE_SIZE, IMAGE_SIZE)
    x = _thickness(x, uniform(_THICKNESS, THICKNESS))
    # Blur, then resolution loss: both linear and separable, so one operator per image and axis.
    # Preprocessing stretches a blurred picture's ink back to full strength; a thin stroke it leaves
    # faint (shrunk into the box, it covers part of a pixel), so only the blur's loss is undone.
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    blur = _blur_operators(uniform(_BLUR, BLUR_SIGMA))
    x = _separable(x, _resolution_operators(draws[:, _LOW_RESOLUTION]) @ blur)
    x = x * (peak / x.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6))
    x = _refit(
        x,
        slant=uniform(_SLANT, SLANT),
        rotation=uniform(_ROTATION, ROTATION_DEGREES) * (math.pi / 180),
        aspect=uniform(_ASPECT, ASPECT),
        scale=uniform(_SCALE, SCALE),
        shift=torch.stack(
            [uniform(column, (-SHIFT_PIXELS, SHIFT_PIXELS)) for column in (_SHIFT_X, _SHIFT_Y)], 1
        ),
    )
    return x.reshape(n, -1).clamp(0.0, 1.0)


def _max_3x3(x: torch.Tensor) -> torch.Tensor:
    """The maximum over each pixel's 3x3 neighbourhood (blank outside): a dilation, as separable
    maxima of shifted views (several times faster than max_pool2d on a CPU)."""
    padded = F.pad(x, (1, 1, 1, 1))
    rows = torch.maximum(torch.maximum(padded[..., :-2], padded[..., 1:-1]), padded[..., 2:])
    return torch.maximum(torch.maximum(rows[..., :-2, :], rows[..., 1:-1, :]), rows[..., 2:, :])


def _thickness(x: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Blend each image towards its 3x3 erosion (amount -1..0) or dilation (0..1)."""
    a = amount.view(-1, 1, 1, 1)
    eroded = -_max_3x3(-x)  # blank outside counts as ink-free: strokes at the edge thin too
    return torch.where(a < 0, torch.lerp(x, eroded, -a), torch.lerp(x, _max_3x3(x), a))


def _refit(
    x: torch.Tensor,
    slant: torch.Tensor,
    rotation: torch.Tensor,
    aspect: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
) -> torch.Tensor:
    """Slant, rotate and stretch each image's drawing, then fit its ink into `scale` times the box
    and put its centre of mass `shift` (N, 2: x, y in pixels) away from where preprocessing puts it.

    Coordinates are in pixels from the image's middle, (x, y). The drawing maps a point p to
    A p with A = rotation @ [[aspect, slant], [0, 1]]; the ink's box and centre of mass in the new
    drawing come from the old pixels' positions, so one resampling does it all.
    """
    n = len(x)
    cos, sin = torch.cos(rotation)[:, None], torch.sin(rotation)[:, None]
    slant, aspect = slant[:, None], aspect[:, None]
    steps = torch.arange(IMAGE_SIZE, device=x.device, dtype=x.dtype) - (IMAGE_SIZE - 1) / 2
    ys, xs = (grid.reshape(1, -1) for grid in torch.meshgrid(steps, steps, indexing="ij"))  # (1, 784)
    mass = x.reshape(n, -1)
    mass = mass * (mass > NOISE_FLOOR * mass.amax(dim=1, keepdim=True))  # the ink preprocessing sees
    # Where each pixel goes, (N, 784) per axis; pixels without ink are sent far off both ways, so
    # that they count in neither end of the box (written out: much faster than a masked matmul).
    far = (mass <= 0) * (4.0 * IMAGE_SIZE)
    drawn_x = cos * aspect * xs + (cos * slant - sin) * ys
    drawn_y = sin * aspect * xs + (sin * slant + cos) * ys
    sides = [(d + far).amin(dim=1) for d in (drawn_x, drawn_y)]
    sides = [(d - far).amax(dim=1) - low + 1 for d, low in zip((drawn_x, drawn_y), sides, strict=True)]
    longer_side = torch.maximum(*sides).clamp(1, IMAGE_SIZE * 2)  # a blank image stays blank
    zoom = BOX * scale[:, None] / longer_side[:, None]  # (N, 1)
    total = mass.sum(dim=1, keepdim=True).clamp_min(1e-6)
    centre_of_mass = (
        torch.cat([(mass * xs).sum(1, keepdim=True), (mass * ys).sum(1, keepdim=True)], 1) / total
    )
    # A pixel q of the result shows the drawing's point p with q = zoom A (p - com) + target, so
    # p = A^-1 (q - target) / zoom + com; A's determinant is `aspect`.
    inverse = (
        torch.cat([sin * slant + cos, sin - cos * slant, -sin * aspect, cos * aspect], dim=1).view(n, 2, 2)
        / (aspect * zoom)[..., None]
    )
    target = CENTRE + shift
    offset = centre_of_mass - (inverse @ target[..., None]).squeeze(-1)
    # affine_grid's coordinates run from -1 to 1 across the image: pixels / (IMAGE_SIZE / 2).
    theta = torch.cat([inverse, (offset / (IMAGE_SIZE / 2))[..., None]], dim=2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _separable(x: torch.Tensor, operators: torch.Tensor) -> torch.Tensor:
    """Apply each image's (28, 28) linear operator to its columns and its rows: L x L^T."""
    return operators[:, None] @ x @ operators[:, None].transpose(-1, -2)


def _blur_operators(sigma: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28): a Gaussian blur of width `sigma` (pixels) per image along one axis, truncated at
    BLUR_RADIUS, blank outside the image (as a convolution with zero padding)."""
    taps = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1, device=sigma.device, dtype=sigma.dtype)
    # A tiny sigma puts all the weight on the middle tap: the image unchanged.
    weights = torch.exp(-(taps**2) / (2 * sigma.clamp_min(0.05)[:, None] ** 2))
    weights = weights / weights.sum(dim=1, keepdim=True)  # (N, taps)
    bands = _band_matrices(sigma.device, sigma.dtype)  # (taps, 28 * 28)
    return (weights @ bands).view(-1, IMAGE_SIZE, IMAGE_SIZE)


def _resolution_operators(draw: torch.Tensor) -> torch.Tensor:
    """(N, 28, 28): shrinking to one of LOW_RESOLUTIONS and enlarging back along one axis, each with
    LOW_RESOLUTION_PROBABILITY (`draw`, uniform in [0, 1), picks); the identity for the others."""
    choices = _resampling_operators(draw.device, draw.dtype)
    pick = (draw / LOW_RESOLUTION_PROBABILITY).clamp_max(len(LOW_RESOLUTIONS)).long()
    return choices[pick]


# Constant operators, made once per device and dtype.
_operators: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}


def _band_matrices(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(taps, 28 * 28): for each tap offset t, the flattened matrix with ones where column - row = t."""
    key = ("bands", device, dtype)
    if key not in _operators:
        positions = torch.arange(IMAGE_SIZE)
        offsets = positions[None, :] - positions[:, None]
        taps = torch.arange(-BLUR_RADIUS, BLUR_RADIUS + 1)
        bands = (offsets[None] == taps[:, None, None]).reshape(len(taps), -1)
        _operators[key] = bands.to(device=device, dtype=dtype)
    return _operators[key]


def _resampling_operators(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """(len(LOW_RESOLUTIONS) + 1, 28, 28): each low resolution's shrink-and-enlarge operator along one
    axis (antialiased bilinear both ways: no shift of the ink), then the identity."""
    key = ("resampling", device, dtype)
    if key not in _operators:
        basis = torch.eye(IMAGE_SIZE, dtype=torch.float64).view(IMAGE_SIZE, 1, 1, IMAGE_SIZE)
        operators = []
        for side in LOW_RESOLUTIONS:
            low = F.interpolate(basis, size=(1, side), mode="bilinear", antialias=True, align_corners=False)
            back = F.interpolate(low, size=(1, IMAGE_SIZE), mode="bilinear", align_corners=False)
            operators.append(back.view(IMAGE_SIZE, IMAGE_SIZE).T)  # column j: what pixel j becomes
        operators.append(torch.eye(IMAGE_SIZE, dtype=torch.float64))
        _operators[key] = torch.stack(operators).to(device=device, dtype=dtype)
    return _operators[key]
