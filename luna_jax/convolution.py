"""Lightweight and dynamic convolution (Wu et al. 2019, Eqs. 2-3) in plain XLA.

    LightConv(X, W)[t, c] = sum_k softmax(W[h(c)])_k X[t + k - P, c],  h(c) = c // (d / H)
    DynamicConv: the same with W_t = x_t W_Q, W_Q of shape (d, H K), no bias.

H kernels are shared by contiguous blocks of d / H channels and softmax-normalised over
their K taps in float32; DropConnect drops normalised weights, independently per
(batch, time, head) as the reference does. Padding P = K // 2 (centred, encoder) or K - 1
(causal); zero padding, any K (odd, even, longer than the sequence).

Two exact forms, chosen by sequence length: "unfold" (K shifted views, O(n K d) memory)
and "band" (an (n x n) band matrix per head, O(n^2), faster for short sequences). No
custom kernels: bf16 and every kernel size work everywhere XLA runs.
"""

from __future__ import annotations

import math
from typing import ClassVar, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from luna_jax import common
from luna_jax.layers import LayerBase

Array = common.Array

IMPLEMENTATIONS = ("auto", "unfold", "band")
PAPER_KERNEL_SIZES = (3, 7, 15, 31, 31, 31, 31)


def left_padding(kernel_size: int, causal: bool) -> int:
  return kernel_size - 1 if causal else kernel_size // 2


def _apply_weights(windows_BxTxKxHxR: Array, w: Array) -> Array:
  if w.ndim == 2:  # (H, K) shared by all steps
    return jnp.einsum("btkhr,hk->bthr", windows_BxTxKxHxR, w)
  return jnp.einsum("btkhr,bthk->bthr", windows_BxTxKxHxR, w)  # (B, T, H, K)


