"""Causal (autoregressive) Luna attention in linear time (Ma et al. 2021, Sec. 3.4).

Per head, for 1-indexed positions t (as the authors' fairseq code computes it):

    w_{s,j}   = omega(k'_s . q~_P[j]),  omega(z) = log2(1 + 2^z)   (softplus, beta = ln 2)
    Kbar_t[j] = (1/t) sum_{s<=t} w_{s,j} k_s,   Vbar_t[j] = (1/t) sum_{s<=t} w_{s,j} v_s
    alpha_t   = softmax_j(q_t . Kbar_t[j]),     y_t = W_o sum_j alpha_{t,j} Vbar_t[j] + b_o

with q~_P = (P W_pq + b_pq) d_h^-1/2, k'_s = x_s W_pc + b_pc, q_t = (x_t W_q + b_q) d_h^-1/2
and k_s = v_s = x_s W_c + b_c (tied; untied uses W_k and W_v). Attention dropout acts, as in
the authors' LunarCausalAttention, on the unnormalised pack weights w (the dropped w then
enter both Kbar and Vbar) and, with an independent mask, on the unpack weights alpha after
the softmax (they then weight only Vbar): y_t = W_o sum_j Drop(alpha)_{t,j} Vbar_t[j] + b_o.
The reference materialises the (n, l, d_h) prefix sums; here the sequence is cut into
chunks of `chunk_size` and a scan carries the running memories sum_s k_s w_s^T (d_h x l)
and sum_s w_s v_s^T (l x d_h) in float32, so memory is O(n l + n d) and decoding keeps
only those two memories and t.
Both dropout masks are drawn for the whole (B, H, N, L) block before the scan, so a given
rng gives the same output for every chunk size.
Causal self-attention does not update P: the layer returns P unchanged.
"""

from __future__ import annotations

import math
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

from luna_jax import common

Array = common.Array


def omega(z: Array) -> Array:
  """softplus with beta = ln 2: log2(1 + 2^z), so omega(0) = 1."""
  return jax.nn.softplus(z * math.log(2.0)) / math.log(2.0)


def apply_keep(a: Array, keep: Optional[Array], rate: float) -> Array:
  """Inverted dropout with a given keep mask, as nn.Dropout: a / (1 - rate) where kept,
  0 where dropped; `a` unchanged when keep is None."""
  if keep is None:
    return a
  return jnp.where(keep, a * (0.0 if rate >= 1.0 else 1.0 / (1.0 - rate)), 0).astype(a.dtype)


