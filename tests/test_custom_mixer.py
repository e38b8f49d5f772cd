"""Adding a mixer is one module and one `register_mixer` line: a mixer defined entirely in
this file gets its config block, command-line overrides, derived settings and its own
check, and trains through `train_and_evaluate` as the built-in ones do. Also: the config
blocks of the built-in mixers come from their settings, and no module outside
`luna_jax/mixers/` names a mixer."""

from __future__ import annotations

import ast
import dataclasses
import json
import pathlib
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

import luna_jax
from luna_jax.training import base_config, build_model, train_and_evaluate, validate
from luna_jax.training.model_config import mixer_settings
from tests.training_fixtures import tiny_config

ROOT = pathlib.Path(__file__).resolve().parents[1]


@dataclasses.dataclass(frozen=True)
class GatedMeanSettings:
  hidden: int = 8  # width of the pooled values
  positions: Optional[int] = None  # rows of the per-position gate bias; unset: max_len


class GatedMeanLayer(luna_jax.LayerBase):
  """X_A = X + Dropout(W_o (mean over real m of LN(X)_m W_v) * sigmoid(LN(X) W_g + b_pos));
  X' = X_A + Dropout(FFN(LN(X_A))): a bidirectional pooling mixer, O(n d)."""

  hidden: int = 8
  positions: Optional[int] = None

  @nn.compact
  def __call__(self, x_BxNxD, p_BxLxD=None, *, mask_BxN=None, p_mask_BxL=None,
               deterministic: bool = True):
    del p_mask_BxL
    b, n, d = x_BxNxD.shape
    keep_BxN = jnp.ones((b, n), bool) if mask_BxN is None else mask_BxN

    def mix(h_BxNxD):
      weights_BxNx1 = keep_BxN[..., None].astype(h_BxNxD.dtype)
      weights_BxNx1 = weights_BxNx1 / jnp.maximum(weights_BxNx1.sum(1, keepdims=True), 1)
      values = nn.Dense(self.hidden, name="value")(h_BxNxD)  # (B, N, hidden)
      pooled = (values * weights_BxNx1).sum(1, keepdims=True)  # (B, 1, hidden)
      bias = self.param("gate_bias", nn.initializers.zeros, (self.positions, 1))
      gate = nn.sigmoid(nn.Dense(self.hidden, name="gate")(h_BxNxD) + bias[None, :n])
      return nn.Dense(d, name="out")(pooled * gate)

    x = self.residual(x_BxNxD, mix, "x_norm", deterministic)
    return self.feed_forward_block(x, deterministic), p_BxLxD


def check(settings: GatedMeanSettings, run: luna_jax.RunShape) -> None:
  if settings.hidden <= 0:
    raise ValueError(f"hidden={settings.hidden} must be positive.")
  if run.max_len is not None and settings.positions < run.max_len:
    raise ValueError(f"positions={settings.positions} is shorter than max_len={run.max_len}.")


SPEC = luna_jax.MixerSpec(layer=GatedMeanLayer, settings=GatedMeanSettings,
                          normalize_before=True, derived={"positions": lambda run: run.max_len},
                          check=check)


@pytest.fixture
def gated_mean():
  luna_jax.register_mixer("gated_mean", SPEC)  # the one line that adds the mixer
  yield "gated_mean"
  luna_jax.unregister_mixer("gated_mean")




def _param_shapes(config) -> dict:
  tokens = jax.ShapeDtypeStruct((1, config.max_len), np.int32)
  params = jax.eval_shape(build_model(config).init, jax.random.key(0), tokens)["params"]
  layer = params["encoder"]["layer_0"]
  return {"value": layer["value"]["kernel"].shape, "gate_bias": layer["gate_bias"].shape}


