"""One Pathfinder image: contours placed (`canvas`), markers on target tips, drawn
(`render`).

An image holds two target contours and several shorter distractor contours, each a chain
of short line segments ("paddles") separated by small gaps. Two markers sit on contour
tips; the label says whether both markers lie on the same contour. When the targets stay
stuck the whole image is redrawn, and after `_IMAGE_ATTEMPTS` redraws generation fails
loudly.

Rendering (`render`), step for step as the original: PIL lines of width
`paddle_thickness * antialias_scale` at the fine scale, Lanczos downsampling, the contrast
of the LRA settings (targets: paddle x snake contrast; distractors: snake contrast),
markers drawn over the whole image, and the image rescaled by its own min and max. How the
images compare with the original's (saturated pixels, pixels above 64, distractors
placed) is measured in benchmarks/results/pathfinder_generator.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from luna_jax.data.pathfinder import render
from luna_jax.data.pathfinder.canvas import place_contours
from luna_jax.data.pathfinder.geometry import contour_tips, paddle_segments
from luna_jax.data.pathfinder.settings import PathfinderSettings

_IMAGE_ATTEMPTS = 50  # full redraws before giving up


@dataclasses.dataclass(kw_only=True)
class Sample:
  """One generated image and the bookkeeping behind it.

  Attributes:
    image: (H, W) uint8.
    label: 1 if both markers lie on the same contour, else 0.
    contours: each (num_paddles + 1, 2) float pivots (y, x); contours[0] and
      contours[1] are the targets, the rest distractors.
    marker_centres: the two marker centres (y, x).
    marker_contours: index into `contours` of the contour each marker sits on.
    paddle_margin: the margin this image drew.
  """

  image: np.ndarray
  label: int
  contours: list[np.ndarray]
  marker_centres: tuple[tuple[float, float], tuple[float, float]]
  marker_contours: tuple[int, int]
  paddle_margin: float


def generate_sample(rng: np.random.Generator, settings: PathfinderSettings,
                    label: int) -> Sample:
  """Draws one image with the given label (1: both markers on one target contour).

  As in the reference, the image draws its margin from `settings.paddle_margins`, and
  the first marker goes on the start tip of either target, chosen at random; the second
  goes on the end tip of the same target (label 1) or of the other one (label 0).
  Deterministic given the state of `rng`. Raises RuntimeError if the settings leave
  no room for the targets after a bounded number of full redraws.
  """
  if label not in (0, 1):
    raise ValueError(f"label must be 0 or 1, got {label!r}.")
  margin = settings.paddle_margins[int(rng.integers(len(settings.paddle_margins)))]
  settings = settings.with_margin(margin)
  for _ in range(_IMAGE_ATTEMPTS):
    contours = place_contours(rng, settings)
    if contours is not None:
      break
  else:
    raise RuntimeError(f"Could not place the target contours in {_IMAGE_ATTEMPTS} "
                       f"attempts; the canvas is too crowded for {settings}.")
  origin = int(rng.integers(2))
  marker_contours = (origin, origin if label == 1 else 1 - origin)
  markers = np.stack([contour_tips(contours[marker_contours[0]], margin)[0],
                      contour_tips(contours[marker_contours[1]], margin)[1]])
  paddles = [(a, b, settings.target_contrast if i < 2 else settings.distractor_contrast)
             for i, contour in enumerate(contours)
             for a, b in zip(*paddle_segments(contour, margin), strict=True)]
  image = render.render(settings.resolution, settings.antialias_scale, paddles, markers,
                        paddle_length=settings.paddle_length,
                        thickness=settings.paddle_thickness, margin=margin,
                        marker_radius=settings.marker_radius)
  return Sample(
      image=image,
      label=int(label),
      contours=contours,
      marker_centres=tuple((float(y), float(x)) for y, x in markers),
      marker_contours=marker_contours,
      paddle_margin=float(margin))
