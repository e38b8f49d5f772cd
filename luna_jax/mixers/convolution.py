"""The lightweight and dynamic convolution mixers (Wu et al. 2019, Eqs. 2-3) in plain
XLA: the convolutions, their encoder layer (Fig. 2), settings and check.

    LightConv(X, W)[n, c] = sum_t softmax(W[h(c)])_t X[n + t - pad, c],  h(c) = c // (d / H)
    DynamicConv: the same with W_n = x_n W_Q, W_Q of shape (d, H T), no bias.

H kernels are shared by contiguous blocks of K = d / H channels and softmax-normalised
over their T taps in float32; DropConnect drops normalised weights, independently per
(batch, step, head) as the reference does. Padding pad = T // 2 (centred, encoder) or
T - 1 (causal); zero padding, any T (odd, even, longer than the sequence).

Two exact forms, chosen by sequence length: "unfold" (T shifted views, O(n T d) memory)
and "band" (an (n x n) band matrix per head, O(n^2), faster for short sequences). No
custom kernels: bf16 and every kernel size work everywhere XLA runs.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from luna_jax import common
from luna_jax.layers import LayerBase
from luna_jax.mixers import spec

Array = common.Array

IMPLEMENTATIONS = ("auto", "unfold", "band")
PAPER_KERNEL_SIZES = (3, 7, 15, 31, 31, 31, 31)


def left_padding(kernel_size: int, causal: bool) -> int:
  return kernel_size - 1 if causal else kernel_size // 2


def _apply_weights(windows_BxNxTxHxK: Array, w: Array) -> Array:
  if w.ndim == 2:  # (H, T) shared by all steps
    return jnp.einsum("bnthk,ht->bnhk", windows_BxNxTxHxK, w)
  return jnp.einsum("bnthk,bnht->bnhk", windows_BxNxTxHxK, w)  # (B, N, H, T)


def unfold_conv(x_BxNxD: Array, w: Array, left: int, right: int) -> Array:
  """Convolution by T shifted views of the zero-padded input.

  Args:
    x_BxNxD: inputs; w: normalised weights (H, T) or per output step (B, N_out, H, T).
    left, right: zero padding; the output has N_out = N + left + right - T + 1 steps.
  """
  b, n, d = x_BxNxD.shape
  h, taps = w.shape[-2:]
  x_pad = jnp.pad(x_BxNxD, ((0, 0), (left, right), (0, 0)))
  n_out = n + left + right - taps + 1
  windows_BxNxTxD = jnp.stack([x_pad[:, i:i + n_out] for i in range(taps)], axis=2)
  out = _apply_weights(windows_BxNxTxD.reshape(b, n_out, taps, h, d // h), w)
  return out.reshape(b, n_out, d)


def band_conv(x_BxNxD: Array, w: Array, left: int) -> Array:
  """The same convolution as an (N x N) band matrix per head; the output has N steps."""
  b, n, d = x_BxNxD.shape
  h, taps = w.shape[-2:]
  offset_NxN = jnp.arange(n)[None, :] - jnp.arange(n)[:, None] + left  # tap of x_m for y_n
  valid_NxN = (offset_NxN >= 0) & (offset_NxN < taps)
  tap_NxN = jnp.clip(offset_NxN, 0, taps - 1)
  x_BxNxHxK = x_BxNxD.reshape(b, n, h, d // h)
  if w.ndim == 2:
    band_HxNxN = jnp.where(valid_NxN[None], w[:, tap_NxN], 0)
    out = jnp.einsum("hnm,bmhk->bnhk", band_HxNxN, x_BxNxHxK)
  else:
    w_BxHxNxT = jnp.swapaxes(w, 1, 2)
    band_BxHxNxN = jnp.take_along_axis(w_BxHxNxT, tap_NxN[None, None], axis=-1)
    band_BxHxNxN = jnp.where(valid_NxN[None, None], band_BxHxNxN, 0)
    out = jnp.einsum("bhnm,bmhk->bnhk", band_BxHxNxN, x_BxNxHxK)
  return out.reshape(b, n, d)


class _DepthwiseConv(nn.Module):
  """Shared machinery: normalisation, DropConnect, form selection and decoding.
  Subclasses define `logits(x_BxNxD)`: the unnormalised weights, (H, T) or (B, N, H, T).

  Attributes:
    num_heads: H, kernels shared by contiguous blocks of d / H channels.
    kernel_size: T, the taps; any positive size.
    causal: padding T - 1 (position n sees n - T + 1 .. n) instead of centred T // 2.
    weight_dropout: DropConnect rate on the normalised weights.
    implementation: "unfold", "band" or "auto" (band up to band_max_len steps).
    decode: causal step-by-step decoding; the 'cache' keeps the last T - 1 inputs, and
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
  def __call__(self, x_BxNxD: Array, *, deterministic: bool = True) -> Array:
    b, n, d = x_BxNxD.shape
    h, taps = self.num_heads, self.kernel_size
    common.check_heads(d, h)
    if taps < 1:
      raise ValueError(f"kernel_size must be positive, got {taps}.")
    if self.implementation not in IMPLEMENTATIONS:
      raise ValueError(f"implementation={self.implementation!r} is not one of "
                       f"{IMPLEMENTATIONS}.")
    x = x_BxNxD.astype(self.dtype)
    w = jax.nn.softmax(self.logits(x).astype(common.softmax_dtype(self.dtype)), axis=-1)
    if self.weight_dropout > 0 and not deterministic:
      w = jnp.broadcast_to(w, (b, n, h, taps))  # independent masks per (batch, step, head)
      w = nn.Dropout(self.weight_dropout)(w, deterministic=False)
    w = w.astype(self.dtype)

    if self.decode:
      if not self.causal:
        raise ValueError("decode=True needs causal=True: a centred convolution reads "
                         "future steps.")
      initialized = self.has_variable("cache", "inputs")
      cache = self.variable("cache", "inputs", jnp.zeros, (b, taps - 1, d), self.dtype)
      if initialized:
        history = jnp.concatenate([cache.value, x], axis=1)  # (B, T - 1 + N, D)
        cache.value = history[:, history.shape[1] - (taps - 1):]
        return unfold_conv(history, w, 0, 0)

    left = left_padding(taps, self.causal)
    use_band = self.implementation == "band" or (
        self.implementation == "auto" and n <= self.band_max_len)
    if use_band:
      return band_conv(x, w, left)
    return unfold_conv(x, w, left, taps - 1 - left)