def test_a_registered_mixer_trains_through_train_and_evaluate(gated_mean, data_dir, tmp_path):
  config = tiny_config("listops", data_dir, gated_mean)
  config.lock()
  config.update_from_flattened_dict({"model.gated_mean.hidden": 6})
  assert _param_shapes(config) == {"value": (16, 6), "gate_bias": (config.max_len, 1)}
  summary = train_and_evaluate(config, tmp_path)
  assert summary["steps"] == 4 and 0 <= summary["test_accuracy"] <= 1
  saved = json.loads((tmp_path / "summary.json").read_text())
  assert saved["test_accuracy"] == summary["test_accuracy"]
  written = json.loads((tmp_path / "config.json").read_text())
  assert written["model"]["gated_mean"] == {"hidden": 6, "positions": None}


def test_a_registered_mixer_gets_a_config_block_overrides_and_its_check(gated_mean):
  c = base_config()
  c.max_len, c.model.d_model, c.model.num_heads = 40, 16, 2
  c.lock()
  assert c.model.gated_mean.to_dict() == {"hidden": 8, "positions": None}
  c.update_from_flattened_dict({"model.name": gated_mean, "model.gated_mean.hidden": 5})
  validate(c, num_devices=1)
  assert _param_shapes(c) == {"value": (16, 5), "gate_bias": (40, 1)}
  c.update_from_flattened_dict({"max_len": 24})  # the derived setting follows max_len ...
  assert _param_shapes(c)["gate_bias"] == (24, 1)
  c.update_from_flattened_dict({"model.gated_mean.positions": 30})  # ... unless it is set
  assert _param_shapes(c)["gate_bias"] == (30, 1)
  with pytest.raises(KeyError):
    c.update_from_flattened_dict({"model.gated_mean.hiden": 5})
  c.update_from_flattened_dict({"model.gated_mean.hidden": 0})
  with pytest.raises(ValueError, match=r"^invalid config: model\.gated_mean\.hidden=0 must be"):
    validate(c, num_devices=1)
  c.update_from_flattened_dict({"model.gated_mean.hidden": 4, "max_len": 31})
  with pytest.raises(ValueError, match="model.gated_mean.positions=30 is shorter than max_len=31"):
    validate(c, num_devices=1)


def test_registration_is_undone():
  assert "gated_mean" not in luna_jax.mixer_names()
  assert "gated_mean" not in base_config().model
  with pytest.raises(ValueError, match="unknown mixer 'gated_mean'"):
    luna_jax.unregister_mixer("gated_mean")


def test_the_default_cross_attention_is_the_registrys(gated_mean):
  """A decoder asks the registry for its cross-attention and names no mixer: a mixer's own
  (Luna's) or the default softmax one, which the Transformer's module registers once."""
  from luna_jax import registry
  from luna_jax.mixers.luna import LunaCrossAttention
  from luna_jax.mixers.transformer import SoftmaxCrossAttention

  assert registry.cross_attention("luna") is LunaCrossAttention
  for name in ("transformer", "linformer", "lightconv", "dynamicconv", gated_mean):
    assert registry.cross_attention(name) is SoftmaxCrossAttention, name
  with pytest.raises(ValueError, match="already SoftmaxCrossAttention"):
    registry.register_cross_attention(LunaCrossAttention)
  with pytest.raises(TypeError, match="must subclass luna_jax.layers.CrossAttentionBase"):
    registry.register_cross_attention(GatedMeanLayer)
  with pytest.raises(ValueError, match="unknown mixer 'nope'"):
    registry.cross_attention("nope")


def test_every_mixer_block_is_made_from_its_settings():
  m = base_config().model
  for name in luna_jax.mixer_names():
    spec = luna_jax.get_mixer(name)
    assert set(m[name]) == set(spec.setting_names()), name
    defaults = dataclasses.asdict(spec.settings())
    assert m[name].to_dict() == defaults, name
  from luna_jax.mixers.convolution import PAPER_KERNEL_SIZES
  assert m.lightconv.kernel_sizes == m.dynamicconv.kernel_sizes == PAPER_KERNEL_SIZES


def _parse(tmp_path, *overrides):
  """The config as train.py gets it: a config file, locked, with --config.x=y flags."""
  path = tmp_path / "config_file.py"
  path.write_text("from luna_jax.training import base_config\n\n\n"
                  "def get_config():\n  c = base_config()\n  c.max_len = 300\n  return c\n")
  argv = ["train.py", f"--config={path}", *overrides]
  values = flags.FlagValues()
  holder = config_flags.DEFINE_config_file("config", flag_values=values, lock_config=True,
                                           sys_argv=argv)
  values(argv)
  return holder.value