def causal_luna_scan(
    q_BxHxNxK: Array,
    k_BxHxNxK: Array,
    v_BxHxNxK: Array,
    w_BxHxNxL: Array,
    mem_k_BxHxKxL: Array,
    mem_v_BxHxLxK: Array,
    start: Array,
    p_mask_BxL: Optional[Array],
    chunk_size: int,
    alpha_keep_BxHxNxL: Optional[Array] = None,
    dropout_rate: float = 0.0,
) -> tuple[Array, Array, Array]:
  """Runs the causal recurrence from a given memory state over n new positions.

  Args:
    q_BxHxNxK: scaled queries; k, v: unpack keys and values; w: pack weights (zero at
      positions to ignore, already dropped out). All in the accumulation dtype.
    mem_k_BxHxKxL, mem_v_BxHxLxK: memories of the positions before `start`.
    start: the number of positions already consumed (t of the first new one is start+1).
    p_mask_BxL: True at P rows that may be attended to.
    chunk_size: positions per scan step (cost O(n c (d_h + l)) within chunks).
    alpha_keep_BxHxNxL: boolean dropout mask of the unpack weights alpha (True = kept), or
      None for no dropout; kept weights are scaled by 1 / (1 - dropout_rate).

  Returns:
    (outputs (B, H, N, K), updated mem_k, updated mem_v).
  """
  b, h, n, kd = q_BxHxNxK.shape
  c = max(1, min(chunk_size, n))
  num_chunks = -(-n // c)
  pad = num_chunks * c - n

  def chunks(a):  # (B, H, N, F) -> (num_chunks, B, H, c, F); zero padding at the end.
    a = jnp.pad(a, ((0, 0), (0, 0), (0, pad), (0, 0)))
    return jnp.moveaxis(a.reshape(b, h, num_chunks, c, a.shape[-1]), 2, 0)

  acc = mem_k_BxHxKxL.dtype
  causal_1x1xCxC = jnp.tril(jnp.ones((c, c), acc))[None, None]
  mask = None if p_mask_BxL is None else p_mask_BxL[:, None, None, :]

  def step(carry, inputs):
    mem_k, mem_v = carry
    q, k, v, w, alpha_keep, chunk_start = inputs
    t_1x1xCx1 = (chunk_start + 1 + jnp.arange(c)).astype(acc)[None, None, :, None]
    # q_t . Kbar_t = (q_t . mem_k + sum_{s<=t in chunk} (q_t . k_s) w_s) / t
    qk_BxHxCxC = jnp.einsum("bhck,bhsk->bhcs", q, k) * causal_1x1xCxC
    scores = jnp.einsum("bhck,bhkl->bhcl", q, mem_k)
    scores = (scores + jnp.einsum("bhcs,bhsl->bhcl", qk_BxHxCxC, w)) / t_1x1xCx1
    alpha_BxHxCxL = apply_keep(common.masked_softmax(scores, mask), alpha_keep, dropout_rate)
    # sum_j alpha_tj Vbar_t[j] = (alpha_t . mem_v + sum_{s<=t in chunk} (alpha_t . w_s) v_s) / t
    aw_BxHxCxC = jnp.einsum("bhcl,bhsl->bhcs", alpha_BxHxCxL, w) * causal_1x1xCxC
    y = jnp.einsum("bhcl,bhlk->bhck", alpha_BxHxCxL, mem_v)
    y = (y + jnp.einsum("bhcs,bhsk->bhck", aw_BxHxCxC, v)) / t_1x1xCx1
    mem_k = mem_k + jnp.einsum("bhsk,bhsl->bhkl", k, w)
    mem_v = mem_v + jnp.einsum("bhsl,bhsk->bhlk", w, v)
    return (mem_k, mem_v), y

  chunk_starts = start + c * jnp.arange(num_chunks)
  (mem_k, mem_v), y = jax.lax.scan(
      step,
      (mem_k_BxHxKxL, mem_v_BxHxLxK),
      (chunks(q_BxHxNxK), chunks(k_BxHxNxK), chunks(v_BxHxNxK), chunks(w_BxHxNxL),
       None if alpha_keep_BxHxNxL is None else chunks(alpha_keep_BxHxNxL), chunk_starts),
  )
  y_BxHxNxK = jnp.moveaxis(y, 0, 2).reshape(b, h, num_chunks * c, kd)[:, :, :n]
  return y_BxHxNxK, mem_k, mem_v


class LunaCausalAttention(nn.Module):
  """Linear-time causal Luna attention with step-by-step decoding.

  Attributes:
    num_heads: attention heads (pack and unpack share them, as in the reference).
    tied_kv: one projection W_c for unpack keys and values; untied (the default, as for
      LunaAttention) uses W_k and W_v. Pack values are the unpack keys/values either way,
      as in the reference.
    attention_dropout: dropout rate on the pack weights w and on the unpack weights alpha
      (independent masks). With deterministic=False and mutable=['intermediates'] the
      masks are returned as booleans 'w_keep' and 'alpha_keep' (B, H, N, L), True = kept.
    init_style: "xavier" (reference) or "bert".
    chunk_size: positions per scan step; any value gives the same result.
    decode: use and update the 'cache' collection (running memories and the step count).
      Initialise the cache with `init(..., x_full)` in decode mode, then feed any number of
      tokens per call with `apply(..., mutable=['cache'])`.
    dtype / param_dtype: computation and parameter dtypes; memories are float32 (or
      float64 when dtype is float64).
  """

  num_heads: int
  tied_kv: bool = False
  attention_dropout: float = 0.0
  init_style: str = "xavier"
  chunk_size: int = 64
  decode: bool = False
  dtype: common.DType = jnp.float32
  param_dtype: common.DType = jnp.float32

  @nn.compact
  def __call__(
      self,
      x_BxNxD: Array,
      p_BxLxD: Array,
      *,
      mask_BxN: Optional[Array] = None,
      p_mask_BxL: Optional[Array] = None,
      deterministic: bool = True,
  ) -> tuple[Array, Array]:
    """Causal self-attention of X through P.

    Args:
      x_BxNxD: the inputs (in decode mode: the next N tokens).
      p_BxLxD: the projected sequence P.
      mask_BxN: True at real tokens; False positions are left out of the memories
        (padding must come after the real tokens, so t keeps counting positions).
      p_mask_BxL: True at P rows that may be attended to.
      deterministic: disables dropout when True.

    Returns:
      (Y of shape (B, N, D), P unchanged).
    """
    b, n, d = x_BxNxD.shape
    if p_BxLxD.shape[-1] != d:
      raise ValueError(f"P has width {p_BxLxD.shape[-1]} but X has width {d}.")
    h = self.num_heads
    dh = common.check_heads(d, h)
    l = p_BxLxD.shape[1]
    acc = common.softmax_dtype(self.dtype)
    x = x_BxNxD.astype(self.dtype)

    def proj(name, role="in_proj"):
      return common.dense(
          d, d, role=role, init_style=self.init_style, dtype=self.dtype,
          param_dtype=self.param_dtype, name=name,
      )

    def heads(a_BxNxD):  # (B, N, D) -> (B, H, N, K) in the accumulation dtype
      return jnp.swapaxes(common.split_heads(a_BxNxD, h), 1, 2).astype(acc)

    rate = self.attention_dropout

    def keep_mask(name):  # (B, H, N, L), True where kept; None when dropout is off
      if deterministic or rate == 0.0:
        return None
      keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - rate, (b, h, n, l))
      self.sow("intermediates", name, keep)
      return keep

    q_p = heads(proj("p_query")(p_BxLxD.astype(self.dtype)) * dh**-0.5)
    k_pack = heads(proj("p_context")(x))
    w_BxHxNxL = omega(jnp.einsum("bhnk,bhlk->bhnl", k_pack, q_p))
    w_BxHxNxL = apply_keep(w_BxHxNxL, keep_mask("w_keep"), rate)  # before normalisation
    alpha_keep_BxHxNxL = keep_mask("alpha_keep")  # applied after the softmax, in the scan
    if mask_BxN is not None:
      w_BxHxNxL = w_BxHxNxL * mask_BxN[:, None, :, None].astype(acc)
    q = heads(proj("query")(x) * dh**-0.5)
    if self.tied_kv:
      k = v = heads(proj("context")(x))
    else:
      k, v = heads(proj("key")(x)), heads(proj("value")(x))

    zeros_k = jnp.zeros((b, h, dh, l), acc)
    zeros_v = jnp.zeros((b, h, l, dh), acc)
    if self.decode:
      initialized = self.has_variable("cache", "mem_k")
      mem_k = self.variable("cache", "mem_k", lambda: zeros_k)
      mem_v = self.variable("cache", "mem_v", lambda: zeros_v)
      index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    if self.decode and initialized:
      y, new_k, new_v = causal_luna_scan(
          q, k, v, w_BxHxNxL, mem_k.value, mem_v.value, index.value, p_mask_BxL,
          self.chunk_size, alpha_keep_BxHxNxL, rate,
      )
      mem_k.value, mem_v.value = new_k, new_v
      index.value = index.value + n
    else:
      y, _, _ = causal_luna_scan(
          q, k, v, w_BxHxNxL, zeros_k, zeros_v, jnp.zeros((), jnp.int32), p_mask_BxL,
          self.chunk_size, alpha_keep_BxHxNxL, rate,
      )
    y_BxNxD = common.merge_heads(jnp.swapaxes(y, 1, 2).astype(self.dtype))
    return proj("out", role="out_proj")(y_BxNxD), p_BxLxD
