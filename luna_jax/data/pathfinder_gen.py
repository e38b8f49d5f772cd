"""Seeded generator of Pathfinder images (Linsley et al. 2018), in the LRA release layout.

An image holds two target contours and several shorter distractor contours, each a chain
of short line segments ("paddles") separated by small gaps. Two markers sit on contour
tips; the label says whether both markers lie on the same contour.

Settings. Those of LRA's `data/pathfinder.py` docstring (the arguments Linsley et al.'s
`snakes2.py` ran with for the release) for 32, 64, 128 and 256, and the generator's own
defaults where that docstring gives none (paddle length 5 at 128 and 256; padding 22
and seed distance 27 at 256), except the paddle length at 64, which is ours (3; see
_GEOMETRY). At 128 the margin is drawn per image from {2, 3}.

Geometry. A contour starts at a tip, where its first paddle begins, and each paddle's
far end is `paddle_margin` short of the next pivot, from which the next paddle starts
`paddle_margin` out: pivots p_0 .. p_n are `paddle_length + 2 * paddle_margin` apart,
paddle k is the part of p_k -> p_{k+1} that leaves a gap of `paddle_margin` at both ends,
and the tips (where markers go) are the outer ends of the first and last paddles, p_0
and p_n themselves lying `paddle_margin` beyond them as in the original. A contour's first
direction is uniform; each later change of direction is drawn from a 3-degree grid with
weight cos^2(min(continuity * |dtheta|, pi / 2)), among the candidates that stay on the
canvas and off the occupancy mask.

Occupancy. The reference keeps a raster mask, dilates it by the margin and rejects
paddles whose own dilated mask touches it. Here the mask is kept in vector form: every
drawn paddle is a capsule, a segment with a radius (half the stroke width plus the
margin: its dilated mask), every marker a disc, and a candidate paddle's dilated mask
overlaps them exactly when its segment comes closer than (capsule radius + half the
stroke width + margin), so paddles keep (stroke width + 2 margins) apart. That is the same test without
discretisation, and it is cheap to vectorise over all candidate directions at once. A
contour's own newest paddle is exempt, as in the reference, since the next paddle always
starts next to it. The targets' tips also get marker-sized discs, so that no other stroke
touches a marker (the reference does not reserve them; a marker hidden under a distractor
only makes an example ambiguous).

Speed. An image tests about 190 candidate paddles against a few dozen capsules (at 32 x
32 hard; most belong to target pairs that get stuck and are regrown), so the cost is
Python's per call, not arithmetic: the usual test (one candidate drawn by weight) runs in
plain floats against the capsules whose bounding boxes reach it, and numpy only tests
every candidate at once when those draws fail or a contour ends. Drawing reuses each
distinct paddle window (`pathfinder_render`). Both give the same bytes as the plain
numpy version before them: 2.0x its images per second at 32 x 32, 2.1x at 128 x 128
(README, "LRA data").

Growth. As in the reference, the first target tip is drawn at least 2 * seed_distance
from the border, the second `seed_distance` from it, and the two targets grow one
paddle each in turn; distractors start anywhere free. A stuck target pair is regrown
from fresh seeds a bounded number of times, then the whole image is redrawn; a distractor
that stays stuck after `_DISTRACTOR_ATTEMPTS` tries is left out, as the reference does
(its `allow_incomplete`), and after a bounded number of full redraws generation fails
loudly.

Rendering: `pathfinder_render`, step for step as the original: PIL lines of width
`paddle_thickness * antialias_scale` at the fine scale, Lanczos downsampling, the
contrast of the LRA settings (targets: paddle x snake contrast; distractors: snake
contrast), markers drawn over the whole image, and the image rescaled by its own min and
max. Measured on 1,000 32 x 32 hard images (`python benchmarks/pathfinder_images.py`):
2.46 saturated pixels (>= 250) per image and 13.6% of pixels above 64, where the original
draws 2.7 and 12.4% (shared/reference/lra.md); 1.88 of the 5 distractors fit, on
average, in the original's budget of tries.

Coordinates are (y, x) in output pixels; pixel (i, j) covers [i, i + 1) x [j, j + 1).
"""

from __future__ import annotations

import bisect
import dataclasses
import functools
import math
import os
import pathlib
import shutil
from collections.abc import Callable

import numpy as np

from luna_jax.data import pathfinder_render, readers


