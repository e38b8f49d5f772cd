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
chunks of c positions: the memories sum_s k_s w_s^T (d_h x l) and sum_s w_s v_s^T
(l x d_h) are accumulated in float32 at chunk boundaries only (a prefix sum over chunks,
no sequential loop), and within a chunk causal (c x c) products add the chunk's earlier
positions. Memory is O(n (l + c) + n d + (n / c) l d_h); decoding keeps only the two
memories and t. c follows the length unless given (`chunk_size_for`).
Both dropout masks are drawn for the whole (B, H, N, L) block before it is cut into chunks,
so a given rng gives the same output for every chunk size.
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


# The cost model behind `chunk_size_for`, in multiply-add equivalents per position and
# head: the in-chunk products cost c (d_h + l); every chunk costs a fixed ~2^18 (setting
# up its two dozen small batched products, forward and backward, on XLA CPU) plus ~2^7
# per entry of its d_h x l memories (their prefix sums and products), spread over its c
# positions.
_CHUNK_FIXED_COST = 2.0**18
_CHUNK_MEMORY_COST = 2.0**7


def chunk_size_for(n: int, l: int, dh: int) -> int:
  """The chunk size c used when none is given: the power of two nearest to the c that
  minimises c (d_h + l) + (2^18 + 2^7 d_h l) / c per position, i.e.
  c* = sqrt((2^18 + 2^7 d_h l) / (d_h + l)), at most n (a short input is one chunk).

  64 for the settings the paper uses (d_h = 64, l = 16 ... 256) and for d_h = 16, l = 64.
  Of c = 16 ... 256 in forward + backward on a 2-core CPU it was the fastest, or within
  10% of it, at 4K for (d_h, l) = (64, 16), (64, 128), (16, 64), (32, 16) and at 1K and
  16K for (64, 16). Any c gives the same result; only the speed and the (n / c) d_h l
  memory change.
  """
  best = math.sqrt((_CHUNK_FIXED_COST + _CHUNK_MEMORY_COST * dh * l) / (dh + l))
  return max(1, min(n, 2 ** round(math.log2(best))))