class LightweightConv(_DepthwiseConv):
  """Lightweight convolution: one learned (H, T) kernel, softmax-normalised (Eq. 2)."""

  def logits(self, x_BxNxD: Array) -> Array:
    del x_BxNxD
    h, taps = self.num_heads, self.kernel_size
    bound = math.sqrt(6.0 / (taps + h * taps))  # xavier_uniform on the reference's (H, 1, T)
    init = lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)  # noqa: E731
    return self.param("weight", init, (h, taps), self.param_dtype)


class DynamicConv(_DepthwiseConv):
  """Dynamic convolution: the kernel of step n predicted from x_n alone (Eq. 3)."""

  def logits(self, x_BxNxD: Array) -> Array:
    b, n, d = x_BxNxD.shape
    h, taps = self.num_heads, self.kernel_size
    proj = common.dense(h * taps, d, role="xavier", init_style="xavier", dtype=self.dtype,
                        param_dtype=self.param_dtype, name="weight_linear", use_bias=False)
    return proj(x_BxNxD).reshape(b, n, h, taps)


class ConvEncoderLayer(LayerBase):
  """The convolution block of Wu et al. (Fig. 2), then a ReLU feed-forward block:

      residual -> [LN] -> input dropout -> Linear(d, 2d) -> GLU -> zero padding -> conv
               -> Linear(d, d) -> dropout -> + residual -> [LN];  then the FFN block.

  The conv is LightweightConv here and DynamicConv in DynamicConvEncoderLayer; num_heads
  is H, the number of kernels. P, if given, passes through unchanged.
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
        num_heads=self.num_heads, kernel_size=self.kernel_size, causal=self.causal,
        weight_dropout=self.weight_dropout, implementation=self.implementation,
        band_max_len=self.band_max_len, decode=self.decode, dtype=self.dtype,
        param_dtype=self.param_dtype, name="conv")

    def conv_block(h_BxNxD):
      h = nn.Dropout(self.input_dropout)(h_BxNxD, deterministic=deterministic)
      h = nn.glu(common.dense(2 * d, d, name="linear1", **kw)(h), axis=-1)
      if mask_BxN is not None:
        h = h * mask_BxN[..., None].astype(h.dtype)
      h = conv(h, deterministic=deterministic)
      return common.dense(d, d, name="linear2", **kw)(h)

    x = self.residual(x_BxNxD, conv_block, "conv_norm", deterministic)
    return self.feed_forward_block(x, deterministic, activation="relu"), p_BxLxD


class DynamicConvEncoderLayer(ConvEncoderLayer):
  """ConvEncoderLayer with DynamicConv: kernels predicted from each step's input."""

  conv: ClassVar[type] = DynamicConv


