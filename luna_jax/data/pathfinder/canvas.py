"""Growing contours on a canvas: the targets, then the distractors.

Directions. A contour's first direction is uniform; each later change of direction is
drawn from a 3-degree grid with weight cos^2(min(continuity * |dtheta|, pi / 2)), among
the candidates that stay on the canvas and off the occupancy mask (`occupancy`).

Growth. As in the reference, the first target tip is drawn at least 2 * seed_distance
from the border, the second `seed_distance` from it, and the two targets grow one paddle
each in turn; distractors start anywhere free. A stuck target pair is regrown from fresh
seeds a bounded number of times (`_TARGET_ATTEMPTS`), then `place_contours` gives up and
the caller redraws the whole image; a distractor that stays stuck after
`_DISTRACTOR_ATTEMPTS` tries is left out, as the reference does (its `allow_incomplete`).

Speed. An image tests many candidate paddles against a few dozen capsules, most of them
in target pairs that get stuck and are regrown, so the cost is Python's per call, not
arithmetic: the usual test (one candidate drawn by weight) runs in plain floats
(`geometry.ray_clear`) against the capsules whose bounding boxes reach it, and numpy only
tests every candidate at once when those draws fail or a contour ends. The shortcut draws the
same images, byte for byte, as the plain numpy version before it. The counts and timings:
benchmarks/results/pathfinder_generator.md.
"""

from __future__ import annotations

import bisect
import functools
import math
from typing import NamedTuple

import numpy as np

from luna_jax.data.pathfinder.geometry import Ray, ray_clear, ray_segment_distance2, unit
from luna_jax.data.pathfinder.occupancy import Occupancy
from luna_jax.data.pathfinder.settings import PathfinderSettings

# Bounded retries: a target pair that gets stuck is regrown from fresh seeds this many
# times, then the whole image is redrawn (`sampling`). A distractor gets as many tries as
# the reference gives it (max_distractor_contour_retrial = 4, so 5), then is left out.
_TARGET_ATTEMPTS = 20
_DISTRACTOR_ATTEMPTS = 5
_DISTRACTOR_PADDLE_DRAWS = 3  # the reference's max_paddle_retrial = 2, so 3 draws

_TURN_GRID = np.deg2rad(np.arange(-90, 91, 3, dtype=np.float64))
_SEED_GRID = np.deg2rad(np.arange(0, 360, 3, dtype=np.float64))
_SEED_CANDIDATES = 16  # distractor start points drawn (and checked) per attempt
_LAZY_DRAWS = 6  # single-candidate tests before testing all candidates at once


class Weights(NamedTuple):
  """The weights of a grid of K candidate directions: each (K,), and their cumulative sums
  as a list (for drawing one by bisection). Made once per canvas, since a paddle's
  candidates are the grid turned by an angle."""

  each: np.ndarray
  cumulative: list[float]


@functools.lru_cache(maxsize=None)
def _direction_weights(continuity: float) -> tuple[Weights, Weights]:
  """The weights of the turn grid and of the seed grid (uniform).

  A turn's weight is cos^2(min(continuity * |dtheta|, pi / 2)), exactly 0 from the
  clamp on.
  """
  turn = continuity * np.abs(_TURN_GRID)
  turn_weights = np.where(turn < math.pi / 2, np.cos(turn)**2, 0.0)
  seed_weights = np.ones(len(_SEED_GRID))
  return (Weights(turn_weights, np.cumsum(turn_weights).tolist()),
          Weights(seed_weights, np.cumsum(seed_weights).tolist()))


