"""Numerics shared by every mixer: the reference's LayerNorm and GELU, initialisers, masking,
head splitting and masked softmax attention. Shape letters: see `luna_jax/__init__.py`.

Flax's defaults differ from the PyTorch references (tanh GELU, LayerNorm eps 1e-6 and a
one-pass variance, zero biases); everything here is chosen to match the authors' code
instead.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from luna_jax import platform

Array = jax.Array
DType = Any

LAYER_NORM_EPS = 1e-5  # torch.nn.LayerNorm default, used by every reference.
# A large finite negative: a fully masked row then gives a uniform softmax, never NaN.
MASK_VALUE = -1e30

INIT_STYLES = ("xavier", "bert")


def gelu(x: Array) -> Array:
  """Exact (erf) GELU, as torch.nn.functional.gelu; Flax's nn.gelu defaults to tanh."""
  return nn.gelu(x, approximate=False)


def layer_norm(name: str, dtype: DType, param_dtype: DType) -> nn.LayerNorm:
  """LN(x) = (x - mean) / sqrt(var + eps) * scale + bias over the last axis, eps 1e-5.

  The variance is two-pass, mean((x - mean)^2), as torch.nn.LayerNorm; Flax's default
  E[x^2] - mean^2 cancels catastrophically in float32 once |mean| >> std (relative error
  4e-4 at mean 100 and 3e-2 at mean 1000, against 3e-6 and 3e-5 two-pass).
  """
  return nn.LayerNorm(epsilon=LAYER_NORM_EPS, use_fast_variance=False, dtype=dtype,
                      param_dtype=param_dtype, name=name)


def softmax_dtype(dtype: DType) -> DType:
  """Softmax runs in float32, or float64 when the model itself computes in float64."""
  return jnp.promote_types(dtype, jnp.float32)


def masked_softmax(logits: Array, mask: Optional[Array]) -> Array:
  """Softmax over the last axis in at least float32; `mask` is True where allowed."""
  logits = logits.astype(softmax_dtype(logits.dtype))
  if mask is not None:
    logits = jnp.where(mask, logits, MASK_VALUE)
  return jax.nn.softmax(logits, axis=-1)


def xavier_uniform(gain: float = 1.0) -> nn.initializers.Initializer:
  """torch.nn.init.xavier_uniform_: U(+-gain * sqrt(6 / (fan_in + fan_out)))."""
  return nn.initializers.variance_scaling(gain**2, "fan_avg", "uniform")


def torch_default_bias(fan_in: int) -> nn.initializers.Initializer:
  """torch.nn.Linear's bias init: U(+-1 / sqrt(fan_in))."""
  bound = 1.0 / math.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


# torch.nn.Linear's weight init (kaiming_uniform with a = sqrt(5)): U(+-1 / sqrt(fan_in)).
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
bert_normal = nn.initializers.normal(0.02)


def check_init_style(init_style: str) -> None:
  if init_style not in INIT_STYLES:
    raise ValueError(f"init_style={init_style!r} is not one of {INIT_STYLES}.")


def dense(
    features: int,
    fan_in: int,
    *,
    role: str,
    init_style: str,
    dtype: DType,
    param_dtype: DType,
    name: str,
    use_bias: bool = True,
) -> nn.Dense:
  """A Linear layer initialised as the reference initialises one in `role`.

  role: "in_proj" (attention input projections: xavier gain 1/sqrt(2), torch bias),
        "out_proj" or "xavier" (xavier gain 1, zero bias: attention output, fairseq's
        `Linear` helper), or
        "linear" (feed-forward and heads: torch.nn.Linear defaults).
  init_style="bert" replaces all of these by N(0, 0.02) weights and zero biases.
  """
  kernel_init, bias_init = _inits(role, init_style, fan_in)
  return nn.Dense(
      features,
      use_bias=use_bias,
      kernel_init=kernel_init,
      bias_init=bias_init,
      dtype=dtype,
      param_dtype=param_dtype,
      name=name,
  )


def _inits(role: str, init_style: str, fan_in: int):
  check_init_style(init_style)
  if init_style == "bert":
    return bert_normal, nn.initializers.zeros
  if role == "in_proj":
    return xavier_uniform(1 / math.sqrt(2)), torch_default_bias(fan_in)
  if role in ("out_proj", "xavier"):
    return xavier_uniform(1.0), nn.initializers.zeros
  if role == "linear":
    return torch_default_kernel, torch_default_bias(fan_in)
  raise ValueError(f"unknown role {role!r}")


class DenseWeights(nn.Module):
  """The kernel (D_in, D_out) and bias (D_out,) of a `dense` layer, not applied: for
  products that use a projection's weights in another order (Luna's attend-first pack).
  Same parameter names, shapes and initialisation as `dense`, so either form loads the
  other's checkpoints."""

  features: int
  fan_in: int
  role: str
  init_style: str
  param_dtype: DType = jnp.float32

  @nn.compact
  def __call__(self) -> tuple[Array, Array]:
    kernel_init, bias_init = _inits(self.role, self.init_style, self.fan_in)
    kernel = self.param("kernel", kernel_init, (self.fan_in, self.features), self.param_dtype)
    bias = self.param("bias", bias_init, (self.features,), self.param_dtype)
    return kernel, bias


