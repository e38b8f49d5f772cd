"""The settings of every Pathfinder variant: one per resolution and difficulty.

Those of LRA's `data/pathfinder.py` docstring (the arguments Linsley et al.'s `snakes2.py`
ran with for the release) for 32, 64, 128 and 256, and the generator's own defaults where
that docstring gives none (paddle length 5 at 128 and 256; padding 22 and seed distance 27
at 256), except the paddle length at 64, which is ours (3; see _GEOMETRY). At 128 the
margin is drawn per image from {2, 3}.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True, kw_only=True)
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

  def with_margin(self, margin: float) -> PathfinderSettings:
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
