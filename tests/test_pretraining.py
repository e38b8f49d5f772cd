"""Masked and causal language modelling, self-pre-training and init_from."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from luna_jax.models import language_model as lm
from luna_jax.training import train_and_evaluate, validate
from luna_jax.training.init_from import load_pretrained
from luna_jax.training.objectives import LanguageModelling
from tests.training_fixtures import latest_params, tiny_config, train_killed_then_resumed

NUM_TOKENS, CLS, EOS = 15, 16, 17  # the ListOps vocabulary (size 18, [MASK] = 18)


def _tokens(rng, b, n):
  """Content ids with CLS first, EOS after a random length and padding after that."""
  tokens = rng.integers(1, NUM_TOKENS + 1, (b, n))
  lengths = rng.integers(n // 2, n - 1, b)
  for i, length in enumerate(lengths):
    tokens[i, 0], tokens[i, length] = CLS, EOS
    tokens[i, length + 1:] = 0
  return jnp.asarray(tokens, jnp.int32)


def test_mask_tokens_follows_bert_rates_on_content_tokens_only():
  tokens = _tokens(np.random.default_rng(0), 64, 512)
  inputs, targets, weights = lm.mask_tokens(tokens, jax.random.key(3), num_tokens=NUM_TOKENS,
                                            mask_token=18)
  tokens, inputs, chosen = np.asarray(tokens), np.asarray(inputs), np.asarray(weights) > 0
  content = (tokens >= 1) & (tokens <= NUM_TOKENS)
  np.testing.assert_array_equal(targets, tokens)
  assert not chosen[~content].any()  # padding, CLS and EOS are never predicted
  np.testing.assert_array_equal(inputs[~chosen], tokens[~chosen])
  assert abs(chosen.sum() / content.sum() - 0.15) < 0.01
  masked = inputs[chosen] == 18
  changed = (inputs[chosen] != tokens[chosen]) & ~masked
  assert abs(masked.mean() - 0.8) < 0.02
  # A random replacement equals the original token 1 time in 15.
  assert abs(changed.mean() - 0.1 * (1 - 1 / NUM_TOKENS)) < 0.015
  assert ((inputs[chosen][changed] >= 1) & (inputs[chosen][changed] <= NUM_TOKENS)).all()
  again = lm.mask_tokens(jnp.asarray(tokens), jax.random.key(3), num_tokens=NUM_TOKENS,
                         mask_token=18)[0]
  other = lm.mask_tokens(jnp.asarray(tokens), jax.random.key(4), num_tokens=NUM_TOKENS,
                         mask_token=18)[0]
  np.testing.assert_array_equal(again, inputs)
  assert (np.asarray(other) != inputs).any()


def test_next_token_targets():
  tokens = jnp.asarray([[16, 3, 4, 17, 0], [16, 5, 6, 7, 17]], jnp.int32)
  targets, weights = lm.next_token_targets(tokens)
  np.testing.assert_array_equal(targets, [[3, 4, 17, 0, 0], [5, 6, 7, 17, 0]])
  np.testing.assert_array_equal(weights, [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]])


def test_next_token_targets_stop_at_packed_document_boundaries():
  tokens = jnp.asarray([[16, 3, 17, 5, 6, 17]], jnp.int32)
  segments = jnp.asarray([[1, 1, 1, 2, 2, 2]], jnp.int32)
  targets, weights = lm.next_token_targets(tokens, segments)
  np.testing.assert_array_equal(targets, [[3, 17, 5, 6, 17, 0]])
  np.testing.assert_array_equal(weights, [[1, 1, 0, 1, 1, 0]])  # 17 -> 5 crosses


@pytest.mark.parametrize("causal", [False, True])
def test_packed_documents_encode_as_if_alone(causal):
  """A row packing documents a and b, with segment ids, gives each the output it has on
  its own (the softmax Transformer; dropout off)."""
  import luna_jax

  rng = np.random.default_rng(8)
  a, b = rng.normal(size=(1, 7, 16)), rng.normal(size=(1, 5, 16))
  enc = luna_jax.Encoder(mixer="transformer", num_layers=2, num_heads=2, ffn_dim=16,
                         causal=causal, dtype=jnp.float64, param_dtype=jnp.float64)
  packed = np.concatenate([a, b, np.zeros((1, 3, 16))], axis=1)
  mask = np.arange(15)[None] < 12
  segments = jnp.asarray([[1] * 7 + [2] * 5 + [0] * 3], jnp.int32)
  params = enc.init(jax.random.key(0), packed)
  y, _ = enc.apply(params, packed, mask_BxN=mask, segment_ids_BxN=segments)
  alone_a, _ = enc.apply(params, a)
  alone_b, _ = enc.apply(params, b)
  np.testing.assert_allclose(y[:, :7], alone_a, atol=1e-12)
  np.testing.assert_allclose(y[:, 7:12], alone_b, atol=1e-12)
  luna = luna_jax.Encoder(mixer="luna", num_layers=1, num_heads=2, ffn_dim=16)
  with pytest.raises(ValueError, match="cannot keep packed documents apart: its pack"):
    luna.init(jax.random.key(0), packed, segment_ids_BxN=segments)


def _model(tie=True, causal=False, mixer="luna"):
  return lm.LanguageModel(vocab_size=19, max_len=24, d_model=16, dropout=0.0, tie_embeddings=tie,
                          encoder=dict(mixer=mixer, num_layers=1, num_heads=2, ffn_dim=16,
                                       causal=causal, mixer_options={"proj_len": 4}
                                       if mixer == "luna" else {}),
                          dtype=jnp.float64, param_dtype=jnp.float64)


def _log_softmax(z):
  z = z - z.max(-1, keepdims=True)
  return z - np.log(np.exp(z).sum(-1, keepdims=True))


def test_tied_head_is_the_token_embedding_and_the_loss_is_over_chosen_tokens():
  model = _model()
  tokens = _tokens(np.random.default_rng(1), 3, 24)
  params = model.init(jax.random.key(0), tokens)["params"]
  assert "lm_out" not in params and params["lm_bias"].shape == (19,)
  params = dict(params, lm_bias=jnp.asarray(np.random.default_rng(2).normal(size=19)))
  logits, state = model.apply({"params": params}, tokens, capture_intermediates=True,
                              mutable=["intermediates"])
  (h,) = state["intermediates"]["lm_norm"]["__call__"]
  embedding = np.asarray(params["token_embed"]["embedding"])
  want = np.asarray(h) @ embedding.T + np.asarray(params["lm_bias"])
  np.testing.assert_allclose(logits, want, rtol=1e-12, atol=1e-12)
  untied = _model(tie=False).init(jax.random.key(0), tokens)["params"]
  assert untied["lm_out"]["kernel"].shape == (16, 19) and "lm_bias" not in untied

  objective = LanguageModelling("mlm", num_tokens=NUM_TOKENS, mask_token=18)
  batch = {"inputs": tokens, "weight": jnp.asarray([1.0, 1.0, 0.0])}  # the last is a filler
  key = jax.random.key(7)
  sums = objective.sums(model, params, batch, key, train=False)
  inputs, targets, chosen = lm.mask_tokens(tokens, jax.random.split(key)[0],
                                           num_tokens=NUM_TOKENS, mask_token=18)
  chosen = np.asarray(chosen) * np.asarray([1, 1, 0])[:, None]
  logp = _log_softmax(np.asarray(model.apply({"params": params}, inputs)))
  nll = -np.take_along_axis(logp, np.asarray(targets)[..., None], -1)[..., 0]
  assert float(sums["count"]) == chosen.sum() > 0
  np.testing.assert_allclose(float(sums["loss_sum"]), (nll * chosen).sum(), rtol=1e-10)
  correct = (logp.argmax(-1) == np.asarray(targets)) * chosen
  assert float(sums["correct"]) == correct.sum()


@pytest.mark.parametrize("mixer", ["luna", "transformer", "lightconv"])
def test_causal_language_model_sees_only_the_past(mixer):
  model = _model(causal=True, mixer=mixer)
  rng = np.random.default_rng(3)
  tokens = rng.integers(1, NUM_TOKENS + 1, (2, 20))
  params = model.init(jax.random.key(0), jnp.asarray(tokens))["params"]
  full = model.apply({"params": params}, jnp.asarray(tokens))
  t = 11
  changed = tokens.copy()
  changed[:, t + 1:] = rng.integers(1, NUM_TOKENS + 1, (2, 20 - t - 1))
  out = model.apply({"params": params}, jnp.asarray(changed))
  np.testing.assert_allclose(out[:, : t + 1], full[:, : t + 1], atol=1e-12)
  assert not np.allclose(out[:, t + 1:], full[:, t + 1:])


def test_pairs_are_pretrained_as_single_documents():
  objective = LanguageModelling("clm", num_tokens=NUM_TOKENS, mask_token=18)
  model = _model(causal=True)
  pairs = _tokens(np.random.default_rng(4), 4, 24).reshape(2, 2, 24)
  params = model.init(jax.random.key(0), pairs[:, 0])["params"]
  sums = objective.sums(model, params, {"inputs": pairs, "weight": jnp.asarray([1.0, 0.0])},
                        jax.random.key(0), train=False)
  single = objective.sums(model, params, {"inputs": pairs[0], "weight": jnp.ones(2)},
                          jax.random.key(0), train=False)
  assert float(sums["documents"]) == 2
  np.testing.assert_allclose(float(sums["loss_sum"]), float(single["loss_sum"]), rtol=1e-6)


def test_objective_settings_are_checked(data_dir):
  def fails(match, **changes):
    config = tiny_config("listops", data_dir)
    for key, value in changes.items():
      parent = config
      *path, leaf = key.split("__")
      for part in path:
        parent = parent[part]
      parent[leaf] = value
    with pytest.raises(ValueError, match=match):
      validate(config, 1)

  fails("objective='bert' is not one of", objective="bert")
  fails("objective=mlm needs a bidirectional encoder", objective="mlm", model__causal=True)
  fails("objective=clm predicts the next token", objective="clm")
  fails("pretrain.objective=clm predicts", pretrain__objective="clm",
        pretrain__num_train_steps=2)
  fails("CLS token sees only itself", model__causal=True)
  fails("pretrain.num_train_steps must be positive", pretrain__objective="mlm")
  fails("set one", pretrain__objective="mlm", pretrain__num_train_steps=2, init_from="w")
  fails("mlm.mask_rate=0.0 must be in", objective="mlm", mlm__mask_rate=0.0)


def test_self_pretraining_then_finetuning_in_one_run(data_dir, tmp_path):
  config = tiny_config("retrieval", data_dir, steps=4)
  config.pretrain.objective = "mlm"
  config.pretrain.num_train_steps = 4
  summary = train_and_evaluate(config, tmp_path)
  pre = json.loads((tmp_path / "pretrain" / "summary.json").read_text())
  assert pre["objective"] == "mlm" and pre["steps"] == 4
  assert pre["test_perplexity"] > 1 and 0 <= pre["test_accuracy"] <= 1
  assert pre["best_val_loss"] is not None
  saved = json.loads((tmp_path / "summary.json").read_text())
  assert saved["pretrain"]["test_perplexity"] == pre["test_perplexity"]
  assert saved["test_accuracy"] == summary["test_accuracy"] and summary["steps"] == 4
  assert json.loads((tmp_path / "config.json").read_text())["init_from"].endswith("pretrain")

  # The classifier starts from the pre-trained best checkpoint's embeddings and encoder.
  from luna_jax.training.checkpoint import Checkpointer
  from luna_jax.training.loop import Trainer
  from luna_jax.training.run import Run

  ft = config.copy_and_resolve_references()
  ft.pretrain.objective = ""
  trainer = Trainer(Run.create(ft, tmp_path / "fresh"))
  fresh = trainer.init_state().params
  loaded, _ = load_pretrained(tmp_path / "pretrain", fresh)
  pre_config = config.copy_and_resolve_references()
  pre_config.objective, pre_config.pretrain.objective = "mlm", ""
  pre_trainer = Trainer(Run.create(pre_config, tmp_path / "pretrain"))
  with Checkpointer(tmp_path / "pretrain" / "checkpoints", 1) as ckpt:
    best, _ = ckpt.restore_best(pre_trainer.abstract_state.params)
  for name in ("encoder", "embed_norm", "position_embed"):
    jax.tree.map(np.testing.assert_array_equal, loaded[name], best[name])
  np.testing.assert_array_equal(loaded["token_embed"]["embedding"],
                                best["token_embed"]["embedding"][:-1])  # no [MASK] row
  jax.tree.map(np.testing.assert_array_equal, loaded["classifier_out"], fresh["classifier_out"])

  # Run again: pre-training is not repeated, fine-tuning resumes at its end.
  again = train_and_evaluate(config, tmp_path)
  assert again["test_accuracy"] == summary["test_accuracy"]


def test_init_from_a_different_architecture_fails_clearly(data_dir, tmp_path):
  config = tiny_config("listops", data_dir, steps=2)
  config.objective = "mlm"
  train_and_evaluate(config, tmp_path / "pre")
  other = tiny_config("listops", data_dir, steps=2)
  other.model.d_model = 32
  other.init_from = str(tmp_path / "pre")
  with pytest.raises(ValueError, match=r"does not match this config: .* has shape .*d_model=16"):
    train_and_evaluate(other, tmp_path / "ft")
  other.init_from = str(tmp_path / "nothing")
  with pytest.raises(FileNotFoundError, match="must be the workdir of a finished"):
    train_and_evaluate(other, tmp_path / "ft2")


@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_resumed_language_model_run_ends_with_the_same_parameters(objective, data_dir,
                                                                  tmp_path):
  config = tiny_config("listops", data_dir, steps=6)
  config.objective = objective
  config.model.causal = objective == "clm"
  config.checkpoint_every = 3
  config.model.dropout = 0.3
  train_and_evaluate(config, tmp_path / "straight")
  summary = train_killed_then_resumed(config, tmp_path / "resumed", kill_after=5)
  assert summary["steps"] == 6 and summary["test_perplexity"] > 1
  # eval.py rebuilds the language model from the workdir and scores the same masks.
  from luna_jax.training.evaluate import evaluate_workdir

  again = evaluate_workdir(tmp_path / "resumed", "best", "test")
  assert again["perplexity"] == pytest.approx(summary["test_perplexity"], rel=1e-6)
  for a, b in zip(latest_params(tmp_path / "straight"), latest_params(tmp_path / "resumed"),
                  strict=True):
    np.testing.assert_array_equal(a, b)
