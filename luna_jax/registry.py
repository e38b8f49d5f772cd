"""The one place that maps a mechanism's name to its encoder layer.

Adding a mixer means writing its layer (with the `LayerBase` fields and the call
interface in `luna_jax.layers`) and adding one `register_mixer` line below; the encoder,
configs and training loop select it by name.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

from luna_jax import convolution, layers, linformer


@dataclasses.dataclass(frozen=True)
class MixerSpec:
  """How the encoder stack builds and drives one kind of layer.

  Attributes:
    layer: the Linen layer class.
    uses_p: the encoder creates a learned projected sequence P and threads it through.
    normalize_before: the mixer's default LayerNorm placement (True = pre-LN).
    description: one line for error messages and docs.
    not_causal_because: non-empty for mixers with no causal form; causal=True then
      raises with this reason.
    extra_options: mixer_options that are not layer fields but are turned into layer
      fields by `layer_kwargs` (e.g. a per-layer list of kernel sizes).
    layer_kwargs: (encoder, options, layer_index) -> the layer's own keyword arguments;
      None passes the options through unchanged.
    shared_modules: (encoder, options) -> {layer field: module} created once in the
      encoder and handed to every layer, so its parameters are shared across layers.
  """

  layer: type
  uses_p: bool
  normalize_before: bool
  description: str
  not_causal_because: str = ""
  extra_options: tuple[str, ...] = ()
  layer_kwargs: Optional[Callable[[Any, Mapping[str, Any], int], dict]] = None
  shared_modules: Optional[Callable[[Any, Mapping[str, Any]], dict]] = None

  def option_names(self) -> tuple[str, ...]:
    """Accepted mixer_options: the layer's own fields beyond the shared `LayerBase` ones
    (minus those filled by shared modules), plus `extra_options`."""
    shared = {f.name for f in dataclasses.fields(layers.LayerBase)}
    shared |= {"parent", "name"} | set(self.shared_module_fields)
    own = tuple(f.name for f in dataclasses.fields(self.layer) if f.name not in shared)
    return own + self.extra_options

  # Layer fields that `shared_modules` fills; a mixer declares them by this name.
  shared_module_fields: tuple[str, ...] = ()


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
    layers.LunaEncoderLayer, uses_p=True, normalize_before=False,
    description="Luna pack/unpack attention, O(n l)"))
register_mixer("transformer", MixerSpec(
    layers.TransformerEncoderLayer, uses_p=False, normalize_before=True,
    description="softmax attention baseline, O(n^2)"))
register_mixer("linformer", MixerSpec(
    linformer.LinformerEncoderLayer, uses_p=False, normalize_before=True,
    description="Linformer, keys/values projected along the sequence, O(n k)",
    not_causal_because=linformer.NOT_CAUSAL,
    shared_module_fields=("shared_projection",),
    shared_modules=linformer.shared_modules, layer_kwargs=linformer.layer_kwargs))
for _name, _layer, _what in (
    ("lightconv", convolution.LightConvEncoderLayer, "lightweight convolution, O(n K)"),
    ("dynamicconv", convolution.DynamicConvEncoderLayer, "dynamic convolution, O(n K)"),
):
  register_mixer(_name, MixerSpec(
      _layer, uses_p=False, normalize_before=False, description=_what,
      extra_options=("kernel_sizes",), layer_kwargs=convolution.layer_kwargs))