@dataclasses.dataclass(frozen=True)
class PathfinderSettings:
  """All the knobs of one Pathfinder variant; lengths are in output pixels.

  `paddle_thickness` is a stroke's full width (PIL's line width at the anti-alias scale,
  divided by that scale); `padding` is a border that no stroke may enter;
  `paddle_margins` are the margins an image draws its own from (one, except at 128).
  Contrasts scale a stroke's intensity before the image is rescaled to 0-255.
  """

  resolution: int
  padding: int
  antialias_scale: int
  paddle_margins: tuple[float, ...]
  seed_distance: float
  marker_radius: float
  contour_length: int
  paddle_length: float
  paddle_thickness: float
  continuity: float
  distractor_length: int
  num_distractor_snakes: int
  target_contrast: float
  distractor_contrast: float

  @property
  def paddle_margin(self) -> float:
    """The margin, for settings with a single one (see `with_margin`)."""
    if len(self.paddle_margins) != 1:
      raise ValueError(f"these settings draw the margin per image from {self.paddle_margins}; "
                       "use with_margin() to fix one.")
    return self.paddle_margins[0]

  def with_margin(self, margin: float) -> "PathfinderSettings":
    return dataclasses.replace(self, paddle_margins=(margin,))

  @property
  def step(self) -> float:
    """Distance between consecutive pivots of a contour."""
    return self.paddle_length + 2 * self.paddle_margin

  @property
  def stroke_radius(self) -> float:
    """Half a stroke's width: the radius of a paddle's capsule in the occupancy mask."""
    return self.paddle_thickness / 2


# name -> (subset folder of the LRA release, contour_length).
DIFFICULTIES: dict[str, tuple[str, int]] = {
    "easy": ("curv_baseline", 6),
    "intermediate": ("curv_contour_length_9", 9),
    "hard": ("curv_contour_length_14", 14),
}

RESOLUTIONS = (32, 64, 128, 256)

# Per resolution, from LRA's data/pathfinder.py docstring (the snakes2.py arguments of the
# release); where it is silent, snakes2_wrapper.py's defaults (marked "default"). The
# number of distractor snakes is budget // distractor_length (Python 2's `/` there), so
# their total paddle count is roughly constant across difficulties. Contrasts: targets
# get paddle_contrast x snake_contrast, distractors snake_contrast alone.
_GEOMETRY: dict[int, dict] = {
    32: dict(padding=1, paddle_margins=(1,), seed_distance=7, marker_radius=1.5,
             paddle_length=2, paddle_thickness=0.5, continuity=1.0, budget=20,
             snake_contrast=2.0, paddle_contrast=0.75),
    # 64: the docstring gives no paddle length, and the generator's default (5) leaves
    # two 14-paddle targets room in fewer than 1 in 200 tries at continuity 1.8; 3 is
    # this project's choice (between 32's 2 and 128's 5).
    64: dict(padding=1, paddle_margins=(1,), seed_distance=12, marker_radius=2.5,
             paddle_length=3, paddle_thickness=1.0, continuity=1.8, budget=22,
             snake_contrast=0.8, paddle_contrast=1.0),  # paddle_contrast: default
    128: dict(padding=1, paddle_margins=(2, 3), seed_distance=20, marker_radius=3,
              paddle_length=5,  # default
              paddle_thickness=1.5, continuity=1.8, budget=35,
              snake_contrast=0.9, paddle_contrast=1.0),  # paddle_contrast: default
    256: dict(padding=22, paddle_margins=(3,), seed_distance=27,  # padding, seed: default
              marker_radius=5, paddle_length=5,  # default
              paddle_thickness=2.0, continuity=1.8, budget=30,
              snake_contrast=1.0, paddle_contrast=1.0),  # paddle_contrast: default
}
_ANTIALIAS_SCALE = 2  # every resolution (the docstring sets 4, then overrides it with 2)

# Bounded retries: a target pair that gets stuck is regrown from fresh seeds this many
# times, then the whole image is redrawn; after _IMAGE_ATTEMPTS we give up loudly. A
# distractor gets as many tries as the reference gives it (max_distractor_contour_retrial
# = 4, so 5), then is left out.
_TARGET_ATTEMPTS = 20
_DISTRACTOR_ATTEMPTS = 5
_DISTRACTOR_PADDLE_DRAWS = 3  # the reference's max_paddle_retrial = 2, so 3 draws
_IMAGE_ATTEMPTS = 50

_TURN_GRID = np.deg2rad(np.arange(-90, 91, 3, dtype=np.float64))
_SEED_GRID = np.deg2rad(np.arange(0, 360, 3, dtype=np.float64))
_SEED_CANDIDATES = 16  # distractor start points drawn (and checked) per attempt
_LAZY_DRAWS = 6  # single-candidate tests before testing all candidates at once