def test_command_line_overrides_reach_the_mixer_settings(tmp_path):
  c = _parse(tmp_path, "--config.model.name=linformer", "--config.model.linformer.sharing=kv")
  settings = mixer_settings(c)
  assert (settings.sharing, settings.max_len) == ("kv", 300)  # max_len follows the run
  c = _parse(tmp_path, "--config.model.name=linformer", "--config.max_len=500")
  assert mixer_settings(c).max_len == 500
  c = _parse(tmp_path, "--config.model.name=linformer", "--config.model.linformer.max_len=4096")
  assert mixer_settings(c).max_len == 4096
  c = _parse(tmp_path, "--config.model.name=transformer",
             "--config.model.transformer.implementation=xla",
             "--config.model.lightconv.kernel_sizes=(3, 5)", "--config.model.luna.proj_len=32")
  assert mixer_settings(c).implementation == "xla"
  assert (c.model.lightconv.kernel_sizes, c.model.luna.proj_len) == ((3, 5), 32)
  with pytest.raises((flags.Error, AttributeError), match='Did you mean "sharing"'):
    _parse(tmp_path, "--config.model.linformer.sharnig=kv")
  c = _parse(tmp_path, "--config.model.name=linformer", "--config.model.linformer.max_len=200")
  with pytest.raises(ValueError, match="invalid config: model.linformer.max_len=200: the run's "
                     "max_len=300 is longer than the Linformer projections allow"):
    validate(c, num_devices=1)


def test_a_workdir_config_from_before_the_mixer_settings_still_builds():
  """config.json of earlier runs: Luna's block without p_init and chunk_size, Linformer's
  max_len written out, the convolutions' block with only kernel_sizes (as a JSON list)."""
  old = json.loads(base_config().to_json())
  old["max_len"] = 64
  old["model"].update(d_model=16, num_heads=2, num_layers=2, ffn_dim=16, classifier_hidden=16)
  for key in ("p_init", "chunk_size"):
    del old["model"]["luna"][key]
  old["model"]["linformer"]["max_len"] = 2002
  old["model"]["transformer"] = {}
  for name in ("lightconv", "dynamicconv"):
    old["model"][name] = {"kernel_sizes": [3, 7, 15, 31, 31, 31, 31], "weight_dropout": 0.0}
  for name in luna_jax.mixer_names():
    c = ml_collections.ConfigDict(json.loads(json.dumps(old)))
    c.model.name = name
    validate(c, num_devices=1)
    tokens = jax.ShapeDtypeStruct((1, 64), np.int32)
    jax.eval_shape(build_model(c).init, jax.random.key(0), tokens)
  c = ml_collections.ConfigDict(json.loads(json.dumps(old)))
  c.model.luna.unknown_setting = 1
  with pytest.raises(ValueError, match="invalid config: model.luna has no setting "
                     "unknown_setting"):
    validate(c, num_devices=1)


# String constants naming a mixer that may stand outside luna_jax/mixers/: the defaults.
ALLOWED = {("encoder.py", "mixer: str = 'luna'"), ("config.py", "m.name = 'luna'"),
           ("seq2seq.py", "mixer: str = 'luna'")}  # the defaults, like the Encoder's


def test_no_module_outside_the_mixers_names_a_mixer():
  names = set(luna_jax.mixer_names())
  package = ROOT / "luna_jax"
  found = set()
  for path in package.rglob("*.py"):
    if (package / "mixers") in path.parents:
      continue
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
      if isinstance(node, (ast.Assign, ast.AnnAssign)):
        if isinstance(node.value, ast.Constant) and node.value.value in names:
          found.add((path.name, ast.unparse(node)))
          node.value.value = None  # counted here; not again below
    for node in ast.walk(tree):
      if isinstance(node, ast.Constant) and node.value in names:
        found.add((path.name, repr(node.value)))
  assert found <= ALLOWED, sorted(found - ALLOWED)