def unfold_conv(x_BxTxC: Array, w: Array, left: int, right: int) -> Array:
  """Convolution by K shifted views of the zero-padded input.

  Args:
    x_BxTxC: inputs; w: normalised weights (H, K) or per step (B, T_out, H, K).
    left, right: zero padding; the output has T + left + right - K + 1 steps.
  """
  b, t, c = x_BxTxC.shape
  h, k = w.shape[-2:]
  x_pad = jnp.pad(x_BxTxC, ((0, 0), (left, right), (0, 0)))
  t_out = t + left + right - k + 1
  windows = jnp.stack([x_pad[:, i:i + t_out] for i in range(k)], axis=2)
  out = _apply_weights(windows.reshape(b, t_out, k, h, c // h), w)
  return out.reshape(b, t_out, c)


def band_conv(x_BxTxC: Array, w: Array, left: int) -> Array:
  """The same convolution as a (T x T) band matrix per head; output has T steps."""
  b, t, c = x_BxTxC.shape
  h, k = w.shape[-2:]
  offset_TxT = jnp.arange(t)[None, :] - jnp.arange(t)[:, None] + left  # tap of x_s for y_t
  valid_TxT = (offset_TxT >= 0) & (offset_TxT < k)
  tap_TxT = jnp.clip(offset_TxT, 0, k - 1)
  x_BxTxHxR = x_BxTxC.reshape(b, t, h, c // h)
  if w.ndim == 2:
    band_HxTxT = jnp.where(valid_TxT[None], w[:, tap_TxT], 0)
    out = jnp.einsum("hts,bshr->bthr", band_HxTxT, x_BxTxHxR)
  else:
    w_BxHxTxK = jnp.swapaxes(w, 1, 2)
    band_BxHxTxT = jnp.take_along_axis(w_BxHxTxK, tap_TxT[None, None], axis=-1)
    band_BxHxTxT = jnp.where(valid_TxT[None, None], band_BxHxTxT, 0)
    out = jnp.einsum("bhts,bshr->bthr", band_BxHxTxT, x_BxTxHxR)
  return out.reshape(b, t, c)


class _DepthwiseConv(nn.Module):
  """Shared machinery: normalisation, DropConnect, form selection and decoding.
  Subclasses define `logits(x_BxTxC)`: the unnormalised weights, (H, K) or (B, T, H, K).

  Attributes:
    num_heads: H, kernels shared by contiguous blocks of d / H channels.
    kernel_size: K, any positive size.
    causal: padding K - 1 (position t sees t - K + 1 .. t) instead of centred K // 2.
    weight_dropout: DropConnect rate on the normalised weights.
    implementation: "unfold", "band" or "auto" (band up to band_max_len steps).
    decode: causal step-by-step decoding; the 'cache' keeps the last K - 1 inputs, and
      any number of new steps may be fed per call.
  """

  num_heads: int
  kernel_size: int
  causal: bool = False
  weight_dropout: float = 0.0
  implementation: str = "auto"
  band_max_len: int = 512
  decode: bool = False
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  @nn.compact
  def __call__(self, x_BxTxC: Array, *, deterministic: bool = True) -> Array:
    b, t, c = x_BxTxC.shape
    h, k = self.num_heads, self.kernel_size
    common.check_heads(c, h)
    if k < 1:
      raise ValueError(f"kernel_size must be positive, got {k}.")
    if self.implementation not in IMPLEMENTATIONS:
      raise ValueError(f"implementation={self.implementation!r} is not one of "
                       f"{IMPLEMENTATIONS}.")
    x = x_BxTxC.astype(self.dtype)
    w = jax.nn.softmax(self.logits(x).astype(common.softmax_dtype(self.dtype)), axis=-1)
    if self.weight_dropout > 0 and not deterministic:
      w = jnp.broadcast_to(w, (b, t, h, k))  # independent masks per (batch, time, head)
      w = nn.Dropout(self.weight_dropout)(w, deterministic=False)
    w = w.astype(self.dtype)

    if self.decode:
      if not self.causal:
        raise ValueError("decode=True needs causal=True: a centred convolution reads "
                         "future steps.")
      initialized = self.has_variable("cache", "inputs")
      cache = self.variable("cache", "inputs", jnp.zeros, (b, k - 1, c), self.dtype)
      if initialized:
        history = jnp.concatenate([cache.value, x], axis=1)  # (B, K - 1 + T, C)
        cache.value = history[:, history.shape[1] - (k - 1):]
        return unfold_conv(history, w, 0, 0)

    left = left_padding(k, self.causal)
    use_band = self.implementation == "band" or (
        self.implementation == "auto" and t <= self.band_max_len)
    if use_band:
      return band_conv(x, w, left)
    return unfold_conv(x, w, left, k - 1 - left)


class LightweightConv(_DepthwiseConv):
  """Lightweight convolution: one learned (H, K) kernel, softmax-normalised (Eq. 2)."""

  def logits(self, x_BxTxC: Array) -> Array:
    del x_BxTxC
    h, k = self.num_heads, self.kernel_size
    bound = math.sqrt(6.0 / (k + h * k))  # xavier_uniform on the reference's (H, 1, K)
    init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)  # noqa: E731
    return self.param("weight", init, (h, k), self.param_dtype)


class DynamicConv(_DepthwiseConv):
  """Dynamic convolution: the kernel of step t predicted from x_t alone (Eq. 3)."""

  def logits(self, x_BxTxC: Array) -> Array:
    b, t, c = x_BxTxC.shape
    h, k = self.num_heads, self.kernel_size
    proj = common.dense(h * k, c, role="xavier", init_style="xavier", dtype=self.dtype,
                        param_dtype=self.param_dtype, name="weight_linear", use_bias=False)
    return proj(x_BxTxC).reshape(b, t, h, k)


class ConvEncoderLayer(LayerBase):
  """The convolution block of Wu et al. (Fig. 2), then a ReLU feed-forward block:

      residual -> [LN] -> input dropout -> Linear(d, 2d) -> GLU -> zero padding -> conv
               -> Linear(d, d) -> dropout -> + residual -> [LN];  then the FFN block.

  num_heads is H, the number of kernels. P, if given, passes through unchanged.
  """

  conv: ClassVar[type] = LightweightConv
  kernel_size: int = 3
  weight_dropout: float = 0.0
  input_dropout: float = 0.0
  implementation: str = "auto"
  band_max_len: int = 512

  @nn.compact
  def __call__(self, x_BxNxD, p_BxLxD=None, *, mask_BxN=None, p_mask_BxL=None,
               deterministic: bool = True):
    del p_mask_BxL
    d = x_BxNxD.shape[-1]
    kw = dict(role="xavier", init_style=self.init_style, dtype=self.dtype,
              param_dtype=self.param_dtype)
    conv = self.conv(
        self.num_heads, self.kernel_size, self.causal, self.weight_dropout,
        self.implementation, self.band_max_len, self.decode, self.dtype, self.param_dtype,
        name="conv")

    def conv_block(h_BxNxD):
      h = nn.Dropout(self.input_dropout)(h_BxNxD, deterministic=deterministic)
      h = nn.glu(common.dense(2 * d, d, name="linear1", **kw)(h), axis=-1)
      if mask_BxN is not None:
        h = h * mask_BxN[..., None].astype(h.dtype)
      h = conv(h, deterministic=deterministic)
      return common.dense(d, d, name="linear2", **kw)(h)

    x = self.residual(x_BxNxD, conv_block, "conv_norm", deterministic)
    return self.feed_forward_block(x, deterministic, activation="relu"), p_BxLxD


class LightConvEncoderLayer(ConvEncoderLayer):
  conv: ClassVar[type] = LightweightConv


class DynamicConvEncoderLayer(ConvEncoderLayer):
  conv: ClassVar[type] = DynamicConv


def layer_kwargs(encoder, options, index: int) -> dict:
  """Per-layer kernel sizes: `kernel_sizes` (default: the paper's 3, 7, 15, 31, ...) or
  one `kernel_size` for every layer."""
  options = dict(options)
  if "kernel_size" in options:
    if "kernel_sizes" in options:
      raise ValueError("give either kernel_size (every layer) or kernel_sizes (per layer).")
    return options
  sizes = tuple(options.pop("kernel_sizes", PAPER_KERNEL_SIZES))
  if len(sizes) < encoder.num_layers:
    raise ValueError(f"kernel_sizes {sizes} has {len(sizes)} entries but the encoder has "
                     f"num_layers={encoder.num_layers}; give one size per layer.")
  return {**options, "kernel_size": int(sizes[index])}
