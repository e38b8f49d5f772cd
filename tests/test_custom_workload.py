"""Adding a kind of run is one module and one `register_workload` line: a workload defined
entirely in this file (sequence regression: predict the share of one token in a sequence)
brings its own config keys and check, data source, model and objective, and trains
through `train_and_evaluate` as the built-in ones do."""

from __future__ import annotations

import dataclasses
import json

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import pytest

import luna_jax
from luna_jax import errors
from luna_jax.data import pipeline
from luna_jax.data.source import Feed
from luna_jax.data.vocab import Vocab
from luna_jax.training import base_config, train_and_evaluate, validate
from luna_jax.training import model_config
from luna_jax.training.workloads import (Workload, register_workload, unregister_workload,
                                         workload_of)
from luna_jax.training.workloads.base import check_rows


@dataclasses.dataclass
class ShareSource:
  """Random sequences of ids 1..4 with their share of id 1: {"inputs" (b, N), "target"
  (b,), "weight" (b,)}. Each split its own seed; nothing is read from disk."""

  max_len: int
  examples: int = 96

  def __post_init__(self):
    self.vocab = Vocab(4)

  def _split(self, split: str) -> np.ndarray:
    rng = np.random.default_rng(["train", "validation", "test"].index(split))
    return rng.integers(1, 5, (self.examples, self.max_len)).astype(np.int32)

  def batches(self, split: str, feed: Feed, *, num_epochs=None, shuffle=None):
    tokens = self._split(split)

    def load(rows):
      inputs = tokens[np.maximum(rows, 0)]
      return {"inputs": inputs, "target": (inputs == 1).mean(1).astype(np.float32),
              "weight": (rows >= 0).astype(np.float32)}

    return pipeline.batched(len(tokens), load, global_batch=feed.global_batch,
                            seed=feed.seed,
                            shuffle=split == "train" if shuffle is None else shuffle,
                            num_epochs=num_epochs, process_index=feed.process_index,
                            process_count=feed.process_count)

  def batch_spec(self, feed: Feed) -> dict:
    b = feed.global_batch
    return {"inputs": ((b, self.max_len), np.int32), "target": ((b,), np.float32),
            "weight": ((b,), np.float32)}

  def provenance(self) -> dict:
    return {"source": "generated in tests/test_custom_workload.py"}


class Regressor(nn.Module):
  """Embedding -> any registered mixer's encoder -> mean over positions -> one number."""

  vocab_size: int
  encoder: dict

  @nn.compact
  def __call__(self, tokens_BxN, deterministic: bool = True):
    x = nn.Embed(self.vocab_size, self.encoder["num_heads"] * 8)(tokens_BxN)
    x, _ = luna_jax.Encoder(**self.encoder)(x, deterministic=deterministic)
    return nn.Dense(1)(x.mean(1))[:, 0]


@dataclasses.dataclass(frozen=True)
class SquaredError:
  """Mean squared error of the prediction; "correct" counts predictions within 0.05."""

  name: str = "regress"
  select: str = "loss"
  higher_is_better: bool = False

  def sums(self, model, params, batch, key, train: bool) -> dict:
    rngs = {"dropout": key} if train else {}
    predicted = model.apply({"params": params}, batch["inputs"], deterministic=not train,
                            rngs=rngs)
    error = predicted - batch["target"]
    w = batch["weight"]
    sums = {"loss_sum": jnp.sum(w * error**2), "count": jnp.sum(w),
            "correct": jnp.sum(w * (jnp.abs(error) < 0.05))}
    if not train:  # evaluation also sums what the baseline needs
      sums["target_sum"] = jnp.sum(w * batch["target"])
      sums["target_sq_sum"] = jnp.sum(w * batch["target"]**2)
    return sums

  def summarize(self, totals: dict) -> dict:
    count = max(float(totals["count"]), 1.0)
    mean = float(totals["target_sum"]) / count
    return {"loss": float(totals["loss_sum"]) / count,
            "accuracy": float(totals["correct"]) / count,
            "target_variance": float(totals["target_sq_sum"]) / count - mean**2}

  @staticmethod
  def summary_line(summary: dict) -> str:
    return f"Test squared error {summary['test_loss']:.5f}."


class TokenShare(Workload):
  name = "token_share"
  objectives = ("regress",)

  def task_names(self):
    return ("token_share",)

  def add_config(self, c):
    c.token_share_examples = 96  # sequences per split

  def check(self, config, devices):
    check_rows(config, devices)
    errors.require(config.token_share_examples >= config.batch_size, "token_share_examples "
                   "must hold at least one batch.")

  def source(self, config, compile_only=False):
    return ShareSource(config.max_len, config.token_share_examples)

  def build_model(self, config, source):
    return Regressor(vocab_size=source.vocab.size,
                     encoder=model_config.encoder_settings(config))

  def objective(self, config, source):
    return SquaredError()

  def summary_extras(self, run, test):
    return {"baseline_loss": test["target_variance"]}  # predicting the mean


@pytest.fixture
def token_share():
  workload = register_workload(TokenShare())
  yield workload
  unregister_workload(workload.name)


def _config(mixer: str = "luna"):
  c = base_config()  # made after registration: it has the workload's key
  c.task, c.max_len, c.batch_size = "token_share", 16, 8
  m = c.model
  m.name, m.num_layers, m.d_model, m.num_heads, m.ffn_dim = mixer, 1, 16, 2, 32
  m.luna.proj_len = 4
  m.dropout = m.attention_dropout = 0.0
  c.optimizer.learning_rate, c.optimizer.warmup_steps = 3e-3, 5
  c.num_train_steps, c.log_every, c.eval_every, c.checkpoint_every = 60, 20, 30, 30
  c.progress_bar = False
  return c


def test_a_workload_defined_here_trains_through_train_and_evaluate(token_share, tmp_path,
                                                                    capsys):
  config = _config()
  assert workload_of(config) is token_share and config.token_share_examples == 96
  summary = train_and_evaluate(config, tmp_path)
  assert summary["workload"] == "token_share" and summary["objective"] == "regress"
  assert summary["steps"] == 60 and summary["best_step"] in (30, 60)
  # Learnt: well under the squared error of predicting the mean share.
  assert summary["test_loss"] < 0.5 * summary["baseline_loss"], summary
  assert summary["data_provenance"]["source"].endswith("test_custom_workload.py")
  assert capsys.readouterr().out.rstrip().endswith(
      f"Test squared error {summary['test_loss']:.5f}.")
  saved = json.loads((tmp_path / "config.json").read_text())
  assert saved["objective"] == "regress"  # the workload's own, resolved


def test_its_checks_and_task_name_take_part_in_validation(token_share):
  config = _config()
  config.token_share_examples = 4
  with pytest.raises(ValueError, match="token_share_examples must hold at least one batch"):
    validate(config, 1)
  config = _config()
  config.objective = "classify"
  with pytest.raises(ValueError, match="task=token_share trains with objective regress"):
    validate(config, 1)
  config = _config()
  config.task = "token_shares"
  with pytest.raises(ValueError, match="unknown task 'token_shares'.*token_share"):
    validate(config, 1)
  with pytest.raises(ValueError, match="task 'token_share' is already run by"):
    register_workload(type("Again", (TokenShare,), {"name": "again"})())
