"""The Linformer mixer: self-attention (Wang et al. 2020, Eq. 7) with padding handled
correctly, its encoder layer, settings and check.

    head_i = softmax(Q W_q (E K W_k)^T / sqrt(d_h)) (F V W_v)

Keys and values are projected along the sequence axis from n to k rows (L in tensor
names) by learned E, F of shape (k, max_len); an input of n <= max_len tokens uses their
first n columns.
Unlike every reference, padded positions are dropped from the projection (their columns
of E and F are zeroed), so a padded sequence gives exactly the outputs of the unpadded one.

Sharing levels: "none" (an E and an F per head), "headwise" (one E, one F per layer),
"kv" (headwise with E = F), "layerwise" (one matrix for every layer, head, K and V; owned
by the encoder). `project_before=True` applies E before the K/V maps, as the official
fairseq code does (cheaper: the d x d maps run on k rows); the paper projects after them.
The two differ by the bias term (1 - rowsum(E)) b.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common
from luna_jax.layers import LayerBase
from luna_jax.mixers import spec

Array = common.Array

SHARING = ("none", "headwise", "kv", "layerwise")


class LinformerProjection(nn.Module):
  """`num_matrices` (G) learned (k, max_len) sequence projections; call with n -> the
  first n columns, (G, L, N)."""

  proj_len: int
  max_len: int
  num_matrices: int = 1
  init_style: str = "xavier"
  param_dtype: common.DType = jnp.float32

  @nn.compact
  def __call__(self, n: int) -> Array:
    if n > self.max_len:
      raise ValueError(
          f"sequence length {n} exceeds the Linformer projection's max_len {self.max_len}; "
          f"set max_len >= {n} or truncate the inputs."
      )
    if self.init_style == "bert":
      init = common.bert_normal
    else:  # fairseq: nn.Linear(max_len, k) with xavier_uniform, gain 1/sqrt(2)
      init = nn.initializers.variance_scaling(0.5, "fan_avg", "uniform", in_axis=-1,
                                              out_axis=-2, batch_axis=(0,))
    e_full = self.param("kernel", init, (self.num_matrices, self.proj_len, self.max_len),
                        self.param_dtype)  # (G, L, max_len)
    return e_full[:, :, :n]


class LinformerAttention(nn.Module):
  """Multi-head self-attention over keys/values projected to `proj_len` rows.

  Attributes:
    num_heads: attention heads.
    max_len: the longest sequence the projections accept.
    proj_len: k, the number of projected rows.
    sharing: "none", "headwise", "kv" or "layerwise" (see the module docstring).
    project_before: project the inputs along the sequence before the K/V maps (fairseq)
      instead of after them (the paper, LRA).
    shared_projection: the encoder's LinformerProjection for sharing="layerwise".
  """

  num_heads: int
  max_len: int
  proj_len: int = 16
  sharing: str = "headwise"
  project_before: bool = False
  attention_dropout: float = 0.0
  init_style: str = "xavier"
  shared_projection: Optional[nn.Module] = None
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  def _projections(self, n: int) -> tuple[Array, Array]:
    if self.sharing not in SHARING:
      raise ValueError(f"sharing={self.sharing!r} is not one of {SHARING}.")
    if self.sharing == "layerwise":
      if self.shared_projection is None:
        raise ValueError("sharing='layerwise' needs the encoder's shared projection; "
                         "build the model through luna_jax.Encoder.")
      e = self.shared_projection(n)
      return e, e
    make = lambda name, g: LinformerProjection(  # noqa: E731
        proj_len=self.proj_len, max_len=self.max_len, num_matrices=g,
        init_style=self.init_style, param_dtype=self.param_dtype, name=name)(n)
    if self.sharing == "none":
      return make("e", self.num_heads), make("f", self.num_heads)
    e = make("e", 1)
    return (e, e) if self.sharing == "kv" else (e, make("f", 1))

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      *,
      mask_BxN: Optional[Array] = None,
      deterministic: bool = True,
  ) -> Array:
    """Args: x (B, N, D) with N <= max_len; mask_BxN True at real tokens. Returns (B, N, D)."""
    b, n, d = x_BxNxD.shape
    h = self.num_heads
    dh = common.check_heads(d, h)
    x = x_BxNxD.astype(self.dtype)
    e_GxLxN, f_GxLxN = self._projections(n)
    if mask_BxN is None:
      mask_BxN = jnp.ones((b, n), bool)
    keep_Bx1x1xN = mask_BxN[:, None, None, :].astype(self.dtype)

    def proj(name, role="in_proj"):
      return common.dense(d, d, role=role, init_style=self.init_style, dtype=self.dtype,
                          param_dtype=self.param_dtype, name=name)

    def seq_project(e_GxLxN, name) -> Array:
      """The projected keys (or values) (B, L, H, K); padded columns dropped."""
      e_BxGxLxN = e_GxLxN.astype(self.dtype)[None] * keep_Bx1x1xN
      per_head = e_GxLxN.shape[0] > 1
      if not self.project_before:
        k_BxNxHxK = common.split_heads(proj(name)(x), h)
        if per_head:
          return jnp.einsum("bhln,bnhk->blhk", e_BxGxLxN, k_BxNxHxK)
        return jnp.einsum("bln,bnhk->blhk", e_BxGxLxN[:, 0], k_BxNxHxK)
      if not per_head:
        xe_BxLxD = jnp.einsum("bln,bnd->bld", e_BxGxLxN[:, 0], x)
        return common.split_heads(proj(name)(xe_BxLxD), h)
      # Per-head E before the map: head g only needs its own slice of the map's output.
      xe_BxGxLxD = jnp.einsum("bgln,bnd->bgld", e_BxGxLxN, x)
      out_BxGxLxHxK = proj(name)(xe_BxGxLxD).reshape(b, h, self.proj_len, h, dh)
      return jnp.einsum("bglhk,gh->blhk", out_BxGxLxHxK, jnp.eye(h, dtype=out_BxGxLxHxK.dtype))

    q_BxNxHxK = common.split_heads(proj("query")(x) * dh**-0.5, h)
    k_BxLxHxK = seq_project(e_GxLxN, "key")
    v_BxLxHxK = seq_project(f_GxLxN, "value")
    out_BxNxHxK = common.attend(q_BxNxHxK, k_BxLxHxK, v_BxLxHxK, None,
                                nn.Dropout(self.attention_dropout), deterministic)
    return proj("out", role="out_proj")(common.merge_heads(out_BxNxHxK))


@dataclasses.dataclass(frozen=True)
class LinformerSettings:
  """Linformer's own settings (`mixer_options`, and the config's `model.linformer` block)."""

  proj_len: int = 16  # k, the projected length (LRA: 16)
  max_len: Optional[int] = None  # the longest sequence E and F accept; unset: the run's
                                 # max_len (an Encoder built directly needs it set)
  sharing: str = "headwise"  # none | headwise | kv | layerwise
  project_before: bool = False  # project before the K/V maps (fairseq) instead of after


class LinformerEncoderLayer(LayerBase):
  """A Transformer layer whose attention is LinformerAttention (pre-LN by default, as
  in LRA). P, if given, passes through unchanged. Not causal: see the module docstring."""

  max_len: Optional[int] = None
  proj_len: int = 16
  sharing: str = "headwise"
  project_before: bool = False
  shared_projection: Optional[nn.Module] = None

  @nn.compact
  def __call__(self, x_BxNxD, p_BxLxD=None, *, mask_BxN=None, p_mask_BxL=None,
               deterministic: bool = True):
    del p_mask_BxL
    if self.causal or self.decode:
      raise ValueError(f"Linformer cannot be causal: {NOT_CAUSAL}")
    if not self.max_len:
      raise ValueError(NEEDS_MAX_LEN)
    attn = LinformerAttention(
        num_heads=self.num_heads, max_len=self.max_len, proj_len=self.proj_len,
        sharing=self.sharing, project_before=self.project_before,
        attention_dropout=self.attention_dropout, init_style=self.init_style,
        shared_projection=self.shared_projection, dtype=self.dtype,
        param_dtype=self.param_dtype, name="attention")
    x = self.residual(
        x_BxNxD, lambda h: attn(h, mask_BxN=mask_BxN, deterministic=deterministic),
        "x_norm", deterministic)
    return self.feed_forward_block(x, deterministic), p_BxLxD


NOT_CAUSAL = ("a learned projection along the sequence axis mixes every position, the "
              "future included, into each key and value.")
NEEDS_MAX_LEN = ("max_len is unset: Linformer needs max_len, the longest sequence it will "
                 "see (mixer_options={'max_len': ...}; a config derives it from max_len).")


def check(settings: LinformerSettings, run: spec.RunShape) -> None:
  if settings.max_len is None:
    raise ValueError(NEEDS_MAX_LEN)
  if run.max_len is not None and settings.max_len < run.max_len:
    raise ValueError(f"max_len={settings.max_len}: the run's max_len={run.max_len} is longer "
                     "than the Linformer projections allow; raise it, or leave it unset to "
                     "follow the run's max_len.")
  if settings.proj_len <= 0:
    raise ValueError(f"proj_len={settings.proj_len} must be positive.")
  if settings.sharing not in SHARING:
    raise ValueError(f"sharing={settings.sharing!r} is not one of {SHARING}.")


def shared_modules(encoder, settings: LinformerSettings) -> dict:
  """For sharing='layerwise': one projection owned by the encoder, used by every layer."""
  if settings.sharing != "layerwise":
    return {}
  return {"shared_projection": LinformerProjection(
      proj_len=settings.proj_len, max_len=settings.max_len, num_matrices=1,
      init_style=encoder.init_style, param_dtype=encoder.param_dtype,
      name="shared_projection")}


spec.register_mixer("linformer", spec.MixerSpec(
    layer=LinformerEncoderLayer, settings=LinformerSettings, normalize_before=True,
    derived={"max_len": lambda run: run.max_len}, check=check,
    shared_modules=shared_modules, not_causal_because=NOT_CAUSAL,
    no_decode_because=NOT_CAUSAL,
    no_segments_because="its E and F project every position of the row into k rows, so "
                        "each document's output depends on the others'."))
