"""TPU slices by MaxText's names ("v5e-8", "v4-8", "v5e-16"), as JAX's compile-only devices.

With the `libtpu` package installed, `jax.experimental.topologies.get_topology_desc`
describes a real slice without one: its devices carry the chip coordinates and host
(process) indices of the slice, and programs lowered on a mesh of them run the real TPU
compiler. A name is the generation and a count, as Cloud TPU and MaxText write them: v5e
and v6e count chips (v5e-8: 8 chips, 2x4, one host); v4 and v5p count TensorCores, two
per chip, one JAX device per chip (v4-8: 4 chips, 2x2x1). Slices of more than 8 v5e/v6e
chips, and every v4/v5p slice, have 4 chips per host (v5e-16: 4 hosts).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re

from luna_jax import errors

# generation -> (HBM per chip in GiB, whether the name counts cores rather than chips,
# torus dimensions)
GENERATIONS = {"v4": (32, True, 3), "v5p": (95, True, 3), "v5e": (16, False, 2),
               "v6e": (32, False, 2)}
_SHAPES_2D = {1: (1, 1), 4: (2, 2), 8: (2, 4), 16: (4, 4), 32: (4, 8), 64: (8, 8),
              128: (8, 16), 256: (16, 16)}
_SHAPES_3D = {4: (2, 2, 1), 8: (2, 2, 2), 16: (2, 2, 4), 32: (2, 4, 4), 64: (4, 4, 4),
              128: (4, 4, 8), 256: (4, 8, 8), 512: (8, 8, 8)}


@dataclasses.dataclass(frozen=True)
class Topology:
  """One or more identical TPU slices.

  Attributes:
    name: MaxText's name of one slice ("v5e-8").
    generation: "v4", "v5e", "v5p" or "v6e".
    shape: the slice's chips along each torus axis, e.g. (2, 4).
    chips_per_host: chips of one host along each axis (3 entries, as libtpu takes them).
    num_slices: slices joined over the data-centre network (MaxText's
      compile_topology_num_slices).
  """

  name: str
  generation: str
  shape: tuple[int, ...]
  chips_per_host: tuple[int, int, int]
  num_slices: int = 1

  @property
  def chips(self) -> int:
    """Chips (JAX devices) over all slices."""
    return math.prod(self.shape) * self.num_slices

  @property
  def hosts(self) -> int:
    """Hosts (JAX processes) over all slices."""
    return self.chips // math.prod(self.chips_per_host)

  @property
  def hbm_bytes(self) -> int:
    """High-bandwidth memory of one chip."""
    return GENERATIONS[self.generation][0] * 2**30

  @property
  def jax_name(self) -> str:
    return f"{self.generation}:{'x'.join(map(str, self.shape))}"

  def describe(self) -> str:
    slices = f" x {self.num_slices} slices" if self.num_slices > 1 else ""
    return (f"{self.name}{slices} ({self.chips} chips of {self.hbm_bytes / 2**30:.0f} GiB, "
            f"{self.hosts} host{'s' if self.hosts > 1 else ''})")

  def devices(self) -> list:
    """The slice's compile-only devices (needs the libtpu package, not a TPU)."""
    try:
      import libtpu  # noqa: F401
    except ImportError:
      raise errors.ConfigError(
          "compiling for a TPU slice needs the libtpu package: pip install -e '.[tpu]' "
          "(or pip install libtpu); no TPU is needed.") from None
    # libtpu locks /tmp/libtpu_lockfile against a second process using the chips; a
    # compile-only process uses none, so several may run at once (tests in parallel).
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    kwargs = {"chips_per_host_bounds": self.chips_per_host}
    if GENERATIONS[self.generation][1]:
      kwargs["chip_config_name"] = "megacore"  # one device per chip, as on a real v4/v5p
    if self.num_slices > 1:
      kwargs["num_slices"] = self.num_slices
    topology = topologies.get_topology_desc(self.jax_name, "tpu", **kwargs)
    devices = list(topology.devices)
    if len(devices) != self.chips:  # a libtpu that counts otherwise
      raise RuntimeError(f"{self.jax_name} gave {len(devices)} devices, expected "
                         f"{self.chips}.")
    return devices


def parse(name: str, num_slices: int = 1) -> Topology:
  """The Topology of a name such as "v5e-8" (see the module docstring)."""
  match = re.fullmatch(r"(v4|v5e|v5p|v6e)-(\d+)", name.strip().lower())
  examples = "v5e-1, v5e-8, v5e-16, v6e-8, v4-8, v4-16, v5p-8"
  if not match:
    raise errors.ConfigError(f"unknown TPU topology {name!r}: give a generation and a "
                             f"count as MaxText does, e.g. {examples}.")
  generation, count = match.group(1), int(match.group(2))
  _, counts_cores, dims = GENERATIONS[generation]
  chips = count // 2 if counts_cores else count
  shapes = _SHAPES_3D if dims == 3 else _SHAPES_2D
  if (counts_cores and count % 2) or chips not in shapes:
    unit = "TensorCores, 2 per chip" if counts_cores else "chips"
    sizes = ", ".join(f"{generation}-{c * 2 if counts_cores else c}" for c in shapes)
    raise errors.ConfigError(f"{name!r}: {generation} slices count {unit}; known sizes: "
                             f"{sizes}.")
  if num_slices < 1:
    raise errors.ConfigError(f"--compile_topology_num_slices={num_slices} must be >= 1.")
  shape = shapes[chips]
  if dims == 2:
    per_host = (2, 4, 1) if chips == 8 else (2, 2, 1) if chips > 1 else (1, 1, 1)
  else:
    per_host = (2, 2, 1)
  return Topology(name=f"{generation}-{count}", generation=generation, shape=shape,
                  chips_per_host=per_host, num_slices=num_slices)


# jax's device_kind of each generation's chips
_KINDS = {"TPU v4": "v4", "TPU v5 lite": "v5e", "TPU v5e": "v5e", "TPU v5": "v5p",
          "TPU v5p": "v5p", "TPU v6 lite": "v6e", "TPU v6e": "v6e"}


def local(devices) -> Topology:
  """The Topology of attached TPU devices (a TPU VM, a Colab TPU), by their kind and
  count."""
  kind = devices[0].device_kind
  if kind not in _KINDS:
    raise errors.ConfigError(f"no HBM figure for {kind!r} devices; known kinds: "
                             f"{', '.join(sorted(_KINDS))}.")
  generation = _KINDS[kind]
  count = len(devices) * (2 if GENERATIONS[generation][1] else 1)
  try:
    return parse(f"{generation}-{count}")
  except errors.ConfigError:  # an unusual slice: keep its count, shape unknown
    return Topology(f"{generation}-{count}", generation, (len(devices),), (1, 1, 1))