def exclusive_prefix_sum(a_BxHxIxF: Array, block: int = 16) -> tuple[Array, Array]:
  """(sum_{j < i} a[:, :, j] for every i, sum over all j) along axis 2 of (B, H, I, F).

  Within blocks of `block` entries by a strictly lower-triangular product, across blocks
  by the running sum of the block totals; jnp.cumsum lowers on XLA CPU to reduce-windows
  and transposes that cost about twice as much here.
  """
  b, h, i, f = a_BxHxIxF.shape
  block = max(1, min(block, i))
  num_blocks = -(-i // block)
  a = a_BxHxIxF
  if num_blocks * block != i:
    a = jnp.pad(a, ((0, 0), (0, 0), (0, num_blocks * block - i), (0, 0)))
  a_BxHxGxJxF = a.reshape(b, h, num_blocks, block, f)
  strict_JxJ = jnp.tril(jnp.ones((block, block), a.dtype), -1)
  within = jnp.einsum("ij,bhgjf->bhgif", strict_JxJ, a_BxHxGxJxF)
  totals_BxHxGxF = a_BxHxGxJxF.sum(axis=3)
  running = jnp.cumsum(totals_BxHxGxF, axis=2)
  before_blocks = jnp.concatenate(
      [jnp.zeros_like(running[:, :, :1]), running[:, :, :-1]], axis=2)
  prefix = (within + before_blocks[:, :, :, None]).reshape(b, h, num_blocks * block, f)
  return prefix[:, :, :i], running[:, :, -1]


def causal_luna_chunked(
    q_BxHxNxK: Array,
    k_BxHxNxK: Array,
    v_BxHxNxK: Array,
    w_BxHxNxL: Array,
    mem_k_BxHxKxL: Array,
    mem_v_BxHxLxK: Array,
    *,
    start: Array,
    p_mask_BxL: Optional[Array],
    chunk_size: int,
    alpha_keep_BxHxNxL: Optional[Array] = None,
    dropout_rate: float = 0.0,
) -> tuple[Array, Array, Array]:
  """Runs the causal recurrence from a given memory state over n new positions.

  The n positions are cut into chunks of c. Each chunk's contributions to the memories,
  sum_s k_s w_s^T and sum_s w_s v_s^T, are prefix-summed over the chunks (no sequential
  loop), so chunk i starts from the memories of all positions before it; within a chunk
  the causal (c x c) products add the chunk's earlier positions. Work per head
  O(n c (d_h + l) + n d_h l), memory O(n (l + c) + (n / c) d_h l).

  Args:
    q_BxHxNxK: scaled queries; k, v: unpack keys and values; w: pack weights (zero at
      positions to ignore, already dropped out). All in the accumulation dtype.
    mem_k_BxHxKxL, mem_v_BxHxLxK: memories of the positions before `start`.
    start: the number of positions already consumed (t of the first new one is start+1).
    p_mask_BxL: True at P rows that may be attended to.
    chunk_size: positions per chunk, c (any value gives the same result).
    alpha_keep_BxHxNxL: boolean dropout mask of the unpack weights alpha (True = kept), or
      None for no dropout; kept weights are scaled by 1 / (1 - dropout_rate).

  Returns:
    (outputs (B, H, N, K), updated mem_k, updated mem_v).
  """
  b, h, n, kd = q_BxHxNxK.shape
  l = w_BxHxNxL.shape[-1]
  c = max(1, min(chunk_size, n))
  num_chunks = -(-n // c)
  pad = num_chunks * c - n

  def chunks(a):  # (B, H, N, F) -> (B, H, I, C, F), I chunks; zero padding at the end.
    if pad:
      a = jnp.pad(a, ((0, 0), (0, 0), (0, pad), (0, 0)))
    return a.reshape(b, h, num_chunks, c, a.shape[-1])

  acc = mem_k_BxHxKxL.dtype
  q, k, v, w = (chunks(a) for a in (q_BxHxNxK, k_BxHxNxK, v_BxHxNxK, w_BxHxNxL))
  causal_1x1x1xCxC = jnp.tril(jnp.ones((c, c), acc))[None, None, None]
  t_1x1xIxCx1 = (start + 1 + jnp.arange(num_chunks * c)).astype(acc).reshape(
      1, 1, num_chunks, c, 1)
  # Memories at the start of every chunk: the given ones plus all earlier chunks'.
  sums_k = jnp.einsum("bhisk,bhisl->bhikl", k, w).reshape(b, h, num_chunks, kd * l)
  sums_v = jnp.einsum("bhisl,bhisk->bhilk", w, v).reshape(b, h, num_chunks, l * kd)
  before_k, total_k = exclusive_prefix_sum(sums_k)
  before_v, total_v = exclusive_prefix_sum(sums_v)
  mem_k_BxHxIxKxL = mem_k_BxHxKxL[:, :, None] + before_k.reshape(b, h, num_chunks, kd, l)
  mem_v_BxHxIxLxK = mem_v_BxHxLxK[:, :, None] + before_v.reshape(b, h, num_chunks, l, kd)
  # q_t . Kbar_t = (q_t . mem_k + sum_{s<=t in chunk} (q_t . k_s) w_s) / t
  qk_BxHxIxCxC = jnp.einsum("bhick,bhisk->bhics", q, k) * causal_1x1x1xCxC
  scores = jnp.einsum("bhick,bhikl->bhicl", q, mem_k_BxHxIxKxL)
  scores = (scores + jnp.einsum("bhics,bhisl->bhicl", qk_BxHxIxCxC, w)) / t_1x1xIxCx1
  mask = None if p_mask_BxL is None else p_mask_BxL[:, None, None, None, :]
  alpha_keep = None if alpha_keep_BxHxNxL is None else chunks(alpha_keep_BxHxNxL)
  alpha_BxHxIxCxL = apply_keep(common.masked_softmax(scores, mask), alpha_keep, dropout_rate)
  # sum_j alpha_tj Vbar_t[j] = (alpha_t . mem_v + sum_{s<=t in chunk} (alpha_t . w_s) v_s) / t
  aw_BxHxIxCxC = jnp.einsum("bhicl,bhisl->bhics", alpha_BxHxIxCxL, w) * causal_1x1x1xCxC
  y = jnp.einsum("bhicl,bhilk->bhick", alpha_BxHxIxCxL, mem_v_BxHxIxLxK)
  y = (y + jnp.einsum("bhics,bhisk->bhick", aw_BxHxIxCxC, v)) / t_1x1xIxCx1
  y_BxHxNxK = y.reshape(b, h, num_chunks * c, kd)[:, :, :n]
  return (y_BxHxNxK, mem_k_BxHxKxL + total_k.reshape(b, h, kd, l),
          mem_v_BxHxLxK + total_v.reshape(b, h, l, kd))


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
    chunk_size: positions per chunk; None (the default) follows the length of each call
      (`chunk_size_for`). Any value gives the same result.
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
  chunk_size: Optional[int] = None
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

    def project(name, a_BxNxD):  # on the (rows, D) view, as LunaAttention
      return common.dense_rows(proj(name), a_BxNxD)

    def heads(a_BxNxD):  # (B, N, D) -> (B, H, N, K) in the accumulation dtype
      return common.heads_first(a_BxNxD, h).astype(acc)

    rate = self.attention_dropout

    def keep_mask(name):  # (B, H, N, L), True where kept; None when dropout is off
      if deterministic or rate == 0.0:
        return None
      keep = jax.random.bernoulli(self.make_rng("dropout"), 1.0 - rate, (b, h, n, l))
      self.sow("intermediates", name, keep)
      return keep

    q_p = heads(project("p_query", p_BxLxD.astype(self.dtype)) * dh**-0.5)
    k_pack = heads(project("p_context", x))
    w_BxHxNxL = omega(jnp.einsum("bhnk,bhlk->bhnl", k_pack, q_p))
    w_BxHxNxL = apply_keep(w_BxHxNxL, keep_mask("w_keep"), rate)  # before normalisation
    alpha_keep_BxHxNxL = keep_mask("alpha_keep")  # applied after the softmax, in the scan
    if mask_BxN is not None:
      w_BxHxNxL = w_BxHxNxL * mask_BxN[:, None, :, None].astype(acc)
    q = heads(project("query", x) * dh**-0.5)
    if self.tied_kv:
      k = v = heads(project("context", x))
    else:
      k, v = heads(project("key", x)), heads(project("value", x))

    chunk = chunk_size_for(n, l, dh) if self.chunk_size is None else self.chunk_size
    zeros_k = jnp.zeros((b, h, dh, l), acc)
    zeros_v = jnp.zeros((b, h, l, dh), acc)
    if self.decode:
      initialized = self.has_variable("cache", "mem_k")
      mem_k = self.variable("cache", "mem_k", lambda: zeros_k)
      mem_v = self.variable("cache", "mem_v", lambda: zeros_v)
      index = self.variable("cache", "index", lambda: jnp.zeros((), jnp.int32))
    if self.decode and initialized:
      y, new_k, new_v = causal_luna_chunked(
          q, k, v, w_BxHxNxL, mem_k.value, mem_v.value, start=index.value,
          p_mask_BxL=p_mask_BxL, chunk_size=chunk, alpha_keep_BxHxNxL=alpha_keep_BxHxNxL,
          dropout_rate=rate,
      )
      mem_k.value, mem_v.value = new_k, new_v
      index.value = index.value + n
    else:
      y, _, _ = causal_luna_chunked(
          q, k, v, w_BxHxNxL, zeros_k, zeros_v, start=jnp.zeros((), jnp.int32),
          p_mask_BxL=p_mask_BxL, chunk_size=chunk, alpha_keep_BxHxNxL=alpha_keep_BxHxNxL,
          dropout_rate=rate,
      )
    y_BxNxD = common.heads_last(y.astype(self.dtype))
    return common.dense_rows(proj("out", role="out_proj"), y_BxNxD), p_BxLxD
