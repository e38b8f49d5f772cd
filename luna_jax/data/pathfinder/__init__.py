"""Seeded generator of Pathfinder images (Linsley et al. 2018), in the LRA release layout.

An image holds two target contours and several shorter distractor contours, each a chain
of short line segments ("paddles") separated by small gaps. Two markers sit on contour
tips; the label says whether both markers lie on the same contour. Images are drawn as
Linsley et al.'s `snakes2.py` drew the LRA release, with LRA's settings.

    settings.py    PathfinderSettings per resolution and difficulty (`settings_for`)
    geometry.py    contours as pivots and paddles; the distances of the occupancy tests
    occupancy.py   the dilated occupancy mask, in vector form (capsules)
    canvas.py      growing the targets and distractors on a canvas (`place_contours`)
    render.py      drawing the paddles and markers as the original does (PIL, Lanczos)
    sampling.py    one image and its label (`generate_sample`, `Sample`)
    release.py     the release's folders and metadata, on any number of cores
                   (`write_release`, `write_splits`)

How fast it draws, and how its images compare with the original's:
benchmarks/results/pathfinder_generator.md.

Coordinates are (y, x) in output pixels; pixel (i, j) covers [i, i + 1) x [j, j + 1).
"""

from luna_jax.data.pathfinder.geometry import contour_tips, paddle_segments
from luna_jax.data.pathfinder.release import subset_dir, write_release, write_splits
from luna_jax.data.pathfinder.sampling import Sample, generate_sample
from luna_jax.data.pathfinder.settings import (DIFFICULTIES, RESOLUTIONS, PathfinderSettings,
                                               settings_for)

__all__ = ["DIFFICULTIES", "RESOLUTIONS", "PathfinderSettings", "Sample", "contour_tips",
           "generate_sample", "paddle_segments", "settings_for", "subset_dir",
           "write_release", "write_splits"]
