"""Seeded generator of Pathfinder images (Linsley et al. 2018), in the LRA release layout.

An image holds two target contours and several shorter distractor contours, each a chain
of short line segments ("paddles") separated by small gaps. Two markers sit on contour
tips; the label says whether both markers lie on the same contour.

Geometry. A contour of n paddles is a polyline of n + 1 pivots p_0 .. p_n, consecutive
pivots `paddle_length + 2 * paddle_margin` apart. Paddle k is the part of the segment
p_k -> p_{k+1} that leaves a gap of `paddle_margin` at both ends, so the contour reads
as a dashed curve whose dashes are `2 * paddle_margin` apart and whose tips p_0, p_n sit
symmetrically just beyond its first and last paddle. A contour's first direction is
uniform; each later change of direction is drawn from a 3-degree grid with weight
cos^2(min(continuity * |dtheta|, pi / 2)), among the candidates that stay on the canvas
and off the occupancy mask.

Occupancy. The reference keeps a raster mask, dilates it by the margin and rejects
paddles that touch it. Here the mask is kept in vector form: every drawn paddle (and
every marker) is a capsule, a segment with a radius, and a candidate paddle overlaps
the dilated mask exactly when its segment comes closer than (radius + thickness +
margin) to an occupied segment. That is the same test without discretisation, and it
is cheap to vectorise over all candidate directions at once. A contour's own newest
paddle is exempt, as in the reference, since the next paddle always starts next to it.
The targets' tips also get marker-sized discs, so that no other stroke touches a marker.

Growth. As in the reference, the first target tip is drawn at least 2 * seed_distance
from the border, the second `seed_distance` from it, and the two targets grow one
paddle each in turn; distractors start anywhere free. A stuck contour is regrown from
a fresh seed a bounded number of times, then the whole image is redrawn with the next
draws of the generator, and after a bounded number of those generation fails loudly.

Rendering. Every paddle (pixels within `paddle_thickness` of its segment) and every
marker (a disc of `marker_radius`) is rasterised at `antialias_scale` times the output
resolution and block-averaged down; the image is the maximum over strokes, in 0-255.

Coordinates are (y, x) in output pixels; pixel (i, j) covers [i, i + 1) x [j, j + 1).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
import os
import pathlib
from collections.abc import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class PathfinderSettings:
  """All the knobs of one Pathfinder variant; lengths are in output pixels.

  `paddle_thickness` is the half-width of a stroke: pixels within it of the segment
  are lit. `padding` is a border that no stroke may enter.
  """

  resolution: int
  padding: int
  antialias_scale: int
  paddle_margin: float
  seed_distance: float
  marker_radius: float
  contour_length: int
  paddle_length: float
  paddle_thickness: float
  continuity: float
  distractor_length: int
  num_distractor_snakes: int

  @property
  def step(self) -> float:
    """Distance between consecutive pivots of a contour."""
    return self.paddle_length + 2 * self.paddle_margin


# name -> (subset folder of the LRA release, contour_length).
DIFFICULTIES: dict[str, tuple[str, int]] = {
    "easy": ("curv_baseline", 6),
    "intermediate": ("curv_contour_length_9", 9),
    "hard": ("curv_contour_length_14", 14),
}

RESOLUTIONS = (32, 64, 128, 256)

# Per-resolution geometry; the last entry is the distractor budget: the number of
# distractor snakes is budget // distractor_length, so their total paddle count is
# roughly constant across difficulties.
#  - 32 and 128 are the LRA settings (margin 2 of the allowed 2-3 at 128).
#  - 64 sits halfway between them on a log scale, rounded: pivot step 6 = paddle 3 +
#    2 x margin 1.5 (32: 4, 128: 9), stroke width 2 px (32: 1, 128: 3), marker radius
#    2 (geometric mean 2.1), seed distance 12 (11.8), continuity 1.4 (1.34), budget 27
#    (26.5).
#  - 256 is the 128 picture drawn twice as large: every length doubled (padding
#    included), angles and counts unchanged.
_GEOMETRY: dict[int, dict[str, float]] = {
    32: dict(padding=1, paddle_margin=1, seed_distance=7, marker_radius=1.5,
             paddle_length=2, paddle_thickness=0.5, continuity=1.0, budget=20),
    64: dict(padding=1, paddle_margin=1.5, seed_distance=12, marker_radius=2,
             paddle_length=3, paddle_thickness=1.0, continuity=1.4, budget=27),
    128: dict(padding=1, paddle_margin=2, seed_distance=20, marker_radius=3,
              paddle_length=5, paddle_thickness=1.5, continuity=1.8, budget=35),
    256: dict(padding=2, paddle_margin=4, seed_distance=40, marker_radius=6,
              paddle_length=10, paddle_thickness=3.0, continuity=1.8, budget=35),
}
_ANTIALIAS_SCALE = 2

# Bounded retries: a contour that gets stuck is regrown from a fresh seed this many
# times, then the whole image is redrawn; after _IMAGE_ATTEMPTS we give up loudly.
_TARGET_ATTEMPTS = 20
_DISTRACTOR_ATTEMPTS = 20
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
  contour_length = DIFFICULTIES[difficulty][1]
  distractor_length = contour_length // 3
  return PathfinderSettings(
      resolution=resolution,
      antialias_scale=_ANTIALIAS_SCALE,
      contour_length=contour_length,
      distractor_length=distractor_length,
      num_distractor_snakes=budget // distractor_length,
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
  """

  image: np.ndarray
  label: int
  contours: list[np.ndarray]
  marker_centres: tuple[tuple[float, float], tuple[float, float]]
  marker_contours: tuple[int, int]


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
    s0 = min(max(proj, near), far)
    if w2 - 2 * s0 * proj + s0 * s0 < clear2:
      return False
    proj1 = proj + along
    s1 = min(max(proj1, near), far)
    if (wy + ey)**2 + (wx + ex)**2 - 2 * s1 * proj1 + s1 * s1 < clear2:
      return False
    g = -(wy * ey + wx * ex)
    for s in (near, far):
      q = g + s * along
      t = min(max(q / length2, 0.0), 1.0)
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
  """The dilated occupancy mask in vector form: a growing list of owned capsules."""

  def __init__(self, capacity: int):
    self.a = np.zeros((capacity, 2))  # capsule segments a -> a + e
    self.e = np.zeros((capacity, 2))
    self.length2 = np.ones(capacity)
    self.radius = np.zeros(capacity)
    self.owner = np.full(capacity, -1)
    self.exempt = np.zeros(capacity, bool)  # ignored when its owner checks a paddle
    self.count = 0

  def add(self, a: np.ndarray, b: np.ndarray, radius: float, owner: int,
          exempt: bool = False) -> None:
    i = self.count
    self.a[i], self.e[i] = a, b - a
    self.length2[i] = max(float(self.e[i] @ self.e[i]), 1e-12)
    self.radius[i], self.owner[i], self.exempt[i] = radius, owner, exempt
    self.count += 1

  def add_paddle(self, a: np.ndarray, b: np.ndarray, radius: float, owner: int) -> None:
    """Only the owner's newest paddle stays exempt from the owner's own checks."""
    n = self.count
    self.exempt[:n][self.owner[:n] == owner] = False
    self.add(a, b, radius, owner, exempt=True)

  def save(self) -> tuple[int, np.ndarray]:
    return self.count, self.exempt[:self.count].copy()

  def restore(self, state: tuple[int, np.ndarray]) -> None:
    """Forgets everything added since `save`."""
    self.count, self.exempt[:state[0]] = state

  def nearby(self, owner: int, radius: float, margin: float, centre: np.ndarray | None,
             reach: float) -> tuple[np.ndarray, np.ndarray]:
    """Obstacles that may come within their clearance of a candidate of half-width
    `radius` lying within `reach` of `centre` (all when centre is None), skipping the
    owner's exempt ones. Returns their indices (M,) and clearances (M,)."""
    n = self.count
    clearance = self.radius[:n] + radius + margin
    keep = ~((self.owner[:n] == owner) & self.exempt[:n])
    if centre is not None:
      dist2 = _point_segment_distance2(centre[None], self.a[:n], self.e[:n],
                                       self.length2[:n])[0]
      keep &= dist2 < (reach + clearance)**2
    return np.flatnonzero(keep), clearance[keep]

  def free_discs(self, centres: np.ndarray, radius: float, margin: float, owner: int,
                 bound: tuple[np.ndarray, float] | None = None) -> np.ndarray:
    """Which discs (K, 2) of `radius` stay clear of every capsule dilated by `margin`.

    bound: optional (centre, reach) with every disc centre within `reach` of `centre`,
    so that obstacles far from it can be skipped. Returns (K,) bool.
    """
    centre, reach = bound if bound is not None else (None, 0.0)
    index, clearance = self.nearby(owner, radius, margin, centre, reach)
    if not len(index):
      return np.ones(len(centres), bool)
    dist2 = _point_segment_distance2(centres, self.a[index], self.e[index],
                                     self.length2[index])
    return np.all(dist2 >= clearance**2, axis=1)


