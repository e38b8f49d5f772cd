"""Matrix-product FLOPs of a function, counted from its jaxpr.

XLA's `cost_analysis()` counts a loop's body once, whatever its trip count, so it misses
most of the work of the chunked softmax attention and of causal Luna, whose blocks run in
`lax.scan` / `fori_loop`. Here every dot_general and convolution counts 2 multiply-adds
per output element and contracted element, a scan's body `length` times, a cond's
costliest branch (the chunked attention's skipped blocks count as computed: an upper
bound), and rematerialised work as often as it runs. A while loop whose trip count is
not static (decoding) counts once and is reported in `unbounded_loops`.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from jax.extend import core as jex_core


@dataclasses.dataclass
class FlopCount:
  flops: int = 0
  unbounded_loops: int = 0  # while loops counted once

  def add(self, other: FlopCount, times: int = 1) -> None:
    self.flops += other.flops * times
    self.unbounded_loops += other.unbounded_loops


def _dot_flops(eqn) -> int:
  (contract_lhs, _), _ = eqn.params["dimension_numbers"]
  lhs = eqn.invars[0].aval.shape
  out = eqn.outvars[0].aval.shape
  return 2 * math.prod(out) * math.prod(lhs[d] for d in contract_lhs)


def _conv_flops(eqn) -> int:
  rhs = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  out_features = rhs[eqn.params["dimension_numbers"].rhs_spec[0]]
  return 2 * math.prod(out) * (math.prod(rhs) // out_features)


def _sub_jaxprs(params):
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if isinstance(item, jex_core.ClosedJaxpr):
        yield item.jaxpr
      elif isinstance(item, jex_core.Jaxpr):
        yield item


def count_jaxpr(jaxpr) -> FlopCount:
  total = FlopCount()
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == "dot_general":
      total.flops += _dot_flops(eqn)
    elif name == "conv_general_dilated":
      total.flops += _conv_flops(eqn)
    elif name == "scan":
      total.add(count_jaxpr(eqn.params["jaxpr"].jaxpr), eqn.params["length"])
    elif name == "cond":
      branches = [count_jaxpr(b.jaxpr) for b in eqn.params["branches"]]
      total.add(max(branches, key=lambda c: c.flops))
    elif name == "while":
      total.add(count_jaxpr(eqn.params["cond_jaxpr"].jaxpr))
      total.add(count_jaxpr(eqn.params["body_jaxpr"].jaxpr))
      total.unbounded_loops += 1
    else:  # pjit, remat, custom_jvp/vjp calls, shard_map, ...: their inner programs
      for sub in _sub_jaxprs(eqn.params):
        total.add(count_jaxpr(sub))
  return total


def count(fn, *args) -> FlopCount:
  """The FLOPs of fn(*args) over the whole (global) arrays; arguments may be
  jax.ShapeDtypeStruct."""
  return count_jaxpr(jax.make_jaxpr(fn)(*args).jaxpr)
