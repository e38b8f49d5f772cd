"""Naive float64 NumPy references, written from the papers' formulas, loop by loop.

They share no code with luna_jax: every function takes a parameter dict (as Flax stores
it) and recomputes the mechanism with explicit loops over batch and heads.
"""

import math

import numpy as np

_erf = np.vectorize(math.erf)


def to_np(tree):
  if isinstance(tree, dict) or hasattr(tree, "items"):
    return {k: to_np(v) for k, v in tree.items()}
  return np.asarray(tree, np.float64)


def linear(x, p):
  return x @ p["kernel"] + p["bias"]


def layer_norm(x, p, eps=1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * p["scale"] + p["bias"]


def gelu(x):
  return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def softmax(logits, allowed=None):
  """Softmax over the last axis; disallowed entries get exactly zero weight."""
  logits = np.array(logits, np.float64)
  if allowed is not None:
    logits = np.where(allowed, logits, -np.inf)
  logits = logits - logits.max(-1, keepdims=True)
  e = np.exp(logits)
  return e / e.sum(-1, keepdims=True)


def attention_heads(q, k, v, heads, allowed=None):
  """Per-head softmax(q_h k_h^T / sqrt(d_h)) v_h for one example; q (T, D), k, v (S, D)."""
  d = q.shape[-1]
  dh = d // heads
  out = np.zeros((q.shape[0], d))
  for h in range(heads):
    s = slice(h * dh, (h + 1) * dh)
    a = softmax(q[:, s] @ k[:, s].T / math.sqrt(dh), allowed)
    out[:, s] = a @ v[:, s]
  return out


def softmax_attention(q, k, v, mask=None, causal=False, keep=None, rate=0.0):
  """Dropout(softmax(q k^T / sqrt(d_h))) v per example and head, heads split:
  q (B, N, H, K), k, v (B, M, H, K); mask (B, M) True at keys that may be attended;
  keep (B, H, N, M) the dropout keep mask (kept weights scaled by 1 / (1 - rate)).

  A row with no allowed key averages v over all M keys, the library's convention (its
  masked logits are a large finite negative, not -inf).
  """
  bsz, n, heads, dh = q.shape
  m = k.shape[1]
  out = np.zeros((bsz, n, heads, v.shape[-1]))
  for b in range(bsz):
    allowed = np.ones((n, m), bool)
    if mask is not None:
      allowed &= np.asarray(mask[b], bool)[None, :]
    if causal:
      allowed &= np.tril(np.ones((n, m), bool))
    for h in range(heads):
      logits = np.asarray(q[b, :, h], np.float64) @ np.asarray(k[b, :, h], np.float64).T
      a = np.zeros((n, m))
      for t in range(n):
        if allowed[t].any():
          a[t] = softmax(logits[t] / math.sqrt(dh), allowed[t])
        else:
          a[t] = 1.0 / m
      if keep is not None:
        a = a * np.asarray(keep[b, h]) / (1.0 - rate)
      out[b, :, h] = a @ np.asarray(v[b, :, h], np.float64)
  return out


def luna_attention(params, x, p, c, c_mask, p_mask, heads, pack_heads, tied):
  """Bidirectional Luna: returns (Y_X (B, N, D), Y_P (B, L, D))."""
  ys, yps = [], []
  for b in range(x.shape[0]):
    if tied:
      kp = vp = linear(c[b], params["p_context"])
    else:
      kp, vp = linear(c[b], params["p_key"]), linear(c[b], params["p_value"])
    qp = linear(p[b], params["p_query"])
    allowed_c = None if c_mask is None else c_mask[b][None, :]
    yp = attention_heads(qp, kp, vp, pack_heads, allowed_c)
    if tied:
      k = v = linear(yp, params["context"])
    else:
      k, v = linear(yp, params["key"]), linear(yp, params["value"])
    allowed_p = None if p_mask is None else p_mask[b][None, :]
    y = attention_heads(linear(x[b], params["query"]), k, v, heads, allowed_p)
    ys.append(linear(y, params["out"]))
    yps.append(yp)
  return np.stack(ys), np.stack(yps)


def omega(z):
  return np.log1p(2.0**z) / np.log(2.0)


def luna_causal(params, x, p, mask, p_mask, heads, tied, w_keep=None, alpha_keep=None,
                rate=0.0):
  """Causal Luna from the per-position formulas: Kbar_t, Vbar_t built explicitly.

  w_keep / alpha_keep: boolean (B, H, N, L) dropout masks (True = kept, scaled by
  1 / (1 - rate)) of the pack weights w (before they build Kbar and Vbar) and of the
  unpack softmax weights alpha (after the softmax, before they weight Vbar), as the
  authors' LunarCausalAttention drops them; None = no dropout there.
  """
  bsz, n, d = x.shape
  dh = d // heads
  out = np.zeros((bsz, n, d))
  for b in range(bsz):
    qp = linear(p[b], params["p_query"]) / math.sqrt(dh)
    kpack = linear(x[b], params["p_context"])
    q = linear(x[b], params["query"]) / math.sqrt(dh)
    if tied:
      k = v = linear(x[b], params["context"])
    else:
      k, v = linear(x[b], params["key"]), linear(x[b], params["value"])
    y = np.zeros((n, d))
    for h in range(heads):
      s = slice(h * dh, (h + 1) * dh)
      w = omega(kpack[:, s] @ qp[:, s].T)  # (n, l)
      if w_keep is not None:
        w = w * w_keep[b, h] / (1.0 - rate)
      if mask is not None:
        w = w * mask[b][:, None]
      for t in range(1, n + 1):
        kbar = (w[:t].T @ k[:t, s]) / t  # (l, dh)
        vbar = (w[:t].T @ v[:t, s]) / t
        allowed = None if p_mask is None else p_mask[b]
        alpha = softmax(q[t - 1, s] @ kbar.T, allowed)
        if alpha_keep is not None:
          alpha = alpha * alpha_keep[b, h, t - 1] / (1.0 - rate)
        y[t - 1, s] = alpha @ vbar
    out[b] = linear(y, params["out"])
  return out


def feed_forward(x, params):
  return linear(gelu(linear(x, params["fc1"])), params["fc2"])


def luna_layer(params, x, p, mask, p_mask, heads, pack_heads, tied, pre_ln, *,
               ffn=feed_forward):
  """One Luna encoder layer (post-LN, or pre-LN without the final norms); ffn: the
  feed-forward network (GELU; the translation models' is relu_feed_forward)."""
  if pre_ln:
    xh, ph = layer_norm(x, params["x_norm"]), layer_norm(p, params["p_norm"])
    yx, yp = luna_attention(params["attention"], xh, ph, xh, mask, p_mask, heads, pack_heads, tied)
    xa, p_next = x + yx, p + yp
    return xa + ffn(layer_norm(xa, params["ffn_norm"]), params["ffn"]), p_next
  yx, yp = luna_attention(params["attention"], x, p, x, mask, p_mask, heads, pack_heads, tied)
  xa = layer_norm(x + yx, params["x_norm"])
  p_next = layer_norm(p + yp, params["p_norm"])
  return layer_norm(xa + ffn(xa, params["ffn"]), params["ffn_norm"]), p_next


def multi_head_attention(params, x, mask, heads, causal):
  bsz, n, _ = x.shape
  out = []
  for b in range(bsz):
    allowed = np.ones((n, n), bool)
    if mask is not None:
      allowed &= mask[b][None, :]
    if causal:
      allowed &= np.tril(np.ones((n, n), bool))
    q, k, v = (linear(x[b], params[name]) for name in ("query", "key", "value"))
    out.append(linear(attention_heads(q, k, v, heads, allowed), params["out"]))
  return np.stack(out)


def transformer_layer(params, x, mask, heads, causal, *, ffn=feed_forward):
  """Pre-LN Transformer layer; ffn as in luna_layer."""
  xa = x + multi_head_attention(params["attention"], layer_norm(x, params["x_norm"]), mask, heads, causal)
  return xa + ffn(layer_norm(xa, params["ffn_norm"]), params["ffn"])


def luna_encoder(params, x, mask, heads, proj_len, layers, contextual, pre_ln, tied=False):
  """The Luna stack with the learned P, dynamic projection and (pre-LN) final norms."""
  bsz = x.shape[0]
  x = x * mask[..., None]
  p_mask = np.arange(proj_len)[None, :] < mask.sum(-1)[:, None]

  def initial_p(suffix):
    p = np.broadcast_to(params["p_embed" + suffix], (bsz,) + params["p_embed" + suffix].shape)
    return layer_norm(p, params["p_embed_norm" + suffix]) * p_mask[..., None]

  p = initial_p("") if contextual else None
  for i in range(layers):
    if not contextual:
      p = initial_p(f"_{i}")
    x, p = luna_layer(params[f"layer_{i}"], x, p, mask, p_mask, heads, heads, tied, pre_ln)
  if pre_ln:
    x, p = layer_norm(x, params["final_norm"]), layer_norm(p, params["final_p_norm"])
  return x, p


def linformer_attention(params, x, mask, heads, sharing, before, shared_e=None):
  """Linformer with padded columns of E/F dropped; E, F of shape (G, k, max_len)."""
  bsz, n, d = x.shape
  dh = d // heads
  if sharing == "layerwise":
    e = f = shared_e
  else:
    e = params["e"]["kernel"]
    f = e if sharing == "kv" else params["f"]["kernel"]
  out = np.zeros((bsz, n, d))
  for b in range(bsz):
    q = linear(x[b], params["query"])
    y = np.zeros((n, d))
    for h in range(heads):
      s = slice(h * dh, (h + 1) * dh)
      g = h if e.shape[0] > 1 else 0
      e_h = e[g][:, :n] * mask[b][None, :]
      f_h = f[g][:, :n] * mask[b][None, :]
      if before:
        k = (e_h @ x[b]) @ params["key"]["kernel"][:, s] + params["key"]["bias"][s]
        v = (f_h @ x[b]) @ params["value"]["kernel"][:, s] + params["value"]["bias"][s]
      else:
        k = e_h @ linear(x[b], params["key"])[:, s]
        v = f_h @ linear(x[b], params["value"])[:, s]
      a = softmax(q[:, s] @ k.T / math.sqrt(dh))
      y[:, s] = a @ v
    out[b] = linear(y, params["out"])
  return out


def depthwise_conv(x, weights_fn, heads, kernel_size, causal):
  """out[t, c] = sum_k w_t[h(c), k] x[t + k - P, c] with zero padding; weights_fn(b, t)
  gives the normalised (H, K) weights of step t."""
  bsz, n, c = x.shape
  pad = kernel_size - 1 if causal else kernel_size // 2
  group = c // heads
  out = np.zeros_like(x)
  for b in range(bsz):
    for t in range(n):
      w = weights_fn(b, t)
      for ch in range(c):
        for k in range(kernel_size):
          s = t + k - pad
          if 0 <= s < n:
            out[b, t, ch] += w[ch // group, k] * x[b, s, ch]
  return out


def lightconv(params, x, heads, kernel_size, causal):
  w = softmax(params["weight"])
  return depthwise_conv(x, lambda b, t: w, heads, kernel_size, causal)


def dynamicconv(params, x, heads, kernel_size, causal):
  def weights(b, t):
    return softmax((x[b, t] @ params["weight_linear"]["kernel"]).reshape(heads, kernel_size))
  return depthwise_conv(x, weights, heads, kernel_size, causal)


def conv_layer(params, x, mask, heads, kernel_size, causal, dynamic):
  """Post-LN convolution block (Linear, GLU, mask, conv, Linear) and ReLU FFN block."""
  d = x.shape[-1]
  h = linear(x, params["linear1"])
  h = h[..., :d] / (1.0 + np.exp(-h[..., d:]))  # GLU: a * sigmoid(b)
  h = h * mask[..., None]
  conv = dynamicconv if dynamic else lightconv
  h = linear(conv(params["conv"], h, heads, kernel_size, causal), params["linear2"])
  x = layer_norm(x + h, params["conv_norm"])
  ffn = linear(np.maximum(linear(x, params["ffn"]["fc1"]), 0), params["ffn"]["fc2"])
  return layer_norm(x + ffn, params["ffn_norm"])


def sinusoidal(n, d):
  """fairseq's table: row t = [sin(t w_0) .. sin(t w_{h-1}), cos(t w_0) .. cos(t w_{h-1})],
  w_i = 10000^(-i / (h - 1)), h = d / 2 (d even)."""
  h = d // 2
  table = np.zeros((n, d))
  for t in range(n):
    for i in range(h):
      w = 10000.0 ** (-i / (h - 1))
      table[t, i], table[t, h + i] = math.sin(t * w), math.cos(t * w)
  return table


def relu_feed_forward(x, params):
  return linear(np.maximum(linear(x, params["fc1"]), 0.0), params["fc2"])


def cross_attention(params, x, memory, memory_mask, heads):
  """Softmax encoder-decoder attention: x's rows attend to the real memory rows."""
  out = []
  for b in range(x.shape[0]):
    q = linear(x[b], params["query"])
    k, v = linear(memory[b], params["key"]), linear(memory[b], params["value"])
    allowed = np.broadcast_to(memory_mask[b][None, :], (x.shape[1], memory.shape[1]))
    out.append(linear(attention_heads(q, k, v, heads, allowed), params["out"]))
  return np.stack(out)


def luna_decoder_layer(params, x, p, memory, memory_mask, p_mask, heads, tied, pre_ln, *,
                       pack_heads=None):
  """The authors' LunaDecoderLayer: causal Luna self-attention with pquery = P (P
  unchanged), then Luna attention packing the memory into P with pack_heads heads (their
  decoder_projected_attention_heads; None: heads) and unpacking it into x with heads
  (P = LN(P + Y_P) with its own norm), then the ReLU FFN; post-LN or pre-LN."""
  s = params["self_mixing"]
  c = params["cross_attention"]["attention"]
  pack_heads = pack_heads or heads
  if pre_ln:
    x = x + luna_causal(s["attention"], layer_norm(x, s["x_norm"]), p, None, p_mask, heads, tied)
    xh, ph = layer_norm(x, params["cross_norm"]), layer_norm(p, params["cross_p_norm"])
    yx, yp = luna_attention(c, xh, ph, memory, memory_mask, p_mask, heads, pack_heads, tied)
    x, p = x + yx, p + yp
    return x + relu_feed_forward(layer_norm(x, params["ffn_norm"]), params["ffn"]), p
  x = layer_norm(x + luna_causal(s["attention"], x, p, None, p_mask, heads, tied), s["x_norm"])
  yx, yp = luna_attention(c, x, p, memory, memory_mask, p_mask, heads, pack_heads, tied)
  x = layer_norm(x + yx, params["cross_norm"])
  p = layer_norm(p + yp, params["cross_p_norm"])
  return layer_norm(x + relu_feed_forward(x, params["ffn"]), params["ffn_norm"]), p


def transformer_decoder_layer(params, x, memory, memory_mask, heads):
  """Pre-LN Transformer decoder layer: causal self-attention, cross-attention, ReLU FFN."""
  s = params["self_mixing"]
  x = x + multi_head_attention(s["attention"], layer_norm(x, s["x_norm"]), None, heads, True)
  x = x + cross_attention(params["cross_attention"]["attention"],
                          layer_norm(x, params["cross_norm"]), memory, memory_mask, heads)
  return x + relu_feed_forward(layer_norm(x, params["ffn_norm"]), params["ffn"])


def conv_decoder_layer(params, x, memory, memory_mask, heads, kernel_size, dynamic):
  """Post-LN convolution decoder layer (Wu et al. 2019): the causal convolution block,
  softmax encoder-decoder attention, the ReLU FFN."""
  s = params["self_mixing"]
  d = x.shape[-1]
  h = linear(x, s["linear1"])
  h = h[..., :d] / (1.0 + np.exp(-h[..., d:]))
  conv = dynamicconv if dynamic else lightconv
  h = linear(conv(s["conv"], h, heads, kernel_size, True), s["linear2"])
  x = layer_norm(x + h, s["conv_norm"])
  x = layer_norm(x + cross_attention(params["cross_attention"]["attention"], x, memory,
                                     memory_mask, heads), params["cross_norm"])
  return layer_norm(x + relu_feed_forward(x, params["ffn"]), params["ffn_norm"])