# ---------------------------------------------------------------------------------------
# Contour growth.


class _Canvas:
  """Occupancy plus the settings needed to place paddles on it."""

  def __init__(self, settings: PathfinderSettings):
    self.s = settings
    capacity = (2 * settings.contour_length
                + settings.num_distractor_snakes * settings.distractor_length + 4)
    self.occupancy = _Occupancy(capacity)
    self.lo = float(settings.padding)
    self.hi = float(settings.resolution - settings.padding)
    # A paddle spans [near, far] along its direction from the pivot before it.
    self.near = settings.paddle_margin
    self.far = settings.step - settings.paddle_margin
    # A crossing puts an endpoint of the candidate within (far - near) / 2 of the
    # obstacle, so the endpoint tests catch it unless that reaches the smallest
    # possible clearance, thickness + margin; only then is a crossing test needed.
    self.crossings = (self.far - self.near) >= 2 * (settings.paddle_thickness
                                                    + settings.paddle_margin)
    # cos^2(min(continuity * |dtheta|, pi / 2)), exactly 0 from the clamp on.
    turn = settings.continuity * np.abs(_TURN_GRID)
    self.turn_weights = np.where(turn < math.pi / 2, np.cos(turn)**2, 0.0)
    self.turn_cumulative = np.cumsum(self.turn_weights).tolist()
    self.seed_weights = np.ones(len(_SEED_GRID))
    self.seed_cumulative = np.cumsum(self.seed_weights).tolist()

  def inside(self, points: np.ndarray, radius: float | None = None) -> np.ndarray:
    """(K, 2) points -> (K,) bool: a disc of `radius` there stays off the padding.

    The default radius is the stroke's: every pivot is kept this far inside, so by
    convexity so is each paddle between two.
    """
    radius = max(radius or 0.0, self.s.paddle_thickness)
    return np.all((points >= self.lo + radius) & (points <= self.hi - radius), axis=-1)

  def add_paddle(self, rng: np.random.Generator, pivots: list[np.ndarray], owner: int,
                 theta: float | None, end_disc: float | None = None) -> float | None:
    """Appends one paddle to a contour.

    Args:
      pivots: the contour so far (at least its start tip); grown in place.
      theta: direction of the previous paddle, or None for a contour's first paddle
        (then any direction is equally likely).
      end_disc: if given, the new tip must also have room for (and gets) an exclusion
        disc of this radius; used for the targets' last paddles, where markers go.
    Returns:
      The new paddle's direction, or None (nothing changed) when every candidate is
      blocked.
    """
    s = self.s
    if theta is None:
      thetas = rng.uniform(0.0, 2 * math.pi) + _SEED_GRID
      weights, cumulative = self.seed_weights, self.seed_cumulative
    else:
      thetas = theta + _TURN_GRID
      weights, cumulative = self.turn_weights, self.turn_cumulative
    start = pivots[-1]
    nearby = self.occupancy.nearby(owner, s.paddle_thickness, s.paddle_margin, start,
                                   self.far)
    k = None if end_disc is not None else self._draw_lazily(rng, start, thetas,
                                                            cumulative, *nearby)
    if k is None:
      k = self._draw_all(rng, start, thetas, weights, *nearby, end_disc)
      if k is None:
        return None
    u = np.array([math.sin(thetas[k]), math.cos(thetas[k])])
    end = start + s.step * u
    self.occupancy.add_paddle(start + self.near * u, start + self.far * u,
                              s.paddle_thickness, owner)
    if end_disc is not None:
      self.occupancy.add(end, end, end_disc, owner)
    pivots.append(end)
    return float(thetas[k])

  def _draw_lazily(self, rng: np.random.Generator, start: np.ndarray, thetas: np.ndarray,
                   cumulative: list[float], index: np.ndarray,
                   clearance: np.ndarray) -> int | None:
    """Draws candidates by weight and tests each one alone, up to _LAZY_DRAWS times.

    Usually the first draw is free, and testing it in plain floats is much cheaper
    than testing every candidate with numpy. Redrawing after a blocked draw keeps the
    choice distributed by weight among the free candidates, as in `_draw_all`.

    Args:
      thetas: (K,) candidate directions; cumulative: their cumulative weights.
      index, clearance: (M,) the nearby obstacles and their clearances.
    Returns:
      The chosen candidate, or None when the draws found no free one.
    """
    s, occupancy = self.s, self.occupancy
    obstacles = np.column_stack([occupancy.a[index], occupancy.e[index],
                                 occupancy.length2[index], clearance**2]).tolist()
    lo, hi = self.lo + s.paddle_thickness, self.hi - s.paddle_thickness
    py, px = float(start[0]), float(start[1])
    blocked = set()
    for _ in range(_LAZY_DRAWS):
      k = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
      if k in blocked:
        continue
      uy, ux = math.sin(thetas[k]), math.cos(thetas[k])
      if (lo <= py + s.step * uy <= hi and lo <= px + s.step * ux <= hi
          and _ray_clear(py, px, uy, ux, self.near, self.far, obstacles, self.crossings)):
        return k
      blocked.add(k)
    return None

  def _draw_all(self, rng: np.random.Generator, start: np.ndarray, thetas: np.ndarray,
                weights: np.ndarray, index: np.ndarray, clearance: np.ndarray,
                end_disc: float | None) -> int | None:
    """Tests every candidate at once and draws one by weight among the free ones.

    Args as in `_draw_lazily`, with weights (K,); end_disc as in `add_paddle`.
    Returns:
      The chosen candidate, or None when all are blocked.
    """
    s, occupancy = self.s, self.occupancy
    u = _unit(thetas)
    ends = start + s.step * u
    ok = (weights > 0) & self.inside(ends, end_disc)  # markers stay whole, too
    if len(index) and ok.any():
      dist2 = _ray_segment_distance2(start, u[ok], self.near, self.far, occupancy.a[index],
                                     occupancy.e[index], occupancy.length2[index],
                                     self.crossings)
      ok[ok] = np.all(dist2 >= clearance**2, axis=1)
    if end_disc is not None and ok.any():
      ok[ok] = occupancy.free_discs(ends[ok], end_disc, s.paddle_margin, -1,
                                    bound=(start, s.step))
    if not ok.any():
      return None
    cumulative = np.cumsum(np.where(ok, weights, 0.0))
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


