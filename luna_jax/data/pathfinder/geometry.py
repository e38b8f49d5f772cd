"""Contour geometry and the distances behind the occupancy tests.

A contour starts at a tip, where its first paddle begins, and each paddle's far end is
`paddle_margin` short of the next pivot, from which the next paddle starts `paddle_margin`
out: pivots p_0 .. p_n are `paddle_length + 2 * paddle_margin` apart, paddle k is the part
of p_k -> p_{k+1} that leaves a gap of `paddle_margin` at both ends, and the tips (where
markers go) are the outer ends of the first and last paddles, p_0 and p_n themselves lying
`paddle_margin` beyond them as in the original (`paddle_segments`, `contour_tips`).

A candidate paddle is a `Ray`: the segment start + s u, near <= s <= far, for a unit
direction u; obstacles are segments a -> a + e (a disc when e = 0). The tests run many
times per image on small arrays, where the number of numpy calls, not their size, sets
the cost; hence the hand-expanded formulas, and `ray_clear`, the plain-float twin of
`ray_segment_distance2` for the one candidate that usually turns out free.

Coordinates are (y, x) in output pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Ray(NamedTuple):
  """Candidate paddles from one start: the segments start + s u, near <= s <= far.

  crossings: whether to detect crossing segments (distance 0). A caller may skip it when
  it only compares with clearances above (far - near) / 2: a crossing then already puts a
  candidate endpoint within that distance of the obstacle.
  """

  start: tuple[float, float]
  near: float
  far: float
  crossings: bool = True


class Segments(NamedTuple):
  """M segments a -> a + e: starts a (M, 2), extents e (M, 2), |e|^2 (M,), kept > 0 for
  discs (e = 0)."""

  a: np.ndarray
  e: np.ndarray
  length2: np.ndarray


def unit(theta: np.ndarray) -> np.ndarray:
  """(...,) angles -> (..., 2) unit vectors (y, x)."""
  return np.stack([np.sin(theta), np.cos(theta)], axis=-1)


def _norm2(v: np.ndarray) -> np.ndarray:
  """(M, 2) -> (M,) squared lengths."""
  return v[:, 0] * v[:, 0] + v[:, 1] * v[:, 1]


def point_segment_distance2(p: np.ndarray, segments: Segments) -> np.ndarray:
  """Squared distances from (K, 2) points to M segments -> (K, M)."""
  a, e, length2 = segments
  wy = p[:, 0, None] - a[:, 0]
  wx = p[:, 1, None] - a[:, 1]
  t = np.minimum(np.maximum((wy * e[:, 0] + wx * e[:, 1]) / length2, 0.0), 1.0)
  ry, rx = wy - t * e[:, 0], wx - t * e[:, 1]
  return ry * ry + rx * rx


def ray_segment_distance2(ray: Ray, u: np.ndarray, segments: Segments) -> np.ndarray:
  """Squared distances between the candidates of `ray` along (K, 2) unit directions u and
  M segments -> (K, M).

  All candidates share the start, which turns every term into a few (K, M) products.
  """
  near, far = ray.near, ray.far
  a, e, length2 = segments
  w = a - np.array(ray.start)  # obstacle starts, relative to the start
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
  if not ray.crossings:
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


def ray_clear(ray: Ray, uy: float, ux: float,
              obstacles: list[tuple[float, float, float, float, float, float]]) -> bool:
  """Scalar twin of `ray_segment_distance2` for the one candidate of `ray` along (uy, ux):
  whether it keeps clear of every obstacle (ay, ax, ey, ex, |e|^2, clearance^2).

  Plain floats beat numpy by far for the one candidate that usually turns out free.
  """
  (py, px), near, far, crossings = ray
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


def paddle_segments(contour: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
  """(n + 1, 2) pivots -> the n paddles' start and end points, each (n, 2)."""
  steps = np.diff(contour, axis=0)
  u = steps / np.linalg.norm(steps, axis=-1, keepdims=True)
  return contour[:-1] + margin * u, contour[1:] - margin * u


def contour_tips(contour: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
  """(n + 1, 2) pivots -> the contour's start and end tips (the outer paddle ends)."""
  starts, ends = paddle_segments(contour, margin)
  return starts[0], ends[-1]