class Canvas:
  """Occupancy plus the settings needed to place paddles on it."""

  def __init__(self, settings: PathfinderSettings):
    self.s = settings
    self.margin = settings.paddle_margin
    self.lo = float(settings.padding)
    self.hi = float(settings.resolution - settings.padding)
    self.radius = settings.stroke_radius
    self.occupancy = Occupancy(self.radius, self.margin)
    # The reference dilates every paddle's mask by the margin and refuses a paddle whose
    # own dilated mask meets it, so a paddle's capsule is its dilated mask.
    self.paddle_capsule = self.radius + self.margin
    # A crossing puts an endpoint of the candidate within paddle_length / 2 of the
    # obstacle, so the endpoint tests catch it unless that reaches the smallest
    # possible clearance, radius + margin; only then is a crossing test needed.
    self.crossings = settings.paddle_length >= 2 * (self.radius + self.margin)
    self.turn_weights, self.seed_weights = _direction_weights(settings.continuity)

  def inside(self, points: np.ndarray, radius: float | None = None) -> np.ndarray:
    """(K, 2) points -> (K,) bool: a disc of `radius` there stays off the padding.

    The default radius is the stroke's: every paddle end is kept this far inside, so by
    convexity so is each paddle.
    """
    radius = max(radius or 0.0, self.radius)
    return np.all((points >= self.lo + radius) & (points <= self.hi - radius), axis=-1)

  def add_paddle(self, rng: np.random.Generator, pivots: list, owner: int,
                 theta: float | None, *, end_disc: float | None = None,
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
    if theta is None:
      thetas, weights = rng.uniform(0.0, 2 * math.pi) + _SEED_GRID, self.seed_weights
      near = 0.0  # the first paddle starts at the tip
    else:
      thetas, weights = theta + _TURN_GRID, self.turn_weights
      near = self.margin
    far = near + self.s.paddle_length  # the paddle spans [near, far] from `start`
    advance = far + self.margin  # the next pivot
    start = (float(pivots[-1][0]), float(pivots[-1][1]))
    ray = Ray(start, near, far, self.crossings)
    # The lazy draws test against every obstacle in a bounding box: those beyond `nearby`'s
    # exact reach cannot block a candidate, and the exact filter costs more than it saves.
    boxed = self.occupancy.boxed(owner, self.radius, self.margin, start, far)
    k = None if end_disc is not None else self._draw_lazily(
        rng, ray, thetas, weights, boxed, draws=draws or _LAZY_DRAWS)
    if k is None and draws is not None:
      return None
    if k is None:
      nearby = self.occupancy.nearby(owner, self.radius, self.margin, start, far,
                                     boxed=boxed)
      k = self._draw_all(rng, ray, thetas, weights, nearby, end_disc=end_disc, owner=owner)
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

  def _draw_lazily(self, rng: np.random.Generator, ray: Ray, thetas: np.ndarray,
                   weights: Weights, index: list[int], *, draws: int) -> int | None:
    """Draws candidates by weight and tests each one alone, up to `draws` times.

    Usually the first draw is free, and testing it in plain floats is much cheaper
    than testing every candidate with numpy. Redrawing after a blocked draw keeps the
    choice distributed by weight among the free candidates, as in `_draw_all`.

    Args:
      ray: the candidates' start and span; thetas: (K,) their directions.
      index: the obstacles that may block (`Occupancy.boxed`).
    Returns:
      The chosen candidate, or None when the draws found no free one.
    """
    every = self.occupancy.obstacles
    obstacles = [every[i] for i in index]
    lo, hi = self.lo + self.radius, self.hi - self.radius
    (py, px), advance = ray.start, ray.far + self.margin
    cumulative = weights.cumulative
    blocked = set()
    for _ in range(draws):
      k = bisect.bisect_right(cumulative, rng.random() * cumulative[-1])
      if k in blocked:
        continue
      uy, ux = math.sin(thetas[k]), math.cos(thetas[k])
      if (lo <= py + advance * uy <= hi and lo <= px + advance * ux <= hi
          and ray_clear(ray, uy, ux, obstacles)):
        return k
      blocked.add(k)
    return None

  def _draw_all(self, rng: np.random.Generator, ray: Ray, thetas: np.ndarray,
                weights: Weights, nearby: tuple[list[int], list[float]], *,
                end_disc: float | None, owner: int) -> int | None:
    """Tests every candidate at once and draws one by weight among the free ones.

    Args as in `_draw_lazily`, with `Occupancy.nearby`'s obstacles and their clearances;
    end_disc and owner as in `add_paddle` (the end tip may touch its own contour's
    previous paddle, not any other stroke).
    Returns:
      The chosen candidate, or None when all are blocked.
    """
    occupancy, each = self.occupancy, weights.each
    index, clearance = nearby
    start = np.array(ray.start)
    u = unit(thetas)
    if end_disc is None:  # the next paddle starts from the next pivot
      ok = (each > 0) & self.inside(start + (ray.far + self.margin) * u)
    else:  # the contour ends here: its tip, with the marker, stays whole on the canvas
      tips = start + ray.far * u
      ok = (each > 0) & self.inside(tips, end_disc)
    if index and ok.any():
      dist2 = ray_segment_distance2(ray, u[ok], occupancy.arrays(index))
      ok[ok] = np.all(dist2 >= np.square(clearance), axis=1)
    if end_disc is not None and ok.any():
      ok[ok] = occupancy.free_discs(tips[ok], end_disc, self.s.paddle_margin, owner,
                                    bound=(start, ray.far))
    if not ok.any():
      return None
    cumulative = np.cumsum(np.where(ok, each, 0.0))
    return int(np.searchsorted(cumulative, rng.random() * cumulative[-1], side="right"))


def _grow_targets(rng: np.random.Generator, canvas: Canvas) -> list[np.ndarray] | None:
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
  tip_b = tip_a + s.seed_distance * unit(rng.uniform(0.0, 2 * math.pi))
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
      thetas[owner] = canvas.add_paddle(rng, contour, owner, thetas[owner],
                                        end_disc=end_disc)
      if thetas[owner] is None:
        return None
  return [np.array(c) for c in contours]


def _grow_distractor(rng: np.random.Generator, canvas: Canvas,
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


def place_contours(rng: np.random.Generator,
                   settings: PathfinderSettings) -> list[np.ndarray] | None:
  """Targets then distractors on an empty canvas, as (num_paddles + 1, 2) pivot arrays
  (the targets first); None when the targets stay stuck.

  `settings` must hold a single margin (`PathfinderSettings.with_margin`). A distractor
  still stuck after _DISTRACTOR_ATTEMPTS tries is left out.
  """
  for _ in range(_TARGET_ATTEMPTS):
    canvas = Canvas(settings)
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