def _grow_targets(rng: np.random.Generator, canvas: _Canvas) -> list[np.ndarray] | None:
  """Seeds the two targets `seed_distance` apart and grows them in turns.

  Tips get marker-sized exclusion discs (start tips from the outset, end tips with
  the last paddle), so no other stroke touches a marker. Returns two
  (contour_length + 1, 2) arrays, or None when stuck.
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
  """One distractor of distractor_length paddles from a uniform free seed, or None."""
  s = canvas.s
  # Several seed candidates per draw: one vectorised check instead of many rejections.
  tips = rng.uniform(canvas.lo + s.paddle_thickness, canvas.hi - s.paddle_thickness,
                     size=(_SEED_CANDIDATES, 2))
  free = canvas.occupancy.free_discs(tips, 0.0, s.paddle_margin, owner)
  if not free.any():
    return None
  contour, theta = [tips[np.argmax(free)]], None
  for _ in range(s.distractor_length):
    theta = canvas.add_paddle(rng, contour, owner, theta)
    if theta is None:
      return None
  return np.array(contour)


def _place_contours(rng: np.random.Generator,
                    settings: PathfinderSettings) -> list[np.ndarray] | None:
  """Targets then distractors on an empty canvas; None when any of them stays stuck."""
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
    else:
      return None
  return contours


# ---------------------------------------------------------------------------------------
# Rendering.


def _render_capsules(size: int, scale: int, a: np.ndarray, b: np.ndarray,
                     radius: np.ndarray) -> np.ndarray:
  """Anti-aliased strokes: (N, 2) endpoints, (N,) radii -> (size, size) in [0, 1].

  Each capsule is rasterised at `scale` x resolution inside its own window aligned to
  output pixels, block-averaged, and max-combined into the canvas.
  """
  lo = np.floor(np.minimum(a, b) - radius[:, None]).astype(int)
  hi = np.ceil(np.maximum(a, b) + radius[:, None]).astype(int)
  window = int(np.max(hi - lo))  # output pixels, shared by all capsules to batch them
  offsets = (np.arange(window * scale) + 0.5) / scale
  ys = (lo[:, 0, None] + offsets)[:, :, None]  # (N, W, 1)
  xs = (lo[:, 1, None] + offsets)[:, None, :]  # (N, 1, W)
  ay, ax = a[:, 0, None, None], a[:, 1, None, None]
  dy, dx = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
  length2 = np.maximum(dy * dy + dx * dx, 1e-12)
  t = np.clip(((ys - ay) * dy + (xs - ax) * dx) / length2, 0.0, 1.0)
  dist2 = (ys - ay - t * dy)**2 + (xs - ax - t * dx)**2
  lit = dist2 <= radius[:, None, None]**2  # (N, W, W)
  n = len(a)
  coverage = lit.reshape(n, window, scale, window, scale).mean(axis=(2, 4))
  # Pad by one window so strokes reaching past the border need no clipping.
  canvas = np.zeros((size + 2 * window, size + 2 * window))
  rows = lo[:, 0, None] + np.arange(window) + window
  cols = lo[:, 1, None] + np.arange(window) + window
  np.maximum.at(canvas, (rows[:, :, None], cols[:, None, :]), coverage)
  return canvas[window:window + size, window:window + size]


def _paddle_segments(contour: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
  """(n + 1, 2) pivots -> the n paddles' endpoints, each (n, 2)."""
  steps = np.diff(contour, axis=0)
  u = steps / np.linalg.norm(steps, axis=-1, keepdims=True)
  return contour[:-1] + margin * u, contour[1:] - margin * u


