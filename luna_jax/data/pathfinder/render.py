"""Pathfinder rendering as Linsley et al.'s generator (snakes2.py) draws the LRA release.

The original draws every paddle on its own: a PIL line of width
`round(paddle_thickness * antialias_scale)` at `antialias_scale` times the output
resolution, downsampled with Lanczos (scipy's old `imresize`, which is PIL's resize after
scaling the array to 0-255), scaled by the paddle's contrast, and max-combined into the
image. Each marker is a disc of `marker_radius` drawn at the same fine scale over the
whole image and downsampled the same way, at full intensity. The finished image is
rescaled to 0-255 by its own minimum and maximum (old `scipy.misc.imsave`). Strokes
(contrast below 1 / their Lanczos peak) therefore stay below the markers' cores, which
are about the only saturated pixels.

We reproduce each of those steps with PIL's own line drawing and Lanczos filter,
windows included: the original resamples each paddle in a window of
`2 * (paddle_length + ceil(thickness) + margin) * scale + 1` fine pixels, centred on the
paddle's start, down to `2 * (paddle_length + ceil(thickness) + margin) + 1` output
pixels. That ratio is a little below `scale` (17 to 9 at 32 x 32), so a paddle's peak
depends on its direction and reaches above half intensity for some; at 32 x 32 the
distractors' contrast of 2 then outshines the markers and the final rescaling dims the
marker cores (the peaks: benchmarks/results/pathfinder_generator.md). The original's
positions are whole pixels; ours are real numbers, so a paddle starts at the pixel
holding its start point (the original's `start_coord`), its far end is rounded up at the
fine scale (its `translate_coord`), and a marker is centred on the fine pixel at the top
left of the pixel holding its tip.

A paddle's window depends only on integers (its far end at the fine scale, the stroke
width, the window's size), so each distinct one is drawn once per process and reused
(how many a resolution needs: benchmarks/results/pathfinder_generator.md). Markers are
kept the same way.

Coordinates are (y, x) in output pixels; pixel (i, j) covers [i, i + 1) x [j, j + 1).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from PIL import Image, ImageDraw


def _downsample(fine: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Fine uint8 image -> (h, w) float in [0, 1], by PIL's Lanczos (as `imresize`)."""
  image = Image.fromarray(fine).resize((size[1], size[0]), Image.Resampling.LANCZOS)
  return np.asarray(image, np.float64) / 255.0


def window_half(paddle_length: float, thickness: float, margin: float) -> int:
  """Half the side, less one, of the original's paddle window in output pixels."""
  return int(math.ceil(paddle_length + math.ceil(thickness) + margin))


def paddle_image(start: np.ndarray, end: np.ndarray, thickness: float, half: int,
                 scale: int) -> tuple[tuple[int, int], np.ndarray]:
  """One paddle, drawn at `scale` x resolution and downsampled, in the original's window.

  Args:
    start, end: (2,) endpoints (y, x) in output pixels.
    thickness: the stroke's full width in output pixels (PIL width thickness * scale).
    half: `window_half(...)`: the window has 2 * half * scale + 1 fine pixels a side and
      2 * half + 1 output pixels.
  Returns:
    (top, left) of the window in output pixels and the (n, n) window in [0, 1].
  """
  width = max(1, int(round(thickness * scale)))
  centre = half * scale  # the fine pixel of the start
  head = tuple(int(math.ceil(centre + (end[i] - start[i]) * scale)) for i in (0, 1))
  pixel = [int(math.floor(start[i])) for i in (0, 1)]
  return (pixel[0] - half, pixel[1] - half), _paddle_window(head, width, half, scale)


@functools.lru_cache(maxsize=4096)
def _paddle_window(head: tuple[int, int], width: int, half: int, scale: int) -> np.ndarray:
  """The downsampled window of a line from the fine window's centre to `head` (fine
  pixels (y, x)). A window depends on these integers alone, and a resolution has a few
  hundred of them, so each is drawn once per process. Read-only."""
  centre = half * scale
  fine = Image.new("L", (2 * centre + 1, 2 * centre + 1), 0)
  ImageDraw.Draw(fine).line([(centre, centre), (head[1], head[0])], fill=255, width=width)
  window = _downsample(np.asarray(fine), (2 * half + 1, 2 * half + 1))
  window.flags.writeable = False
  return window


def disc_image(size: int, centre: np.ndarray, radius: float, scale: int) -> np.ndarray:
  """A marker over the whole (size, size) image, as the original draws it: fine pixels
  within `radius` (in output pixels) of the fine pixel at the top left of the pixel
  holding `centre`, downsampled -> (size, size) in [0, 1]. Read-only."""
  pixel = tuple(int(math.floor(centre[i])) for i in (0, 1))
  return _disc_at(size, pixel, float(radius), scale)


@functools.lru_cache(maxsize=256)
def _disc_at(size: int, pixel: tuple[int, int], radius: float, scale: int) -> np.ndarray:
  """`disc_image` of a marker in output pixel `pixel`, kept for reuse (at 32 x 32 a
  set has 1,024 positions; the cache holds the recent ones)."""
  fy, fx = (p * scale for p in pixel)
  dy = (np.arange(size * scale) - fy)[:, None]
  dx = (np.arange(size * scale) - fx)[None, :]
  lit = (dy * dy + dx * dx) <= (radius * scale)**2
  disc = _downsample(np.where(lit, np.uint8(255), np.uint8(0)), (size, size))
  disc.flags.writeable = False
  return disc


def bytescale(image: np.ndarray) -> np.ndarray:
  """Float image -> uint8 spanning its own min..max, rounded (old scipy.misc.bytescale)."""
  low, high = float(image.min()), float(image.max())
  if high == low:
    return np.zeros(image.shape, np.uint8)
  return (np.clip((image - low) * (255.0 / (high - low)), 0, 255) + 0.5).astype(np.uint8)


def render(size: int, scale: int, paddles: list[tuple[np.ndarray, np.ndarray, float]],
           markers: np.ndarray, *, paddle_length: float, thickness: float, margin: float,
           marker_radius: float) -> np.ndarray:
  """The finished image.

  Args:
    size: output resolution.
    scale: the anti-alias scale.
    paddles: (start, end, contrast) of every paddle.
    markers: (2, 2) marker centres.
    paddle_length, thickness, margin: the paddles' length, full stroke width and gap,
      in output pixels (they size the original's windows).
    marker_radius: in output pixels.
  Returns:
    (size, size) uint8.
  """
  half = window_half(paddle_length, thickness, margin)
  pad = 2 * half + 1
  canvas = np.zeros((size + 2 * pad, size + 2 * pad))  # windows never need clipping
  for a, b, contrast in paddles:
    (top, left), window = paddle_image(a, b, thickness, half, scale)
    region = canvas[top + pad:top + pad + window.shape[0],
                    left + pad:left + pad + window.shape[1]]
    np.maximum(region, contrast * window, out=region)
  image = canvas[pad:pad + size, pad:pad + size]
  for centre in markers:
    image = np.maximum(image, disc_image(size, centre, marker_radius, scale))
  return bytescale(image)