def settings_for(resolution: int, difficulty: str = "hard") -> PathfinderSettings:
  """The settings for one of RESOLUTIONS and one of DIFFICULTIES."""
  if resolution not in _GEOMETRY:
    raise ValueError(
        f"Unknown Pathfinder resolution {resolution!r}; expected one of {RESOLUTIONS}.")
  if difficulty not in DIFFICULTIES:
    raise ValueError(f"Unknown Pathfinder difficulty {difficulty!r}; expected one of "
                     f"{sorted(DIFFICULTIES)}.")
  geometry = dict(_GEOMETRY[resolution])
  budget = int(geometry.pop("budget"))
  snake_contrast = geometry.pop("snake_contrast")
  paddle_contrast = geometry.pop("paddle_contrast")
  contour_length = DIFFICULTIES[difficulty][1]
  distractor_length = contour_length // 3
  return PathfinderSettings(
      resolution=resolution,
      antialias_scale=_ANTIALIAS_SCALE,
      contour_length=contour_length,
      distractor_length=distractor_length,
      num_distractor_snakes=budget // distractor_length,
      target_contrast=paddle_contrast * snake_contrast,
      distractor_contrast=snake_contrast,
      **geometry)


@dataclasses.dataclass
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


# ---------------------------------------------------------------------------------------
# Geometry. The checks run many times per image on small arrays, where the number of
# numpy calls, not their size, sets the cost; hence the hand-expanded formulas.


def _unit(theta: np.ndarray) -> np.ndarray:
  """(...,) angles -> (..., 2) unit vectors (y, x)."""
  return np.stack([np.sin(theta), np.cos(theta)], axis=-1)


def _norm2(v: np.ndarray) -> np.ndarray:
  """(M, 2) -> (M,) squared lengths."""
  return v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1]


def _point_segment_distance2(p: np.ndarray, a: np.ndarray, e: np.ndarray,
                             length2: np.ndarray) -> np.ndarray:
  """Squared distances from points to segments a -> a + e.

  Args:
    p: (K, 2) points. a, e: (M, 2). length2: (M,) |e|^2, kept > 0 for discs (e = 0).
  Returns:
    (K, M).
  """
  wy = p[:, 0, None] - a[:, 0]
  wx = p[:, 1, None] - a[:, 1]
  t = np.minimum(np.maximum((wy * e[:, 0] + wx * e[:, 1]) / length2, 0.0), 1.0)
  ry, rx = wy - t * e[:, 0], wx - t * e[:, 1]
  return ry * ry + rx * rx


def _ray_segment_distance2(p: np.ndarray, u: np.ndarray, near: float, far: float,
                           a: np.ndarray, e: np.ndarray, length2: np.ndarray,
                           crossings: bool = True) -> np.ndarray:
  """Squared distances between segments p + s u_k (near <= s <= far) and a_j -> a_j + e_j.

  All candidates share the start p, which turns every term into a few (K, M) products.

  Args:
    p: (2,). u: (K, 2) unit directions. a, e: (M, 2). length2: (M,) |e|^2 (> 0).
    crossings: whether to detect crossing segments (distance 0). A caller may skip it
      when it only compares with clearances above (far - near) / 2: a crossing then
      already puts a candidate endpoint within that distance of the obstacle.
  Returns:
    (K, M).
  """
  w = a - p  # obstacle starts, relative to p
  w2 = _norm2(w)
  proj = u @ w.T  # (K, M): u_k . w_j
  along = u @ e.T  # u_k . e_j
  # Obstacle endpoints onto the candidate segments.
  s0 = np.minimum(np.maximum(proj, near), far)
  s1 = np.minimum(np.maximum(proj + along, near), far)
  we = w + e
  dist2 = np.minimum(w2 - 2 * s0 * proj + s0 * s0,
                     _norm2(we) - 2 * s1 * (proj + along) + s1 * s1)
  # Candidate endpoints p + s u onto the obstacles: with q = (p + s u - a) . e,
  # |p + s u - a - t e|^2 = |p + s u - a|^2 - 2 t q + t^2 |e|^2.
  g = -(w[:, 0] * e[:, 0] + w[:, 1] * e[:, 1])
  for s in (near, far):
    q = g + s * along
    t = np.minimum(np.maximum(q / length2, 0.0), 1.0)
    dist2 = np.minimum(dist2, w2 - 2 * s * proj + s * s - 2 * t * q + t * t * length2)
  if not crossings:
    return dist2
  # A proper crossing keeps all four endpoints away: the obstacle's ends lie on both
  # sides of the candidate's line (side0 * side1 < 0) and it meets that line at
  # s = proj + side0 / (side0 - side1) * along, strictly inside (near, far); the test
  # is multiplied through by (side0 - side1) to avoid dividing.
  perp = np.array([1.0, -1.0])  # v -> (v_x, -v_y), so that u . perp(v) = u x v
  side0 = u @ (w[:, ::-1] * perp).T
  d = -(u @ (e[:, ::-1] * perp).T)  # side0 - side1, side1 being u x (w + e)
  side1 = side0 - d
  num = proj * d + side0 * along
  crosses = (side0 * side1 < 0) & ((num - near * d) * (far * d - num) > 0)
  return np.where(crosses, 0.0, dist2)