def _render(settings: PathfinderSettings, contours: list[np.ndarray],
            markers: np.ndarray) -> np.ndarray:
  """Paddles of all contours plus the (2, 2) marker discs -> (H, W) uint8."""
  segments = [_paddle_segments(c, settings.paddle_margin) for c in contours]
  a = np.concatenate([s[0] for s in segments] + [markers])
  b = np.concatenate([s[1] for s in segments] + [markers])
  num_paddles = len(a) - len(markers)
  radius = np.concatenate([np.full(num_paddles, settings.paddle_thickness),
                           np.full(len(markers), settings.marker_radius)])
  image = _render_capsules(settings.resolution, settings.antialias_scale, a, b, radius)
  return np.round(image * 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------
# Public API.


def generate_sample(rng: np.random.Generator, settings: PathfinderSettings,
                    label: int) -> Sample:
  """Draws one image with the given label (1: both markers on target contour 0).

  Deterministic given the state of `rng`. Raises RuntimeError if the settings leave
  no room for the contours after a bounded number of full redraws.
  """
  if label not in (0, 1):
    raise ValueError(f"label must be 0 or 1, got {label!r}.")
  for _ in range(_IMAGE_ATTEMPTS):
    contours = _place_contours(rng, settings)
    if contours is not None:
      break
  else:
    raise RuntimeError(f"Could not place all contours in {_IMAGE_ATTEMPTS} attempts; "
                       f"the canvas is too crowded for {settings}.")
  marker_contours = (0, 0 if label == 1 else 1)
  markers = np.stack([contours[0][0], contours[marker_contours[1]][-1]])
  return Sample(
      image=_render(settings, contours, markers),
      label=int(label),
      contours=contours,
      marker_centres=tuple((float(y), float(x)) for y, x in markers),
      marker_contours=marker_contours)


def _metadata_line(settings: PathfinderSettings, batch: int, index: int,
                   label: int) -> str:
  """One line of the release's (plain-text) metadata file."""
  fields = [f"imgs/{batch}", f"sample_{index}.png", index, label,
            repr(float(settings.continuity)), settings.contour_length,
            settings.distractor_length, f"{settings.paddle_length:g}",
            f"{settings.paddle_thickness:g}", f"{settings.paddle_margin:g}", 1]
  return " ".join(str(f) for f in fields)


def write_release(root: str | os.PathLike, resolution: int, difficulty: str,
                  num_images: int, seed: int, images_per_batch: int = 1000,
                  progress: Callable[[int], None] | None = None) -> pathlib.Path:
  """Writes `num_images` images in the official LRA Pathfinder layout.

      <root>/pathfinder<res>/<subset>/imgs/<batch>/sample_<i>.png
      <root>/pathfinder<res>/<subset>/metadata/<batch>.npy   (plain text)

  Image k goes to batch k // images_per_batch as sample k % images_per_batch. Labels
  are exactly balanced (k % 2, shuffled with `seed`), and image k is drawn from its
  own generator seeded by (seed, k), so the output depends only on the arguments.

  Returns:
    The subset directory <root>/pathfinder<res>/<subset>.
  """
  from PIL import Image  # only writing needs Pillow

  settings = settings_for(resolution, difficulty)
  if num_images < 0:
    raise ValueError(f"num_images must be >= 0, got {num_images}.")
  if images_per_batch < 1:
    raise ValueError(f"images_per_batch must be >= 1, got {images_per_batch}.")
  subset = pathlib.Path(root) / f"pathfinder{resolution}" / DIFFICULTIES[difficulty][0]
  (subset / "metadata").mkdir(parents=True, exist_ok=True)
  labels = np.random.default_rng(seed).permutation(np.arange(num_images) % 2)

  for batch_start in range(0, num_images, images_per_batch):
    batch = batch_start // images_per_batch
    batch_dir = subset / "imgs" / str(batch)
    batch_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for k in range(batch_start, min(batch_start + images_per_batch, num_images)):
      index, label = k - batch_start, int(labels[k])
      sample = generate_sample(np.random.default_rng([seed, k]), settings, label)
      Image.fromarray(sample.image).save(batch_dir / f"sample_{index}.png")
      lines.append(_metadata_line(settings, batch, index, label))
      if progress is not None:
        progress(k + 1)
    (subset / "metadata" / f"{batch}.npy").write_text("\n".join(lines) + "\n")
  return subset