def split_heads(x_BxNxD: Array, num_heads: int) -> Array:
  """(B, N, D) -> (B, N, H, K), K = D // H."""
  b, n, d = x_BxNxD.shape
  return x_BxNxD.reshape(b, n, num_heads, d // num_heads)


def merge_heads(x_BxNxHxK: Array) -> Array:
  """(B, N, H, K) -> (B, N, H * K)."""
  b, n, h, k = x_BxNxHxK.shape
  return x_BxNxHxK.reshape(b, n, h * k)


def rows_view() -> bool:
  """Whether layers run their position-wise products on a 2-D (rows, features) view.

  On XLA CPU the 2-D form lets the weight gradient x^T g read x and g in place, where a
  (B, N, D) input makes XLA copy a transposed g for every weight gradient (and a copy per
  consumer of g). On TPU, whose arrays are tiled by 8 rows, merging B and N is a relayout
  whenever N is not a multiple of 8 (LRA's 4,002 tokens): the Luna Text step for v5e-8
  then needs 1,255 MiB of temporaries per chip instead of 723
  (`benchmarks/results/tpu_compile_time.md`).
  """
  return platform.current_platform() != "tpu"


def dense_rows(layer: nn.Dense, x: Array) -> Array:
  """`layer(x)`, on the 2-D (rows, features) view of x where `rows_view()` says so;
  the same parameters and the same products either way."""
  if not rows_view():
    return layer(x)
  lead = x.shape[:-1]
  return layer(x.reshape(-1, x.shape[-1])).reshape(*lead, layer.features)


def heads_first(x_BxNxD: Array, num_heads: int) -> Array:
  """(B, N, D) -> (B, H, N, K): the layout batched per-head products read without a
  transposed copy of their own (one row-block copy here instead)."""
  return jnp.swapaxes(split_heads(x_BxNxD, num_heads), 1, 2)


def heads_last(x_BxHxNxK: Array) -> Array:
  """(B, H, N, K) -> (B, N, H * K), the inverse of `heads_first`."""
  return merge_heads(jnp.swapaxes(x_BxHxNxK, 1, 2))


# dot_general dimension numbers over (B, H, ., .) operands.
_CONTRACT_LAST = (((3,), (3,)), ((0, 1), (0, 1)))  # a @ b^T
_CONTRACT_INNER = (((3,), (2,)), ((0, 1), (0, 1)))  # a @ b


def attend_heads_first(q_BxHxNxK, k_BxHxMxK, v_BxHxMxK, mask_BxM, dropout,
                       deterministic: bool) -> Array:
  """`attend` on heads-first operands: softmax(q k^T) v per head, keys masked where
  mask_BxM is False; q is already scaled; dropout acts on the probabilities. Both products
  contract the operands' minor or second-minor axis and keep (B, H) in front, which XLA
  CPU runs on q, k and v in place; the einsums of `attend` on (B, N, H, K) operands make
  it copy them (and their gradients) into (B, H, K, N) transposes first. Returns
  (B, H, N, K)."""
  logits_BxHxNxM = lax.dot_general(q_BxHxNxK, k_BxHxMxK, _CONTRACT_LAST)
  mask = None if mask_BxM is None else mask_BxM[:, None, None, :]
  probs_BxHxNxM = masked_softmax(logits_BxHxNxM, mask)
  probs_BxHxNxM = dropout(probs_BxHxNxM, deterministic=deterministic).astype(v_BxHxMxK.dtype)
  return lax.dot_general(probs_BxHxNxM, v_BxHxMxK, _CONTRACT_INNER)


def check_heads(d_model: int, num_heads: int, what: str = "num_heads") -> int:
  """Returns the head width, or raises a clear error when the heads do not divide d."""
  if num_heads <= 0 or d_model % num_heads:
    raise ValueError(
        f"{what}={num_heads} must be positive and divide the model width {d_model}; "
        f"choose a head count among the divisors of {d_model}."
    )
  return d_model // num_heads


def attend(q_BxNxHxK, k_BxMxHxK, v_BxMxHxK, mask_BxM, dropout, deterministic: bool) -> Array:
  """softmax(q k^T) v per head with keys masked where mask_BxM is False; q is already
  scaled; dropout (an nn.Dropout) acts on the probabilities. Returns (B, N, H, K)."""
  logits_BxHxNxM = jnp.einsum("bnhk,bmhk->bhnm", q_BxNxHxK, k_BxMxHxK)
  mask = None if mask_BxM is None else mask_BxM[:, None, None, :]
  probs_BxHxNxM = masked_softmax(logits_BxHxNxM, mask)
  probs_BxHxNxM = dropout(probs_BxHxNxM, deterministic=deterministic).astype(v_BxMxHxK.dtype)
  return jnp.einsum("bhnm,bmhk->bnhk", probs_BxHxNxM, v_BxMxHxK)


def sinusoidal_positions(length: int, d: int) -> Array:
  """(length, d) float32 sinusoidal positions as fairseq's translation models make them
  (Vaswani et al. 2017, Sec. 3.5, in fairseq's layout): the first d // 2 columns
  sin(t w_i), the next d // 2 cos(t w_i), w_i = 10000^(-i / (d // 2 - 1)), t = 0, 1, ...;
  a zero column when d is odd."""
  half = d // 2
  rate = math.log(10000.0) / max(half - 1, 1)
  angles = np.arange(length, dtype=np.float64)[:, None] * np.exp(-rate * np.arange(half))[None]
  table = np.concatenate([np.sin(angles), np.cos(angles)], axis=1)
  if d % 2:
    table = np.concatenate([table, np.zeros((length, 1))], axis=1)
  return jnp.asarray(table, jnp.float32)
