"""Pathfinder generator: settings, images, label bookkeeping, geometry, release layout."""

from __future__ import annotations

import dataclasses
import math
import pathlib

import numpy as np
import pytest
from PIL import Image

from luna_jax.data import pathfinder_gen as pg


def _sample(resolution: int, difficulty: str, label: int, seed: int) -> pg.Sample:
  settings = pg.settings_for(resolution, difficulty)
  return pg.generate_sample(np.random.default_rng(seed), settings, label)


def _paddles(contour: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
  """(n + 1, 2) pivots -> (n, 2) paddle starts and ends, as the module documents."""
  steps = np.diff(contour, axis=0)
  u = steps / np.linalg.norm(steps, axis=1, keepdims=True)
  return contour[:-1] + margin * u, contour[1:] - margin * u


def _point_to_segments(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(P, 2) points, (S, 2) segments -> (P, S) distances; written independently here."""
  d = b - a
  t = np.einsum("psk,sk->ps", points[:, None] - a[None], d) / np.maximum(
      np.einsum("sk,sk->s", d, d), 1e-12)
  closest = a[None] + np.clip(t, 0, 1)[..., None] * d[None]
  return np.linalg.norm(points[:, None] - closest, axis=-1)


def _segment_distance(a1, b1, a2, b2, samples: int = 101) -> float:
  """Min distance between two segments, by dense sampling of the first (error < 1e-2)."""
  points = a1 + np.linspace(0, 1, samples)[:, None] * (b1 - a1)
  return float(_point_to_segments(points, a2[None], b2[None]).min())


# ---------------------------------------------------------------------------------------
# Settings and errors.


def test_lra_settings():
  s32 = pg.settings_for(32, "hard")
  assert (s32.padding, s32.antialias_scale, s32.paddle_margin, s32.seed_distance,
          s32.marker_radius, s32.contour_length, s32.paddle_length, s32.paddle_thickness,
          s32.continuity) == (1, 2, 1, 7, 1.5, 14, 2, 0.5, 1.0)
  assert (s32.distractor_length, s32.num_distractor_snakes) == (4, 20 // 4)
  s128 = pg.settings_for(128, "easy")
  assert (s128.paddle_margin, s128.seed_distance, s128.marker_radius, s128.paddle_length,
          s128.paddle_thickness, s128.continuity) == (2, 20, 3, 5, 1.5, 1.8)
  assert (s128.contour_length, s128.distractor_length, s128.num_distractor_snakes) == (
      6, 2, 35 // 2)
  assert pg.settings_for(64).resolution == 64 and pg.settings_for(64).contour_length == 14
  # 256 is 128 drawn twice as large.
  s256, s128h = pg.settings_for(256), pg.settings_for(128)
  for name in ("padding", "paddle_margin", "seed_distance", "marker_radius", "paddle_length",
               "paddle_thickness"):
    assert getattr(s256, name) == 2 * getattr(s128h, name), name
  assert s256.num_distractor_snakes == s128h.num_distractor_snakes
  assert pg.DIFFICULTIES == {"easy": ("curv_baseline", 6),
                             "intermediate": ("curv_contour_length_9", 9),
                             "hard": ("curv_contour_length_14", 14)}
  assert pg.RESOLUTIONS == (32, 64, 128, 256)


def test_unknown_values_raise_helpfully(tmp_path):
  with pytest.raises(ValueError, match=r"resolution 48.*\(32, 64, 128, 256\)"):
    pg.settings_for(48)
  with pytest.raises(ValueError, match=r"difficulty 'medium'.*'easy'.*'hard'.*'intermediate'"):
    pg.settings_for(32, "medium")
  with pytest.raises(ValueError, match="resolution 100"):
    pg.write_release(tmp_path, 100, "hard", num_images=2, seed=0)
  with pytest.raises(ValueError, match="difficulty 'Hard'"):
    pg.write_release(tmp_path, 32, "Hard", num_images=2, seed=0)
  assert not any(tmp_path.iterdir())  # nothing written before the check
  with pytest.raises(ValueError, match="label"):
    pg.generate_sample(np.random.default_rng(0), pg.settings_for(32), 2)


# ---------------------------------------------------------------------------------------
# Samples.


@pytest.mark.parametrize("resolution,difficulty", [(32, "hard"), (64, "intermediate"),
                                                   (128, "hard"), (256, "easy")])
def test_image_format(resolution, difficulty):
  for label in (0, 1):
    sample = _sample(resolution, difficulty, label, seed=resolution + label)
    image = sample.image
    assert image.shape == (resolution, resolution) and image.dtype == np.uint8
    assert image.min() == 0 and image.max() == 255
    lit = np.mean(image > 0)
    assert 0.02 < lit < 0.6, lit  # strokes on a mostly dark background
    assert sample.label == label


def test_same_rng_state_same_sample():
  a, b = _sample(32, "hard", 1, seed=3), _sample(32, "hard", 1, seed=3)
  c = _sample(32, "hard", 1, seed=4)
  assert np.array_equal(a.image, b.image)
  assert all(np.array_equal(x, y) for x, y in zip(a.contours, b.contours))
  assert not np.array_equal(a.image, c.image)


@pytest.mark.parametrize("resolution", [32, 128])
def test_label_matches_markers(resolution):
  settings = pg.settings_for(resolution, "hard")
  for seed in range(6):
    label = seed % 2
    sample = _sample(resolution, "hard", label, seed)
    first, second = sample.marker_contours
    assert label == int(first == second)
    assert first == 0 and second in (0, 1)  # markers sit on the targets
    # Marker 0 on the start tip of its contour, marker 1 on the end tip of its own.
    assert np.allclose(sample.marker_centres[0], sample.contours[first][0])
    assert np.allclose(sample.marker_centres[1], sample.contours[second][-1])
    for y, x in sample.marker_centres:
      assert sample.image[int(y), int(x)] >= 250, (y, x)
    # The markers never touch each other either.
    gap = math.dist(*sample.marker_centres)
    assert gap >= 2 * settings.marker_radius + settings.paddle_margin, gap


def test_label_only_moves_the_second_marker():
  """Same draws, other label: same contours, the second marker on the other target."""
  one, zero = _sample(32, "hard", 1, seed=11), _sample(32, "hard", 0, seed=11)
  assert all(np.array_equal(x, y) for x, y in zip(one.contours, zero.contours))
  assert np.allclose(one.marker_centres[0], zero.marker_centres[0])
  assert np.allclose(one.marker_centres[1], one.contours[0][-1])
  assert np.allclose(zero.marker_centres[1], zero.contours[1][-1])
  assert not np.array_equal(one.image, zero.image)


@pytest.mark.parametrize("resolution,difficulty", [(32, "hard"), (32, "easy"),
                                                   (64, "hard"), (128, "intermediate")])
def test_contour_geometry(resolution, difficulty):
  s = pg.settings_for(resolution, difficulty)
  step = s.paddle_length + 2 * s.paddle_margin
  max_turn = math.pi / (2 * s.continuity)
  for seed in range(3):
    sample = _sample(resolution, difficulty, seed % 2, seed)
    contours = sample.contours
    assert len(contours) == 2 + s.num_distractor_snakes
    # Both targets have the same length, so length is no cue.
    assert contours[0].shape == contours[1].shape == (s.contour_length + 1, 2)
    for distractor in contours[2:]:
      assert distractor.shape == (s.distractor_length + 1, 2)
    for contour in contours:
      steps = np.diff(contour, axis=0)
      np.testing.assert_allclose(np.linalg.norm(steps, axis=1), step, rtol=1e-9)
      angles = np.arctan2(steps[:, 0], steps[:, 1])
      turns = np.abs((np.diff(angles) + math.pi) % (2 * math.pi) - math.pi)
      assert np.all(turns < max_turn + 1e-9), turns.max()
      assert np.all((contour >= s.padding) & (contour <= resolution - s.padding))


def _all_paddles(sample: pg.Sample, margin: float) -> list[tuple]:
  """(contour index, paddle index, start, end) for every paddle of a sample."""
  return [(i, k, a, b) for i, c in enumerate(sample.contours)
          for k, (a, b) in enumerate(zip(*_paddles(c, margin)))]


@pytest.mark.parametrize("resolution", [32, 128])
def test_strokes_keep_their_margin(resolution):
  """Paddles of different contours, and non-adjacent paddles of one contour, never come
  closer than the dilated occupancy mask allows."""
  s = pg.settings_for(resolution, "hard")
  clearance = 2 * s.paddle_thickness + s.paddle_margin
  samples = 101
  for seed in range(6):
    paddles = _all_paddles(_sample(resolution, "hard", seed % 2, seed), s.paddle_margin)
    contour, index, starts, ends = (np.array(x) for x in zip(*paddles))
    # Distances from points along each paddle to every paddle, then per pair.
    t = np.linspace(0, 1, samples)[None, :, None]
    points = (starts[:, None] + t * (ends - starts)[:, None]).reshape(-1, 2)
    dist = _point_to_segments(points, starts, ends).reshape(len(paddles), samples, -1)
    dist = dist.min(axis=1)
    dist = np.minimum(dist, dist.T)
    checked = ((contour[:, None] != contour[None])
               | (np.abs(index[:, None] - index[None]) >= 2))
    tolerance = s.paddle_length / (samples - 1) / 2  # half the sample spacing
    assert dist[checked].min() >= clearance - tolerance, (seed, dist[checked].min())
    assert checked.sum() > len(paddles) ** 2 / 2


@pytest.mark.parametrize("resolution", [32, 128])
def test_no_other_stroke_touches_a_target_tip(resolution):
  """Every target tip (where markers go) keeps a marker's clearance from the paddles of
  all other contours."""
  s = pg.settings_for(resolution, "hard")
  clearance = s.marker_radius + s.paddle_thickness + s.paddle_margin
  for seed in range(8):
    sample = _sample(resolution, "hard", seed % 2, seed)
    paddles = _all_paddles(sample, s.paddle_margin)
    for target in (0, 1):
      tips = sample.contours[target][[0, -1]]
      starts, ends = map(np.array, zip(*[(a, b) for i, _, a, b in paddles if i != target]))
      gap = _point_to_segments(tips, starts, ends).min()
      assert gap >= clearance - 1e-9, (seed, target, gap)


def test_candidate_tests_match_brute_force():
  """The vectorised candidate distances, crossings included, against dense sampling,
  and the scalar single-candidate test against those."""
  rng = np.random.default_rng(0)
  start = np.array([3.0, 3.0])
  angles = rng.uniform(0, 2 * np.pi, 50)
  u = np.stack([np.sin(angles), np.cos(angles)], axis=1)
  a = rng.uniform(0, 6, (7, 2))
  b = a + rng.normal(size=(7, 2)) * 2
  b[0] = a[0]  # a disc
  e = b - a
  length2 = np.maximum(np.sum(e * e, axis=1), 1e-12)
  got = np.sqrt(pg._ray_segment_distance2(start, u, 1.0, 3.5, a, e, length2))
  want = np.array([[_segment_distance(start + 1.0 * uk, start + 3.5 * uk, a[j], b[j], 2001)
                    for j in range(7)] for uk in u])
  assert np.abs(got - want).max() < 2e-3
  assert (want < 1e-3).sum() >= 5  # some candidates do cross an obstacle
  for clearance in (0.05, 0.5, 1.5):
    obstacles = [(*a[j], *e[j], length2[j], clearance**2) for j in range(7)]
    scalar = [pg._ray_clear(*start, *uk, 1.0, 3.5, obstacles, True) for uk in u]
    assert scalar == list(np.all(got >= clearance, axis=1))
    assert 0 < sum(scalar) < len(u)


def test_image_shows_exactly_the_strokes():
  """Pixels on paddle midpoints are lit; pixels clear of every stroke are black."""
  s = pg.settings_for(32, "hard")
  sample = _sample(32, "hard", 1, seed=2)
  starts, ends = map(np.concatenate, zip(*(_paddles(c, s.paddle_margin)
                                            for c in sample.contours)))
  mids = (starts + ends) / 2
  assert np.all(sample.image[mids[:, 0].astype(int), mids[:, 1].astype(int)] >= 60)
  centres = np.stack(np.meshgrid(np.arange(32), np.arange(32), indexing="ij"), -1)
  centres = centres.reshape(-1, 2) + 0.5
  to_paddles = _point_to_segments(centres, starts, ends).min(axis=1)
  markers = np.array(sample.marker_centres)
  to_markers = _point_to_segments(centres, markers, markers).min(axis=1)
  # A pixel reaches at most half a diagonal from its centre.
  clear = ((to_paddles > s.paddle_thickness + 0.75)
           & (to_markers > s.marker_radius + 0.75)).reshape(32, 32)
  assert clear.mean() > 0.3
  assert np.all(sample.image[clear] == 0)


def test_bounded_retries_fail_loudly():
  """Settings that leave no room raise instead of looping forever."""
  crowded = dataclasses.replace(pg.settings_for(32, "hard"), seed_distance=100)
  with pytest.raises(RuntimeError, match="Could not place"):
    pg.generate_sample(np.random.default_rng(0), crowded, 1)


# ---------------------------------------------------------------------------------------
# Release files.


def _files(root: pathlib.Path) -> dict[str, bytes]:
  return {p.relative_to(root).as_posix(): p.read_bytes()
          for p in sorted(root.rglob("*")) if p.is_file()}


def test_release_layout_and_metadata(tmp_path):
  seen = []
  subset = pg.write_release(tmp_path, 32, "easy", num_images=7, seed=3, images_per_batch=4,
                            progress=seen.append)
  assert subset == tmp_path / "pathfinder32" / "curv_baseline"
  assert seen == list(range(1, 8))
  files = _files(tmp_path)
  expected = {f"pathfinder32/curv_baseline/imgs/{b}/sample_{i}.png"
              for b, n in ((0, 4), (1, 3)) for i in range(n)}
  expected |= {"pathfinder32/curv_baseline/metadata/0.npy",
               "pathfinder32/curv_baseline/metadata/1.npy"}
  assert set(files) == expected

  settings = pg.settings_for(32, "easy")
  labels = []
  for batch, count in ((0, 4), (1, 3)):
    lines = (subset / "metadata" / f"{batch}.npy").read_text().splitlines()
    assert len(lines) == count
    for i, line in enumerate(lines):
      fields = line.split(" ")
      assert len(fields) == 11, line
      assert fields[:3] == [f"imgs/{batch}", f"sample_{i}.png", str(i)]
      assert fields[4:] == ["1.0", "6", "2", "2", "0.5", "1", "1"]
      label = int(fields[3])
      labels.append(label)
      with Image.open(subset / fields[0] / fields[1]) as png:
        assert png.mode == "L" and png.size == (32, 32)
        pixels = np.asarray(png)
      # Image k is drawn from its own generator seeded (seed, k), with the label the
      # metadata gives; the other label would have moved a marker.
      k = 4 * batch + i
      again = pg.generate_sample(np.random.default_rng([3, k]), settings, label)
      assert np.array_equal(pixels, again.image)
      other = pg.generate_sample(np.random.default_rng([3, k]), settings, 1 - label)
      assert not np.array_equal(pixels, other.image)
  assert sorted(labels) == [0, 0, 0, 0, 1, 1, 1]


def test_release_metadata_line_matches_lra_example(tmp_path):
  subset = pg.write_release(tmp_path, 32, "hard", num_images=2, seed=0)
  assert subset == tmp_path / "pathfinder32" / "curv_contour_length_14"
  lines = (subset / "metadata" / "0.npy").read_text().splitlines()
  labels = [int(line.split(" ")[3]) for line in lines]
  assert sorted(labels) == [0, 1]
  assert lines[0] == f"imgs/0 sample_0.png 0 {labels[0]} 1.0 14 4 2 0.5 1 1"
  assert lines[1] == f"imgs/0 sample_1.png 1 {labels[1]} 1.0 14 4 2 0.5 1 1"


def test_release_labels_balanced_and_shuffled(tmp_path):
  orders = []
  for seed in (0, 1, 2):
    subset = pg.write_release(tmp_path / str(seed), 32, "easy", num_images=12, seed=seed)
    lines = (subset / "metadata" / "0.npy").read_text().splitlines()
    labels = [int(line.split(" ")[3]) for line in lines]
    assert sum(labels) == 6 and len(labels) == 12
    orders.append(labels)
  assert len({tuple(o) for o in orders}) > 1  # the order depends on the seed


def test_release_is_deterministic(tmp_path):
  write = lambda name, seed: _files(pg.write_release(tmp_path / name, 32, "intermediate",
                                                     num_images=6, seed=seed,
                                                     images_per_batch=4))
  first, again, other = write("a", 5), write("b", 5), write("c", 6)
  assert first == again
  assert set(first) == set(other)
  pngs = [name for name in first if name.endswith(".png")]
  assert all(first[name] != other[name] for name in pngs)
