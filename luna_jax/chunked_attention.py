"""Memory-efficient exact softmax attention (FlashAttention's blocking, Dao et al. 2022), in
pure JAX: the softmax baseline wherever no fused kernel exists (CPU, TPU, float32 on GPU)
and whenever attention dropout is active.

    O = Dropout(softmax(Q K^T / sqrt(d_h) + mask)) V

Queries go in blocks of R rows and keys/values in blocks of C positions (`block_sizes`:
512 x 256 by default, capped at the lengths, which are padded internally to whole
blocks). Each query block keeps a running row max m, running sum l of exp(s - m) and an
unnormalised output, rescaled as each key block arrives (the online softmax), so O = acc / l
is exact up to float rounding. Nothing of size (N, M) exists, forward or backward: a
custom VJP keeps only O, m and l (O(B H N)) and recomputes each block's probabilities in
the backward pass (FlashAttention-2's backward, dQ accumulated over key blocks), so the
compiled temporaries grow linearly in N (about 200 MiB for a width-256, 4-head layer at
8K tokens, batch 2, where the explicit path needs 6 GiB).

Masking follows `common.masked_softmax`: disallowed logits (key padding, the causal future)
become the large finite `common.MASK_VALUE`, so a row with no allowed key averages V
uniformly over all M keys, as the explicit path does, and is never NaN. Blocks where no row
has an allowed key are skipped (above the causal diagonal; key blocks that are padding in
the whole batch): they would add exact zeros. Query blocks that hold a fully masked row
visit every block, for that convention.

Dropout acts on the normalised probabilities, as nn.Dropout after the softmax would: the
keep mask multiplies the exp weights that build the output while l sums the undropped
ones, which gives exactly Dropout(softmax(S)) V, kept weights scaled by 1 / (1 - rate).
The mask of query block i and key block j is drawn from fold_in(key, i J + j), so it is
reproducible from the step's key and independent of evaluation order (the backward pass
redraws the same masks). Each weight is kept independently with probability 1 - rate, as
by nn.Dropout, but the pattern is not nn.Dropout's and depends on the block sizes;
`keep_mask` rebuilds it densely.

Softmax statistics are float32 (float64 for float64 inputs) whatever the input dtype.
Shape letters as in `luna_jax/__init__.py`, plus I, J (query and key blocks) and R, C
(rows per query block, keys per key block).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.extend.random as jax_random_ext
import jax.numpy as jnp
import numpy as np
from jax import lax

from luna_jax import common

Array = common.Array

# Rows and keys per block. On CPU (2 cores, width 64 per head, B H = 8) 512 x 256 ran
# forward + backward 10-20% faster than 256 x 256, 512 x 512 or 1024 x 256 at 4K and 8K
# tokens, and its temporaries stay at B H x 512 x 256 floats per block-sized array.
BLOCK_Q, BLOCK_K = 512, 256


def block_sizes(n: int, m: int, block_q: int = BLOCK_Q, block_k: int = BLOCK_K
                ) -> tuple[int, int]:
  """(R, C): query rows and keys per block for n queries and m keys.

  Each is at most its cap and at most the length itself; a longer length is split into
  ceil(length / cap) equal blocks rounded up to a multiple of 8, so the internal padding
  stays below 8 positions per block (1000 queries: 2 blocks of 504; 4096: 8 of 512).
  """
  def size(length, cap):
    if length <= cap:
      return length
    per_block = -(-length // -(-length // cap))
    return min(cap, -(-per_block // 8) * 8)
  return size(n, block_q), size(m, block_k)


class _Config(NamedTuple):
  n: int  # real query rows
  m: int  # real keys
  rows: int  # R
  cols: int  # C
  causal: bool
  rate: float  # dropout probability


def chunked_attention(
    q_BxNxHxK: Array,
    k_BxMxHxK: Array,
    v_BxMxHxK: Array,
    mask_BxM: Optional[Array] = None,
    *,
    causal: bool = False,
    scale: Optional[float] = None,
    dropout_rate: float = 0.0,
    dropout_key: Optional[Array] = None,
    block_q: Optional[int] = None,
    block_k: Optional[int] = None,
) -> Array:
  """Dropout(softmax(scale q k^T, masked)) v per head in O(B H (N + M) K + B H R C) memory.

  Args:
    q_BxNxHxK, k_BxMxHxK, v_BxMxHxK: queries, keys, values (any float dtype, the same).
    mask_BxM: True at keys that may be attended (broadcastable to (B, M)); None: all.
    causal: query t attends only to keys <= t.
    scale: logit scale; None: K^-1/2.
    dropout_rate: drop probability on the attention probabilities (inverted dropout);
      needs dropout_key when positive.
    block_q, block_k: rows and keys per block (R, C); None: `block_sizes`. Lengths that
      they do not divide are padded internally.
  Returns (B, N, H, K) in v's dtype. Differentiable in q, k and v (reverse mode).
  """
  b, n, h, dk = q_BxNxHxK.shape
  m = k_BxMxHxK.shape[1]
  if not 0.0 <= dropout_rate < 1.0:
    raise ValueError(f"dropout_rate={dropout_rate} must be in [0, 1).")
  if dropout_rate > 0 and dropout_key is None:
    raise ValueError("dropout_rate > 0 needs a dropout_key.")
  rows, cols = _resolve_blocks(n, m, block_q, block_k)
  cfg = _Config(n, m, rows, cols, bool(causal), float(dropout_rate))
  scale = dk**-0.5 if scale is None else scale
  i_blocks, j_blocks = -(-n // rows), -(-m // cols)

  def blocked(x_BxLxHxK, size, blocks):
    x = jnp.pad(x_BxLxHxK, ((0, 0), (0, blocks * size - x_BxLxHxK.shape[1]), (0, 0), (0, 0)))
    return x.reshape(b, blocks, size, h, -1).transpose(1, 0, 3, 2, 4)

  q_IxBxHxRxK = blocked(q_BxNxHxK * jnp.asarray(scale, q_BxNxHxK.dtype), rows, i_blocks)
  k_JxBxHxCxK = blocked(k_BxMxHxK, cols, j_blocks)
  v_JxBxHxCxK = blocked(v_BxMxHxK, cols, j_blocks)
  allowed_BxM = jnp.broadcast_to(True if mask_BxM is None else jnp.asarray(mask_BxM, bool),
                                 (b, m))
  allowed_JxBxC = jnp.pad(allowed_BxM, ((0, 0), (0, j_blocks * cols - m)))
  allowed_JxBxC = allowed_JxBxC.reshape(b, j_blocks, cols).transpose(1, 0, 2)
  visit_IxJ = _visit_table(cfg, allowed_BxM, allowed_JxBxC, i_blocks, j_blocks)
  key = dropout_key if cfg.rate > 0 else None
  out_IxBxHxRxK = _attend(cfg, (q_IxBxHxRxK, k_JxBxHxCxK, v_JxBxHxCxK), allowed_JxBxC,
                          visit_IxJ, key)
  out_BxNxHxK = out_IxBxHxRxK.transpose(1, 0, 3, 2, 4).reshape(b, i_blocks * rows, h, -1)
  return out_BxNxHxK[:, :n]


def _resolve_blocks(n, m, block_q, block_k):
  rows, cols = block_sizes(n, m)
  rows = rows if block_q is None else int(block_q)
  cols = cols if block_k is None else int(block_k)
  if rows <= 0 or cols <= 0:
    raise ValueError(f"block sizes must be positive, got {rows} and {cols}.")
  return rows, cols


def keep_mask(
    dropout_key: Array,
    rate: float,
    shape_BxHxNxM: tuple[int, int, int, int],
    block_q: Optional[int] = None,
    block_k: Optional[int] = None,
) -> Array:
  """The dense (B, H, N, M) keep mask (True = kept) that `chunked_attention` with these
  arguments draws block by block; for tests and inspection (it is O(N M))."""
  b, h, n, m = shape_BxHxNxM
  rows, cols = _resolve_blocks(n, m, block_q, block_k)
  cfg = _Config(n, m, rows, cols, False, float(rate))
  i_blocks, j_blocks = -(-n // rows), -(-m // cols)
  blocks = [[_keep(cfg, dropout_key, i, j, j_blocks, (b, h, rows, cols))
             for j in range(j_blocks)] for i in range(i_blocks)]
  return jnp.block(blocks)[:, :, :n, :m]


def _keep(cfg, key, i, j, j_blocks, shape_BxHxRxC):
  """Block (i, j)'s keep mask, P(keep) = 1 - rate to within 2^-32.

  Threefry-2x32 (jax.random's default generator), keyed by a pair drawn from
  fold_in(key, i J + j), maps each counter to two random words, both used: half the
  hashes of jax.random.bernoulli, which spends one per word and a float conversion (3x
  the time, enough to dominate a dropout step on CPU). The counters are laid out like
  the block, so a batch-sharded step draws only its own rows.
  """
  b, h, rows, cols = shape_BxHxRxC
  half = -(-cols // 2)
  key_0, key_1 = jax.random.bits(jax.random.fold_in(key, i * j_blocks + j), (2,), jnp.uint32)
  shape = (b, h, rows, half)
  count = lax.broadcasted_iota(jnp.uint32, shape, 0)
  for axis in (1, 2, 3):
    count = count * jnp.uint32(shape[axis]) + lax.broadcasted_iota(jnp.uint32, shape, axis)
  words_0, words_1 = jax_random_ext.threefry2x32_p.bind(key_0, key_1, count,
                                                        jnp.zeros_like(count))
  words_BxHxRxC = jnp.concatenate([words_0, words_1], axis=-1)[..., :cols]
  threshold = min(round((1.0 - cfg.rate) * 2.0**32), 2**32 - 1)
  return words_BxHxRxC < jnp.uint32(threshold)


def _visit_table(cfg, allowed_BxM, allowed_JxBxC, i_blocks, j_blocks):
  """(I, J) bool: the blocks that can change the result."""
  has_key_J = jnp.any(allowed_JxBxC, axis=(1, 2))
  any_key_B = jnp.any(allowed_BxM, axis=1)
  if cfg.causal:
    last_row_I = np.minimum((np.arange(i_blocks) + 1) * cfg.rows, cfg.n) - 1
    needed_IxJ = np.arange(j_blocks)[None, :] * cfg.cols <= last_row_I[:, None]
    # Rows before an example's first allowed key see no key at all.
    first_key_B = jnp.where(any_key_B, jnp.argmax(allowed_BxM, axis=1), cfg.m)
    full_I = jnp.any(np.arange(i_blocks)[None, :] * cfg.rows < first_key_B[:, None], axis=0)
  else:
    needed_IxJ = np.ones((i_blocks, j_blocks), bool)
    full_I = jnp.broadcast_to(~jnp.all(any_key_B), (i_blocks,))
  return (jnp.asarray(needed_IxJ) & has_key_J[None, :]) | full_I[:, None]


def _logits(cfg, i, j, q_BxHxRxK, k_BxHxCxK, allowed_BxC):
  """The block's masked logits in the statistics dtype and where they are allowed."""
  s_BxHxRxC = jnp.einsum("bhrk,bhck->bhrc", q_BxHxRxK, k_BxHxCxK,
                         preferred_element_type=common.softmax_dtype(q_BxHxRxK.dtype))
  allowed_Bx1xRxC = allowed_BxC[:, None, None, :]
  cols_C = j * cfg.cols + lax.iota(jnp.int32, cfg.cols)
  if cfg.causal:
    rows_R = i * cfg.rows + lax.iota(jnp.int32, cfg.rows)
    allowed_Bx1xRxC = allowed_Bx1xRxC & (cols_C[None, :] <= rows_R[:, None])[None, None]
  s_BxHxRxC = jnp.where(allowed_Bx1xRxC, s_BxHxRxC, common.MASK_VALUE)
  if cfg.m % cfg.cols:  # internal padding: no weight, even in a fully masked row
    s_BxHxRxC = jnp.where((cols_C < cfg.m)[None, None, None, :], s_BxHxRxC, -jnp.inf)
  return s_BxHxRxC, allowed_Bx1xRxC


def _forward(cfg, qkv, allowed_JxBxC, visit_IxJ, key):
  """qkv: the blocked (queries, keys, values), one differentiable argument of `_attend`."""
  q_IxBxHxRxK, k_JxBxHxCxK, v_JxBxHxCxK = qkv
  stats = common.softmax_dtype(q_IxBxHxRxK.dtype)
  _, b, h, rows, dk = q_IxBxHxRxK.shape
  j_blocks = k_JxBxHxCxK.shape[0]

  def query_block(_, inputs):
    i, q_BxHxRxK = inputs

    def key_block(j, carry):
      def visit(carry):
        acc_BxHxRxK, max_BxHxR, sum_BxHxR = carry
        s_BxHxRxC, _ = _logits(cfg, i, j, q_BxHxRxK, k_JxBxHxCxK[j], allowed_JxBxC[j])
        new_max_BxHxR = jnp.maximum(max_BxHxR, s_BxHxRxC.max(-1))
        rescale_BxHxR = jnp.exp(max_BxHxR - new_max_BxHxR)
        w_BxHxRxC = jnp.exp(s_BxHxRxC - new_max_BxHxR[..., None])
        sum_BxHxR = sum_BxHxR * rescale_BxHxR + w_BxHxRxC.sum(-1)
        if cfg.rate > 0:  # dropped weights leave the output but not the normaliser
          keep = _keep(cfg, key, i, j, j_blocks, w_BxHxRxC.shape)
          w_BxHxRxC = jnp.where(keep, w_BxHxRxC, 0)
        v_BxHxCxK = v_JxBxHxCxK[j]
        acc_BxHxRxK = acc_BxHxRxK * rescale_BxHxR[..., None] + jnp.einsum(
            "bhrc,bhck->bhrk", w_BxHxRxC.astype(v_BxHxCxK.dtype), v_BxHxCxK,
            preferred_element_type=stats)
        return acc_BxHxRxK, new_max_BxHxR, sum_BxHxR

      return lax.cond(visit_IxJ[i, j], visit, lambda c: c, carry)

    init = (jnp.zeros((b, h, rows, v_JxBxHxCxK.shape[-1]), stats),
            jnp.full((b, h, rows), -jnp.inf, stats), jnp.zeros((b, h, rows), stats))
    acc_BxHxRxK, max_BxHxR, sum_BxHxR = lax.fori_loop(0, j_blocks, key_block, init)
    out_BxHxRxK = acc_BxHxRxK / (sum_BxHxR[..., None] * (1.0 - cfg.rate))
    return None, (out_BxHxRxK.astype(v_JxBxHxCxK.dtype), max_BxHxR, sum_BxHxR)

  i_blocks = q_IxBxHxRxK.shape[0]
  _, (out, max_IxBxHxR, sum_IxBxHxR) = lax.scan(
      query_block, None, (jnp.arange(i_blocks), q_IxBxHxRxK))
  return out, max_IxBxHxR, sum_IxBxHxR


def _attend_fwd(cfg, qkv, allowed, visit, key):
  out, max_IxBxHxR, sum_IxBxHxR = _forward(cfg, qkv, allowed, visit, key)
  return out, (*qkv, allowed, visit, key, out, max_IxBxHxR, sum_IxBxHxR)


def _attend_bwd(cfg, residuals, dout_IxBxHxRxK):
  (q_IxBxHxRxK, k_JxBxHxCxK, v_JxBxHxCxK, allowed_JxBxC, visit_IxJ, key, out_IxBxHxRxK,
   max_IxBxHxR, sum_IxBxHxR) = residuals
  stats = common.softmax_dtype(q_IxBxHxRxK.dtype)
  i_blocks, j_blocks = q_IxBxHxRxK.shape[0], k_JxBxHxCxK.shape[0]
  inv_keep = 1.0 / (1.0 - cfg.rate)
  inv_sum_IxBxHxR = 1.0 / sum_IxBxHxR
  # rowsum(dP * P) of softmax's backward equals rowsum(dO * O), dropout included.
  delta_IxBxHxR = jnp.sum(dout_IxBxHxRxK.astype(stats) * out_IxBxHxRxK.astype(stats), -1)

  def key_block(dq_IxBxHxRxK, inputs):
    j, k_BxHxCxK, v_BxHxCxK, allowed_BxC = inputs

    def query_block(i, carry):
      def visit(carry):
        dq_IxBxHxRxK, dk_BxHxCxK, dv_BxHxCxK = carry
        q_BxHxRxK, dout_BxHxRxK = q_IxBxHxRxK[i], dout_IxBxHxRxK[i]
        s_BxHxRxC, allowed = _logits(cfg, i, j, q_BxHxRxK, k_BxHxCxK, allowed_BxC)
        p_BxHxRxC = (jnp.exp(s_BxHxRxC - max_IxBxHxR[i][..., None])
                     * inv_sum_IxBxHxR[i][..., None])
        dp_BxHxRxC = jnp.einsum("bhrk,bhck->bhrc", dout_BxHxRxK, v_BxHxCxK,
                                preferred_element_type=stats)
        if cfg.rate > 0:
          keep = _keep(cfg, key, i, j, j_blocks, p_BxHxRxC.shape)
          dropped_BxHxRxC = jnp.where(keep, p_BxHxRxC * inv_keep, 0)
          dp_BxHxRxC = jnp.where(keep, dp_BxHxRxC * inv_keep, 0)
        else:
          dropped_BxHxRxC = p_BxHxRxC
        dv_BxHxCxK = dv_BxHxCxK + jnp.einsum(
            "bhrc,bhrk->bhck", dropped_BxHxRxC.astype(dout_BxHxRxK.dtype), dout_BxHxRxK,
            preferred_element_type=stats)
        # Masked logits are constants (the explicit path's jnp.where): no gradient there,
        # which matters only in fully masked rows, whose p is uniform rather than 0.
        ds_BxHxRxC = jnp.where(
            allowed, p_BxHxRxC * (dp_BxHxRxC - delta_IxBxHxR[i][..., None]), 0)
        ds_BxHxRxC = ds_BxHxRxC.astype(q_BxHxRxK.dtype)
        dq_IxBxHxRxK = dq_IxBxHxRxK.at[i].add(jnp.einsum(
            "bhrc,bhck->bhrk", ds_BxHxRxC, k_BxHxCxK, preferred_element_type=stats))
        dk_BxHxCxK = dk_BxHxCxK + jnp.einsum(
            "bhrc,bhrk->bhck", ds_BxHxRxC, q_BxHxRxK, preferred_element_type=stats)
        return dq_IxBxHxRxK, dk_BxHxCxK, dv_BxHxCxK

      return lax.cond(visit_IxJ[i, j], visit, lambda c: c, carry)

    init = (dq_IxBxHxRxK, jnp.zeros(k_BxHxCxK.shape, stats), jnp.zeros(v_BxHxCxK.shape, stats))
    dq_IxBxHxRxK, dk_BxHxCxK, dv_BxHxCxK = lax.fori_loop(0, i_blocks, query_block, init)
    return dq_IxBxHxRxK, (dk_BxHxCxK, dv_BxHxCxK)

  dq_IxBxHxRxK, (dk_JxBxHxCxK, dv_JxBxHxCxK) = lax.scan(
      key_block, jnp.zeros(q_IxBxHxRxK.shape, stats),
      (jnp.arange(j_blocks), k_JxBxHxCxK, v_JxBxHxCxK, allowed_JxBxC))
  return ((dq_IxBxHxRxK.astype(q_IxBxHxRxK.dtype), dk_JxBxHxCxK.astype(k_JxBxHxCxK.dtype),
           dv_JxBxHxCxK.astype(v_JxBxHxCxK.dtype)), None, None, None)


_attend = jax.custom_vjp(lambda cfg, *args: _forward(cfg, *args)[0], nondiff_argnums=(0,))
_attend.defvjp(_attend_fwd, _attend_bwd)