def _ray_clear(py: float, px: float, uy: float, ux: float, near: float, far: float,
               obstacles: list[tuple[float, ...]], crossings: bool) -> bool:
  """Scalar twin of `_ray_segment_distance2` for a single candidate: whether it keeps
  clear of every obstacle (ay, ax, ey, ex, |e|^2, clearance^2).

  Plain floats beat numpy by far for the one candidate that usually turns out free.
  """
  for ay, ax, ey, ex, length2, clear2 in obstacles:
    wy, wx = ay - py, ax - px
    w2 = wy * wy + wx * wx
    proj = uy * wy + ux * wx
    along = uy * ey + ux * ex
    # Clamps written as comparisons: the values of min(max(x, lo), hi), without the calls.
    s0 = near if proj < near else (far if proj > far else proj)
    if w2 - 2 * s0 * proj + s0 * s0 < clear2:
      return False
    proj1 = proj + along
    s1 = near if proj1 < near else (far if proj1 > far else proj1)
    vy, vx = wy + ey, wx + ex
    if vy * vy + vx * vx - 2 * s1 * proj1 + s1 * s1 < clear2:
      return False
    g = -(wy * ey + wx * ex)
    for s in (near, far):
      q = g + s * along
      t = q / length2
      t = 0.0 if t < 0.0 else (1.0 if t > 1.0 else t)
      if w2 - 2 * s * proj + s * s - 2 * t * q + t * t * length2 < clear2:
        return False
    if crossings:
      side0 = uy * wx - ux * wy
      d = ux * ey - uy * ex  # side0 - side1, side1 being u x (w + e)
      num = proj * d + side0 * along
      if side0 * (side0 - d) < 0 and (num - near * d) * (far * d - num) > 0:
        return False
  return True


