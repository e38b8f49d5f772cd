"""Is generated Pathfinder learnable on this machine's budget? A plain CNN as the probe.

    python benchmarks/pathfinder_cnn_probe.py                   # 40,000 easy images, 400 s
    python benchmarks/pathfinder_cnn_probe.py --num_train 10000 --seconds 200
    python benchmarks/pathfinder_cnn_probe.py --quick           # a few images (the test suite)

Not one of the library's models: a 6-layer convolutional network (3 x 3 kernels, 32-64
channels, max pooling after every second layer, a 128-unit hidden layer), Adam at 1e-3,
batch 64, on the images as `prepare` writes them (read back from the PNGs). Convolutions
suit the task's local contour-following better than any sequence mixer here, so where
this stays at chance in a time budget, the mixers are not expected to do better in it.
Writes pathfinder_cnn_probe_<machine>.json to --out (default benchmarks/results/): the
test accuracy after every epoch, and the seconds elapsed.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import tempfile
import time

import flax.linen as nn
import jax
import numpy as np
import optax

from benchmarks import common
from luna_jax.data import pathfinder, readers

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


class ProbeCNN(nn.Module):
  @nn.compact
  def __call__(self, x_BxHxWx1):
    x = x_BxHxWx1
    for i, channels in enumerate([32, 32, 64, 64, 64, 64]):
      x = nn.relu(nn.Conv(channels, (3, 3))(x))
      if i % 2 == 1:
        x = nn.max_pool(x, (2, 2), (2, 2))
    x = x.reshape(x.shape[0], -1)
    return nn.Dense(2)(nn.relu(nn.Dense(128)(x)))


def load(resolution: int, difficulty: str, num_train: int, num_test: int,
         seed: int) -> tuple[np.ndarray, np.ndarray]:
  """(images (n, H, W, 1) float32 in [0, 1], labels (n,)): train first, then test."""
  with tempfile.TemporaryDirectory() as root:
    folder = pathfinder.write_release(root, resolution, difficulty,
                                      num_images=num_train + num_test, seed=seed, workers=None)
    pairs = list(readers.read_pathfinder_metadata(folder))
    images = np.stack([readers.read_png(path, resolution) for path, _ in pairs])
  labels = np.array([label for _, label in pairs])
  return images.astype(np.float32)[..., None] / 255.0, labels


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--quick", action="store_true")
  parser.add_argument("--resolution", type=int, default=32)
  parser.add_argument("--difficulty", default="easy")
  parser.add_argument("--num_train", type=int, default=40_000)
  parser.add_argument("--num_test", type=int, default=2_000)
  parser.add_argument("--seconds", type=float, default=400.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=str(RESULTS))
  args = parser.parse_args()
  if args.quick:
    args.num_train, args.num_test, args.seconds = 128, 64, 1.0
  images, labels = load(args.resolution, args.difficulty, args.num_train, args.num_test,
                        args.seed)
  x_train, y_train = images[:args.num_train], labels[:args.num_train]
  x_test, y_test = images[args.num_train:], labels[args.num_train:]
  model, tx = ProbeCNN(), optax.adam(1e-3)
  params = model.init(jax.random.PRNGKey(args.seed), x_train[:2])
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y):
    def loss_fn(p):
      logits = model.apply(p, x)
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  accuracy = jax.jit(lambda p, x, y: (model.apply(p, x).argmax(-1) == y).mean())
  rng, start, epochs = np.random.default_rng(args.seed), time.perf_counter(), []
  while not epochs or time.perf_counter() - start < args.seconds:
    order = rng.permutation(args.num_train)
    for i in range(0, args.num_train - 63, 64):
      batch = order[i:i + 64]
      params, opt_state, loss = step(params, opt_state, x_train[batch], y_train[batch])
    epochs.append({"epoch": len(epochs) + 1, "seconds": time.perf_counter() - start,
                   "train_loss": float(loss),
                   "test_accuracy": float(accuracy(params, x_test, y_test))})
    print(epochs[-1], flush=True)
  record = {"resolution": args.resolution, "difficulty": args.difficulty,
            "num_train": args.num_train, "num_test": args.num_test,
            "test_majority_rate": float(max(y_test.mean(), 1 - y_test.mean())),
            "epochs": epochs}
  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  name = f"pathfinder_cnn_probe_{common.device_name()}{'_quick' if args.quick else ''}"
  (out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
  main()