@dataclasses.dataclass(frozen=True)
class ConvSettings:
  """The convolutions' own settings (`mixer_options`, and the config's `model.lightconv`
  and `model.dynamicconv` blocks)."""

  kernel_sizes: tuple[int, ...] = PAPER_KERNEL_SIZES  # T per layer (the paper's encoder)
  kernel_size: int = 0  # > 0: this T in every layer instead of kernel_sizes
  weight_dropout: float = 0.0  # DropConnect on the normalised kernels
  input_dropout: float = 0.0  # dropout on the block's input
  implementation: str = "auto"  # auto | unfold | band (the two exact forms)
  band_max_len: int = 512  # auto: band up to this many steps, unfold beyond


def check(settings: ConvSettings, run: spec.RunShape) -> None:
  if settings.kernel_size:
    if settings.kernel_sizes != PAPER_KERNEL_SIZES:
      raise ValueError(f"kernel_size={settings.kernel_size} and kernel_sizes="
                       f"{settings.kernel_sizes}: give either kernel_size (every layer) or "
                       "kernel_sizes (per layer).")
    sizes = (settings.kernel_size,)
  else:
    sizes = tuple(settings.kernel_sizes)
    if len(sizes) < run.num_layers:
      raise ValueError(f"kernel_sizes {sizes} has {len(sizes)} entries but the encoder has "
                       f"num_layers={run.num_layers}; give one size per layer.")
  if min(sizes) < 1:
    raise ValueError(f"kernel_sizes {sizes} must all be positive.")
  if settings.implementation not in IMPLEMENTATIONS:
    raise ValueError(f"implementation={settings.implementation!r} is not one of "
                     f"{IMPLEMENTATIONS}.")


def layer_fields(settings: ConvSettings, index: int) -> dict:
  """Layer `index`'s fields: its kernel size, and the settings shared by every layer."""
  size = settings.kernel_size or settings.kernel_sizes[index]
  return dict(kernel_size=int(size), weight_dropout=settings.weight_dropout,
              input_dropout=settings.input_dropout, implementation=settings.implementation,
              band_max_len=settings.band_max_len)


_SHARED = dict(settings=ConvSettings, normalize_before=False, check=check,
               layer_fields=layer_fields,
               no_segments_because="its kernels would need masking per position at "
                                   "document boundaries, which is not built yet.")
spec.register_mixer("lightconv", spec.MixerSpec(layer=ConvEncoderLayer, **_SHARED))
spec.register_mixer("dynamicconv", spec.MixerSpec(layer=DynamicConvEncoderLayer,
                                                          **_SHARED))