class _Occupancy:
  """The dilated occupancy mask in vector form: a growing list of owned capsules.

  Held in Python lists of floats. A query meets a few dozen capsules, and a loop that
  first compares bounding boxes is cheaper there than numpy's cost per call; `arrays`
  gives the numpy form for the tests that cover many candidates at once.
  """

  def __init__(self, radius: float, margin: float):
    """radius, margin: those of the paddle queries (`_Canvas.add_paddle`), whose squared
    clearance each capsule keeps ready."""
    self.query = (radius, margin)
    # Capsule segments a -> a + e as (ay, ax, ey, ex, |e|^2, clearance^2 of the paddle
    # queries): `_ray_clear`'s obstacles.
    self.obstacles: list[tuple[float, float, float, float, float, float]] = []
    self.boxes: list[tuple[float, float, float, float]] = []  # (y0, y1, x0, x1), capsule
    self.radius: list[float] = []
    self.owner: list[int] = []
    self.exempt: dict[int, tuple[int, ...]] = {}  # owner -> capsules its checks ignore

  @property
  def count(self) -> int:
    return len(self.obstacles)

  def add(self, a, b, radius: float, owner: int, exempt: bool = False) -> None:
    """A capsule a -> b (each (y, x)) of `radius`; a disc when a == b."""
    ay, ax = float(a[0]), float(a[1])
    ey, ex = float(b[0]) - ay, float(b[1]) - ax
    clearance = radius + self.query[0] + self.query[1]  # summed in `nearby`'s order
    self.obstacles.append((ay, ax, ey, ex, max(ey * ey + ex * ex, 1e-12),
                           clearance * clearance))
    self.boxes.append((min(ay, ay + ey) - radius, max(ay, ay + ey) + radius,
                       min(ax, ax + ex) - radius, max(ax, ax + ex) + radius))
    self.radius.append(radius)
    self.owner.append(owner)
    if exempt:
      self.exempt[owner] = self.exempt.get(owner, ()) + (self.count - 1,)

  def add_paddle(self, a, b, radius: float, owner: int) -> None:
    """Only the owner's newest paddle stays exempt from the owner's own checks."""
    self.exempt[owner] = ()
    self.add(a, b, radius, owner, exempt=True)

  def save(self) -> tuple[int, dict[int, tuple[int, ...]]]:
    return self.count, dict(self.exempt)

  def restore(self, state: tuple[int, dict[int, tuple[int, ...]]]) -> None:
    """Forgets everything added since `save`."""
    n, exempt = state
    for values in (self.obstacles, self.boxes, self.radius, self.owner):
      del values[n:]
    self.exempt = dict(exempt)

  def boxed(self, owner: int, radius: float, margin: float, centre, reach: float) -> list[int]:
    """A superset of `nearby`'s obstacles, by bounding box alone: a capsule within
    reach + clearance of the centre has the centre inside its box grown by reach +
    radius + margin (with slack, so that rounding drops none)."""
    skip = self.exempt.get(owner, ())
    if centre is None:
      return [i for i in range(self.count) if i not in skip]
    py, px = centre
    grow = reach + radius + margin + 1e-6
    return [i for i, (y0, y1, x0, x1) in enumerate(self.boxes)
            if y0 - grow < py < y1 + grow and x0 - grow < px < x1 + grow and i not in skip]

  def nearby(self, owner: int, radius: float, margin: float, centre, reach: float,
             boxed: list[int] | None = None) -> tuple[list[int], list[float]]:
    """Obstacles that may come within their clearance of a candidate of half-width
    `radius` lying within `reach` of `centre` (all when centre is None), skipping the
    owner's exempt ones; `boxed`: this query's `boxed` list, if already made. Returns
    their indices and clearances (M each)."""
    if boxed is None:
      boxed = self.boxed(owner, radius, margin, centre, reach)
    if centre is None:
      return boxed, [self.radius[i] + radius + margin for i in boxed]
    py, px = float(centre[0]), float(centre[1])
    index, clearances = [], []
    for i in boxed:
      clearance = self.radius[i] + radius + margin
      ay, ax, ey, ex, length2, _ = self.obstacles[i]
      wy, wx = py - ay, px - ax
      t = min(max((wy * ey + wx * ex) / length2, 0.0), 1.0)
      ry, rx = wy - t * ey, wx - t * ex
      bound = reach + clearance
      if ry * ry + rx * rx < bound * bound:
        index.append(i)
        clearances.append(clearance)
    return index, clearances

  def arrays(self, index: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The capsules `index` as numpy: starts a (M, 2), extents e (M, 2), |e|^2 (M,)."""
    obstacles = np.array([self.obstacles[i] for i in index], np.float64).reshape(-1, 6)
    return obstacles[:, 0:2], obstacles[:, 2:4], obstacles[:, 4]

  def free_discs(self, centres: np.ndarray, radius: float, margin: float, owner: int,
                 bound: tuple | None = None) -> np.ndarray:
    """Which discs (K, 2) of `radius` stay clear of every capsule dilated by `margin`.

    bound: optional (centre, reach) with every disc centre within `reach` of `centre`,
    so that obstacles far from it can be skipped. Returns (K,) bool.
    """
    centre, reach = bound if bound is not None else (None, 0.0)
    index, clearance = self.nearby(owner, radius, margin, centre, reach)
    if not index:
      return np.ones(len(centres), bool)
    dist2 = _point_segment_distance2(centres, *self.arrays(index))
    return np.all(dist2 >= np.square(clearance), axis=1)


# ---------------------------------------------------------------------------------------
# Contour growth.


@functools.lru_cache(maxsize=None)
def _direction_weights(continuity: float) -> tuple[np.ndarray, list[float], np.ndarray,
                                                   list[float]]:
  """Weights and cumulative weights of the turn grid and of the seed grid (uniform).

  A turn's weight is cos^2(min(continuity * |dtheta|, pi / 2)), exactly 0 from the
  clamp on.
  """
  turn = continuity * np.abs(_TURN_GRID)
  turn_weights = np.where(turn < math.pi / 2, np.cos(turn)**2, 0.0)
  seed_weights = np.ones(len(_SEED_GRID))
  return (turn_weights, np.cumsum(turn_weights).tolist(), seed_weights,
          np.cumsum(seed_weights).tolist())


class _Canvas:
  """Occupancy plus the settings needed to place paddles on it."""

  def __init__(self, settings: PathfinderSettings):
    self.s = settings
    self.margin = settings.paddle_margin
    self.lo = float(settings.padding)
    self.hi = float(settings.resolution - settings.padding)
    self.radius = settings.stroke_radius
    self.occupancy = _Occupancy(self.radius, self.margin)
    # The reference dilates every paddle's mask by the margin and refuses a paddle whose
    # own dilated mask meets it, so a paddle's capsule is its dilated mask.
    self.paddle_capsule = self.radius + self.margin
    # A crossing puts an endpoint of the candidate within paddle_length / 2 of the
    # obstacle, so the endpoint tests catch it unless that reaches the smallest
    # possible clearance, radius + margin; only then is a crossing test needed.
    self.crossings = settings.paddle_length >= 2 * (self.radius + self.margin)
    (self.turn_weights, self.turn_cumulative, self.seed_weights,
     self.seed_cumulative) = _direction_weights(settings.continuity)

  def inside(self, points: np.ndarray, radius: float | None = None) -> np.ndarray:
    """(K, 2) points -> (K,) bool: a disc of `radius` there stays off the padding.

    The default radius is the stroke's: every paddle end is kept this far inside, so by
    convexity so is each paddle.
    """
    radius = max(radius or 0.0, self.radius)
    return np.all((points >= self.lo + radius) & (points <= self.hi - radius), axis=-1)

  def add_paddle(self, rng: np.random.Generator, pivots: list, owner: int,
                 theta: float | None, end_disc: float | None = None,
                 draws: int | None = None) -> float | None:
    """Appends one paddle to a contour.

    Args:
      pivots: the contour so far, points (y, x) (arrays or tuples): [tip] before its
        first paddle, else its pivots; grown in place (a first paddle also moves
        pivots[0] to the virtual pivot `paddle_margin` behind the tip).
      theta: direction of the previous paddle, or None for a contour's first paddle
        (then it starts at the tip and any direction is equally likely).
      end_disc: if given, the paddle's far end is a tip: it must also have room for (and
        gets) an exclusion disc of this radius; used for the targets' last paddles,
        where markers go.
      draws: if given, only this many candidates drawn by weight are tried, as the
        reference tries its distractors' paddles; else the draw falls back to every
        free candidate.
    Returns:
      The new paddle's direction, or None (nothing changed) when every candidate is
      blocked.
    """
    s = self.s
    if theta is None:
      thetas = rng.uniform(0.0, 2 * math.pi) + _SEED_GRID
      weights, cumulative = self.seed_weights, self.seed_cumulative
      near = 0.0  # the first paddle starts at the tip
    else:
      thetas = theta + _TURN_GRID
      weights, cumulative = self.turn_weights, self.turn_cumulative
      near = self.margin
    far = near + s.paddle_length  # the paddle spans [near, far] from `start`
    advance = far + self.margin  # the next pivot
    start = (float(pivots[-1][0]), float(pivots[-1][1]))
    # The lazy draws test against every obstacle in a bounding box: those beyond `nearby`'s
    # exact reach cannot block a candidate, and the exact filter costs more than it saves.
    boxed = self.occupancy.boxed(owner, self.radius, self.margin, start, far)
    k = None if end_disc is not None else self._draw_lazily(
        rng, start, thetas, cumulative, near, far, advance, boxed, draws or _LAZY_DRAWS)
    if k is None and draws is not None:
      return None
    if k is None:
      nearby = self.occupancy.nearby(owner, self.radius, self.margin, start, far, boxed)
      k = self._draw_all(rng, start, thetas, weights, near, far, advance, *nearby, end_disc,
                         owner)
      if k is None:
        return None
    # Plain floats: the same arithmetic as numpy's, without its cost per call.
    (sy, sx), uy, ux = start, math.sin(thetas[k]), math.cos(thetas[k])
    tip = (sy + far * uy, sx + far * ux)
    self.occupancy.add_paddle((sy + near * uy, sx + near * ux), tip, self.paddle_capsule,
                              owner)
    if end_disc is not None:
      self.occupancy.add(tip, tip, end_disc, owner)
    if theta is None:
      pivots[0] = (sy - self.margin * uy, sx - self.margin * ux)
    pivots.append((sy + advance * uy, sx + advance * ux))
    return float(thetas[k])

  def _draw_lazily(self, rng: np.random.Generator, start: tuple[float, float],
                   thetas: np.ndarray,
                   cumulative: list[float], near: float, far: float, advance: float,
                   index: list[int], draws: int) -> int | None:
    """Draws candidates by weight and tests each one alone, up to `draws` times.

    Usually the first draw is free, and testing it in plain floats is much cheaper
    than testing every candidate with numpy. Redrawing after a blocked draw keeps the
    choice distributed by weight among the free candidates, as in `_draw_all`.

    Args:
      thetas: (K,) candidate directions; cumulative: their cumulative weights.
      near, far, advance: the paddle's span and the next pivot, along the direction.
      index: the obstacles that may block (`_Occupancy.boxed`).
    Returns:
      The chosen candidate, or None when the draws found no free one.
    """
    every = self.occupancy.obstacles
    obstacles = [every[i] for i in index]
    lo, hi = self.lo + self.radius, self.hi - self.radius
    py, px = start
    blocked = set()
    for _ in range(draws):
      k = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
      if k in blocked:
        continue
      uy, ux = math.sin(thetas[k]), math.cos(thetas[k])
      if (lo <= py + advance * uy <= hi and lo <= px + advance * ux <= hi
          and _ray_clear(py, px, uy, ux, near, far, obstacles, self.crossings)):
        return k
      blocked.add(k)
    return None

  def _draw_all(self, rng: np.random.Generator, start: tuple[float, float],
                thetas: np.ndarray, weights: np.ndarray, near: float, far: float,
                advance: float, index: list[int], clearance: list[float],
                end_disc: float | None, owner: int) -> int | None:
    """Tests every candidate at once and draws one by weight among the free ones.

    Args as in `_draw_lazily`, with weights (K,), and `nearby`'s obstacles and their
    clearances; end_disc and owner as in `add_paddle` (the end tip may touch its own
    contour's previous paddle, not any other stroke).
    Returns:
      The chosen candidate, or None when all are blocked.
    """
    s, occupancy = self.s, self.occupancy
    start = np.array(start)
    u = _unit(thetas)
    if end_disc is None:  # the next paddle starts from the next pivot
      ok = (weights > 0) & self.inside(start + advance * u)
    else:  # the contour ends here: its tip, with the marker, stays whole on the canvas
      tips = start + far * u
      ok = (weights > 0) & self.inside(tips, end_disc)
    if index and ok.any():
      dist2 = _ray_segment_distance2(start, u[ok], near, far, *occupancy.arrays(index),
                                     self.crossings)
      ok[ok] = np.all(dist2 >= np.square(clearance), axis=1)
    if end_disc is not None and ok.any():
      ok[ok] = occupancy.free_discs(tips[ok], end_disc, s.paddle_margin, owner,
                                    bound=(start, far))
    if not ok.any():
      return None
    cumulative = np.cumsum(np.where(ok, weights, 0.0))
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


def _grow_targets(rng: np.random.Generator, canvas: _Canvas) -> list[np.ndarray] | None:
  """Seeds the two targets' start tips `seed_distance` apart and grows them in turns.

  Tips get marker-sized exclusion discs (start tips from the outset, end tips with
  the last paddle), so no other stroke touches a marker. Returns two
  (contour_length + 1, 2) pivot arrays, or None when stuck.
  """
  s = canvas.s
  occupancy = canvas.occupancy
  # As in the reference, the first tip keeps 2 * seed_distance from the border, which
  # leaves both targets room to grow.
  low = min(max(2 * s.seed_distance, canvas.lo + s.marker_radius), s.resolution / 2)
  tip_a = rng.uniform(low, s.resolution - low, size=2)
  tip_b = tip_a + s.seed_distance * _unit(rng.uniform(0.0, 2 * math.pi))
  occupancy.add(tip_a, tip_a, s.marker_radius, owner=0, exempt=True)
  tips_b = tip_b[None]
  if not (canvas.inside(tips_b, s.marker_radius)[0]
          and occupancy.free_discs(tips_b, s.marker_radius, s.paddle_margin, 1)[0]):
    return None
  occupancy.add(tip_b, tip_b, s.marker_radius, owner=1, exempt=True)
  contours, thetas = [[tip_a], [tip_b]], [None, None]
  # Alternate so that neither target hogs the space around the seeds.
  for k in range(s.contour_length):
    end_disc = s.marker_radius if k == s.contour_length - 1 else None
    for owner, contour in enumerate(contours):
      thetas[owner] = canvas.add_paddle(rng, contour, owner, thetas[owner], end_disc)
      if thetas[owner] is None:
        return None
  return [np.array(c) for c in contours]


def _grow_distractor(rng: np.random.Generator, canvas: _Canvas,
                     owner: int) -> np.ndarray | None:
  """One distractor of distractor_length paddles from a uniform free tip, or None."""
  s = canvas.s
  # Several tip candidates per draw: one vectorised check instead of many rejections.
  tips = rng.uniform(canvas.lo + canvas.radius, canvas.hi - canvas.radius,
                     size=(_SEED_CANDIDATES, 2))
  free = canvas.occupancy.free_discs(tips, canvas.radius, s.paddle_margin, owner)
  if not free.any():
    return None
  contour, theta = [tips[np.argmax(free)]], None
  for _ in range(s.distractor_length):
    theta = canvas.add_paddle(rng, contour, owner, theta, draws=_DISTRACTOR_PADDLE_DRAWS)
    if theta is None:
      return None
  return np.array(contour)


def _place_contours(rng: np.random.Generator,
                    settings: PathfinderSettings) -> list[np.ndarray] | None:
  """Targets then distractors on an empty canvas; None when the targets stay stuck.

  A distractor still stuck after _DISTRACTOR_ATTEMPTS tries is left out.
  """
  for _ in range(_TARGET_ATTEMPTS):
    canvas = _Canvas(settings)
    targets = _grow_targets(rng, canvas)
    if targets is not None:
      break
  else:
    return None
  contours = targets
  for _ in range(settings.num_distractor_snakes):
    for _ in range(_DISTRACTOR_ATTEMPTS):
      state = canvas.occupancy.save()
      distractor = _grow_distractor(rng, canvas, owner=len(contours))
      if distractor is not None:
        contours.append(distractor)
        break
      canvas.occupancy.restore(state)  # drop the failed attempt's paddles
  return contours


def paddle_segments(contour: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
  """(n + 1, 2) pivots -> the n paddles' start and end points, each (n, 2)."""
  steps = np.diff(contour, axis=0)
  u = steps / np.linalg.norm(steps, axis=-1, keepdims=True)
  return contour[:-1] + margin * u, contour[1:] - margin * u


def contour_tips(contour: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
  """(n + 1, 2) pivots -> the contour's start and end tips (the outer paddle ends)."""
  starts, ends = paddle_segments(contour, margin)
  return starts[0], ends[-1]


# ---------------------------------------------------------------------------------------
# Public API.


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
    contours = _place_contours(rng, settings)
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
  image = pathfinder_render.render(settings.resolution, settings.antialias_scale, paddles,
                                   settings.paddle_length, settings.paddle_thickness,
                                   margin, markers, settings.marker_radius)
  return Sample(
      image=image,
      label=int(label),
      contours=contours,
      marker_centres=tuple((float(y), float(x)) for y, x in markers),
      marker_contours=marker_contours,
      paddle_margin=float(margin))


def _metadata_line(settings: PathfinderSettings, batch: int, index: int, label: int,
                   margin: float) -> str:
  """One line of the release's (plain-text) metadata file."""
  fields = [f"imgs/{batch}", f"sample_{index}.png", index, label,
            repr(float(settings.continuity)), settings.contour_length,
            settings.distractor_length, f"{settings.paddle_length:g}",
            f"{settings.paddle_thickness:g}", f"{margin:g}", 1]
  return " ".join(str(f) for f in fields)


def subset_dir(root: str | os.PathLike, resolution: int, difficulty: str) -> pathlib.Path:
  """<root>/pathfinder<res>/<subset>, the release's folder of one difficulty."""
  return pathlib.Path(root) / f"pathfinder{resolution}" / DIFFICULTIES[difficulty][0]


def _png_of(job: tuple) -> tuple[bytes, float]:
  """(PNG bytes, margin) of image k: job = (resolution, difficulty, seed, k, label)."""
  import io

  from PIL import Image

  resolution, difficulty, seed, k, label = job
  sample = generate_sample(np.random.default_rng([seed, k]),
                           settings_for(resolution, difficulty), label)
  buffer = io.BytesIO()
  Image.fromarray(sample.image).save(buffer, format="PNG")
  return buffer.getvalue(), sample.paddle_margin


def write_release(root: str | os.PathLike, resolution: int, difficulty: str,
                  num_images: int, seed: int, images_per_batch: int = 1000,
                  progress: Callable[[int], None] | None = None,
                  workers: int | None = 1) -> pathlib.Path:
  """Writes `num_images` images in the official LRA Pathfinder layout.

      <root>/pathfinder<res>/<subset>/imgs/<batch>/sample_<i>.png
      <root>/pathfinder<res>/<subset>/metadata/<batch>.npy   (plain text)

  Image k goes to batch k // images_per_batch as sample k % images_per_batch. Labels
  are exactly balanced (k % 2, shuffled with `seed`), and image k is drawn from its
  own generator seeded by (seed, k), so the output depends only on the arguments: images
  are drawn by `workers` processes (None: every core) and written in order, byte for
  byte the same for any number of workers. Images and metadata already in the subset
  folder (an earlier run) are removed first, so the folder holds exactly this run.

  Returns:
    The subset directory <root>/pathfinder<res>/<subset>.
  """
  from luna_jax.data.parallel import ordered_map

  settings = settings_for(resolution, difficulty)
  if num_images < 0:
    raise ValueError(f"num_images must be >= 0, got {num_images}.")
  if images_per_batch < 1:
    raise ValueError(f"images_per_batch must be >= 1, got {images_per_batch}.")
  subset = subset_dir(root, resolution, difficulty)
  for stale in ("imgs", "metadata"):
    shutil.rmtree(subset / stale, ignore_errors=True)
  (subset / "metadata").mkdir(parents=True, exist_ok=True)
  labels = np.random.default_rng(seed).permutation(np.arange(num_images) % 2)
  jobs = ((resolution, difficulty, seed, k, int(labels[k])) for k in range(num_images))
  images = ordered_map(_png_of, jobs, workers, chunksize=32)
  for batch_start in range(0, num_images, images_per_batch):
    batch = batch_start // images_per_batch
    batch_dir = subset / "imgs" / str(batch)
    batch_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(batch_start, min(batch_start + images_per_batch, num_images)):
      index, label = k - batch_start, int(labels[k])
      png, margin = next(images)
      (batch_dir / f"sample_{index}.png").write_bytes(png)
      lines.append(_metadata_line(settings, batch, index, label, margin))
      if progress is not None:
        progress(k + 1)
    (subset / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")
  return subset


def write_splits(root: str | os.PathLike, sizes: dict[str, int], seed: int,
                 progress: Callable[[int], None] | None = None, workers: int | None = 1, *,
                 resolution: int, difficulty: str) -> pathlib.Path:
  """`write_release` of sum(sizes) images, recording the split sizes (train,
  validation, test, in metadata order) that the builder reads back."""
  subset = write_release(root, resolution, difficulty, sum(sizes.values()), seed,
                         progress=progress, workers=workers)
  readers.write_pathfinder_split_sizes(subset, sizes)
  return subset
