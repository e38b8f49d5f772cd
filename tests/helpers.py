"""Small utilities shared by the tests."""

import numpy as np


def rel_err(actual, expected) -> float:
  """||actual - expected|| / ||expected|| in float64."""
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  return float(np.linalg.norm(actual - expected) / np.linalg.norm(expected))


def random_mask(rng: np.random.Generator, batch: int, length: int) -> np.ndarray:
  """Random boolean mask, scattered (not only a prefix), at least one True per row."""
  mask = rng.random((batch, length)) < 0.7
  mask[np.arange(batch), rng.integers(0, length, batch)] = True
  return mask


def prefix_mask(lengths, length: int) -> np.ndarray:
  return np.arange(length)[None, :] < np.asarray(lengths)[:, None]


def decode_in_chunks(encoder, params, x, sizes) -> np.ndarray:
  """Feeds x to encoder.clone(decode=True) through its cache in pieces of the given sizes
  and returns the concatenated outputs."""
  import jax

  decoder = encoder.clone(decode=True)
  cache = decoder.init(jax.random.key(0), x)["cache"]
  outs, start = [], 0
  for size in sizes:
    (y, _), variables = decoder.apply({"params": params, "cache": cache},
                                      x[:, start:start + size], mutable=["cache"])
    cache, start = variables["cache"], start + size
    outs.append(np.asarray(y))
  assert start == x.shape[1], "the chunk sizes must cover the sequence"
  return np.concatenate(outs, axis=1)
