"""Linformer self-attention (Wang et al. 2020, Eq. 7) with padding handled correctly.

    head_i = softmax(Q W_q (E K W_k)^T / sqrt(d_h)) (F V W_v)

Keys and values are projected along the sequence axis from n to k rows by learned
E, F of shape (k, max_len); an input of n <= max_len tokens uses their first n columns.
Unlike every reference, padded positions are dropped from the projection (their columns
of E and F are zeroed), so a padded sequence gives exactly the outputs of the unpadded one.

Sharing levels: "none" (an E and an F per head), "headwise" (one E, one F per layer),
"kv" (headwise with E = F), "layerwise" (one matrix for every layer, head, K and V; owned
by the encoder). `project_before=True` applies E before the K/V maps, as the official
fairseq code does (cheaper: the d x d maps run on k rows); the paper projects after them.
The two differ by the bias term (1 - rowsum(E)) b.
"""

from __future__ import annotations

from typing import Optional

import flax.linen as nn
import jax.numpy as jnp

from luna_jax import common
from luna_jax.layers import LayerBase

Array = common.Array

SHARING = ("none", "headwise", "kv", "layerwise")


class LinformerProjection(nn.Module):
  """`num_matrices` learned (k, max_len) sequence projections; call with n -> (G, k, n)."""

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
          f"set max_len >= {n} (model.max_len in the configs) or truncate the inputs."
      )
    if self.init_style == "bert":
      init = common.bert_normal
    else:  # fairseq: nn.Linear(max_len, k) with xavier_uniform, gain 1/sqrt(2)
      init = nn.initializers.variance_scaling(0.5, "fan_avg", "uniform", in_axis=-1,
                                              out_axis=-2, batch_axis=(0,))
    e_GxKxM = self.param("kernel", init, (self.num_matrices, self.proj_len, self.max_len),
                         self.param_dtype)
    return e_GxKxM[:, :, :n]


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
                         "build the model with luna_jax.Encoder(mixer='linformer').")
      e = self.shared_projection(n)
      return e, e
    make = lambda name, g: LinformerProjection(  # noqa: E731
        self.proj_len, self.max_len, g, self.init_style, self.param_dtype, name=name)(n)
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
    e_GxKxN, f_GxKxN = self._projections(n)
    if mask_BxN is None:
      mask_BxN = jnp.ones((b, n), bool)
    keep_Bx1x1xN = mask_BxN[:, None, None, :].astype(self.dtype)

    def proj(name, role="in_proj"):
      return common.dense(d, d, role=role, init_style=self.init_style, dtype=self.dtype,
                          param_dtype=self.param_dtype, name=name)

    def seq_project(e_GxKxN, name) -> Array:
      """The projected keys (or values) (B, k, H, d_h); padded columns dropped."""
      e_BxGxKxN = e_GxKxN.astype(self.dtype)[None] * keep_Bx1x1xN
      per_head = e_GxKxN.shape[0] > 1
      if not self.project_before:
        k_BxNxHxK = common.split_heads(proj(name)(x), h)
        if per_head:
          return jnp.einsum("bhkn,bnhd->bkhd", e_BxGxKxN, k_BxNxHxK)
        return jnp.einsum("bkn,bnhd->bkhd", e_BxGxKxN[:, 0], k_BxNxHxK)
      if not per_head:
        return common.split_heads(proj(name)(jnp.einsum("bkn,bnd->bkd", e_BxGxKxN[:, 0], x)), h)
      # Per-head E before the map: head g only needs its own slice of the map's output.
      xk_BxGxKxD = jnp.einsum("bgkn,bnd->bgkd", e_BxGxKxN, x)
      out = proj(name)(xk_BxGxKxD).reshape(b, h, self.proj_len, h, dh)
      return jnp.einsum("bgkhd,gh->bkhd", out, jnp.eye(h, dtype=out.dtype))

    q = common.split_heads(proj("query")(x) * dh**-0.5, h)
    k = seq_project(e_GxKxN, "key")
    v = seq_project(f_GxKxN, "value")
    out = common.attend(q, k, v, None, nn.Dropout(self.attention_dropout), deterministic)
    return proj("out", role="out_proj")(common.merge_heads(out))


class LinformerEncoderLayer(LayerBase):
  """A Transformer layer whose attention is LinformerAttention (pre-LN by default, as
  in LRA). P, if given, passes through unchanged. Not causal: see the module docstring."""

  max_len: int = 0
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
    if self.max_len <= 0:
      raise ValueError("Linformer needs max_len, the longest sequence it will see "
                       "(mixer_options={'max_len': ...}).")
    attn = LinformerAttention(
        self.num_heads, self.max_len, self.proj_len, self.sharing, self.project_before,
        self.attention_dropout, self.init_style, self.shared_projection, self.dtype,
        self.param_dtype, name="attention")
    x = self.residual(
        x_BxNxD, lambda h: attn(h, mask_BxN=mask_BxN, deterministic=deterministic),
        "x_norm", deterministic)
    return self.feed_forward_block(x, deterministic), p_BxLxD


NOT_CAUSAL = ("a learned projection along the sequence axis mixes every position, the "
              "future included, into each key and value; use 'luna' (causal=True) or "
              "'transformer' for autoregressive models.")


def shared_modules(encoder, options) -> dict:
  """For sharing='layerwise': one projection owned by the encoder, used by every layer."""
  if options.get("sharing") != "layerwise":
    return {}
  return {"shared_projection": LinformerProjection(
      options.get("proj_len", encoder.proj_len), options.get("max_len", 0), 1,
      encoder.init_style, encoder.param_dtype, name="shared_projection")}


def layer_kwargs(encoder, options, index: int) -> dict:
  """The encoder's proj_len is Linformer's k unless the options set it."""
  del index
  return {"proj_len": encoder.proj_len, **options}
