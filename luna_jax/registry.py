"""The one place that maps a mechanism's name to its encoder layer.

Adding a mixer means writing its layer (with the `_LayerBase` fields and the call
interface in `luna_jax.layers`) and adding one `register_mixer` line below; the encoder,
configs and training loop select it by name.
"""

from __future__ import annotations

import dataclasses

from luna_jax import layers


@dataclasses.dataclass(frozen=True)
class MixerSpec:
  """How the encoder stack builds and drives one kind of layer.

  Attributes:
    layer: the Linen layer class.
    uses_p: the encoder creates a learned projected sequence P and threads it through.
    normalize_before: the mixer's default LayerNorm placement (True = pre-LN).
    supports_causal: whether causal=True is meaningful for this mixer.
    description: one line for error messages and docs.
  """

  layer: type
  uses_p: bool
  normalize_before: bool
  supports_causal: bool
  description: str

  def option_names(self) -> tuple[str, ...]:
    """Mixer-specific layer fields (those beyond the shared `_LayerBase` ones)."""
    shared = {f.name for f in dataclasses.fields(layers._LayerBase)}
    return tuple(
        f.name for f in dataclasses.fields(self.layer)
        if f.name not in shared and f.name not in ("parent", "name")
    )


_MIXERS: dict[str, MixerSpec] = {}


def register_mixer(name: str, spec: MixerSpec) -> None:
  if name in _MIXERS:
    raise ValueError(f"mixer {name!r} is already registered.")
  _MIXERS[name] = spec


def mixer_names() -> tuple[str, ...]:
  return tuple(_MIXERS)


def get_mixer(name: str) -> MixerSpec:
  try:
    return _MIXERS[name]
  except KeyError:
    raise ValueError(
        f"unknown mixer {name!r}; choose one of: {', '.join(_MIXERS)}."
    ) from None


register_mixer("luna", MixerSpec(
    layers.LunaEncoderLayer, uses_p=True, normalize_before=False, supports_causal=True,
    description="Luna pack/unpack attention, O(n l)"))
register_mixer("transformer", MixerSpec(
    layers.TransformerEncoderLayer, uses_p=False, normalize_before=True,
    supports_causal=True, description="softmax attention baseline, O(n^2)"))
