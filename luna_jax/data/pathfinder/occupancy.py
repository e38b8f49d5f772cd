"""The occupancy mask of a canvas, in vector form: a growing list of owned capsules.

The reference keeps a raster mask, dilates it by the margin and rejects paddles whose own
dilated mask touches it. Here every drawn paddle is a capsule, a segment with a radius
(half the stroke width plus the margin: its dilated mask), every marker a disc, and a
candidate paddle's dilated mask overlaps them exactly when its segment comes closer than
(capsule radius + half the stroke width + margin), so paddles keep (stroke width + 2
margins) apart. That is the same test without discretisation, and it is cheap to
vectorise over all candidate directions at once. A contour's own newest paddle is exempt,
as in the reference, since the next paddle always starts next to it. The targets' tips
also get marker-sized discs, so that no other stroke touches a marker (the reference does
not reserve them; a marker hidden under a distractor only makes an example ambiguous).
"""

from __future__ import annotations

import numpy as np

from luna_jax.data.pathfinder.geometry import Segments, point_segment_distance2


class Occupancy:
  """The dilated occupancy mask: capsules, each with its owner (a contour's index).

  Held in Python lists of floats. A query meets a few dozen capsules, and a loop that
  first compares bounding boxes is cheaper there than numpy's cost per call; `arrays`
  gives the numpy form for the tests that cover many candidates at once.
  """

  def __init__(self, radius: float, margin: float):
    """radius, margin: those of the paddle queries (`Canvas.add_paddle`), whose squared
    clearance each capsule keeps ready."""
    self.query = (radius, margin)
    # Capsule segments a -> a + e as (ay, ax, ey, ex, |e|^2, clearance^2 of the paddle
    # queries): `geometry.ray_clear`'s obstacles.
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

  def nearby(self, owner: int, radius: float, margin: float, centre, reach: float, *,
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

  def arrays(self, index: list[int]) -> Segments:
    """The capsules `index` as numpy segments (M of them)."""
    obstacles = np.array([self.obstacles[i] for i in index], np.float64).reshape(-1, 6)
    return Segments(obstacles[:, 0:2], obstacles[:, 2:4], obstacles[:, 4])

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
    dist2 = point_segment_distance2(centres, self.arrays(index))
    return np.all(dist2 >= np.square(clearance), axis=1)
