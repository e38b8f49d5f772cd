"""What a mixer registers: its `MixerSpec` under a name, and the table of them.

A mixer is one module of this package: its attention, its layer, its settings dataclass
(with their defaults) and its check, ending with one `register_mixer` line. The encoder
builds its layers from the record; the training config makes the `model.<name>` block from
its settings and validates a run with its check. Nothing else names a mixer.

The table is complete whenever code outside this package reads it: Python runs
`luna_jax/mixers/__init__.py`, which imports (and so registers) every built-in mixer,
before this module, and this module imports no mixer. Read it through `luna_jax.registry`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

from luna_jax import layers


@dataclasses.dataclass(frozen=True)
class RunShape:
  """What a mixer's settings may follow or be checked against.

  Attributes:
    max_len: the longest input, in tokens (the config's max_len); None where it is not
      known (an `Encoder` built directly sees one batch at a time).
    num_layers, d_model, num_heads: the encoder stack's depth, width and heads.
    causal: an autoregressive stack.
  """

  max_len: Optional[int]
  num_layers: int
  d_model: int
  num_heads: int
  causal: bool = False


@dataclasses.dataclass(frozen=True)
class MixerSpec:
  """How the encoder and the config build, check and drive one kind of layer.

  Attributes:
    layer: the Linen layer class: a `layers.LayerBase` subclass with its call interface.
    settings: a frozen dataclass of the mixer's own settings, each with its default. Its
      fields are the accepted `Encoder(mixer_options=...)` keys and the config's
      `model.<name>` block (a None default there stays settable from the command line).
    normalize_before: the mixer's default LayerNorm placement (True = pre-LN).
    derived: {setting: run -> value} for settings that follow the run when left None
      (Linformer's max_len follows the config's max_len).
    check: (settings, run) -> None; raises ValueError for an unusable combination, its
      message starting with the setting's name ("p_init='x' is not one of ..."). The
      encoder runs it, and the config's `validate` before anything is compiled (as
      "invalid config: model.<name>.<message>").
    layer_fields: (settings, layer index) -> the layer's own keyword arguments; None
      passes every setting that is a field of `layer`.
    shared_modules: (encoder, settings) -> {layer field: module}, created once in the
      encoder's scope and handed to every layer, so their parameters are shared.
    p_for_layer: for mixers that thread a second sequence P beside X (Luna): (encoder,
      settings, layer index, previous P or None, x_BxNxD, mask_BxN, *, deterministic) ->
      (P, p_mask_BxL or None) for that layer. It runs in the encoder's scope: parameters
      it creates are the encoder's. None: the layers get P = None.
    final_p: (encoder, settings, P) -> P after a pre-LN stack (its final LayerNorm);
      None leaves P as the last layer returned it.
    cross_attention: the encoder-decoder attention of this mixer's decoder layers
      (`luna_jax.models.seq2seq`): a
      `luna_jax.layers.CrossAttentionBase` subclass (its call returns (y_x, y_p or None,
      the source-only tensors decoding reuses)), built with num_heads,
      attention_dropout, init_style, dtype, param_dtype and the mixer's settings as
      `settings`. A y_p that is not None updates the decoder's P (Luna). None: the
      default one (`register_cross_attention`: softmax multi-head attention over the
      encoder output); `cross_attention(name)` gives the one to build.
    decoder_p: (settings, encoder P, memory_mask_BxM) -> (P, p_mask_BxL or None): the P
      the decoder's layers start from (Luna: the encoder's final P). None: no P.
    decoder_self_settings: settings -> the settings of a decoder layer's causal
      self-mixing, for settings that belong to its cross-attention alone (Luna's
      pack_heads: the authors' decoder_projected_attention_heads set the cross-attention's
      pack; their causal self-attention has none). None: the decoder's settings as they are.
    not_causal_because / no_decode_because: non-empty for mixers with no causal form or no
      step-by-step decoding; causal=True or decode=True then raises with the reason.
    softmax_path: for mixers with softmax self-attention: (settings, platform,
      dropout_active, dtype, head_dim) -> the attention path their layers take there
      ("cudnn", "chunked", ...; the Transformer's `attention_path`). None: no softmax.
    no_segments_because: non-empty for mixers whose layers cannot keep several documents
      of a row apart (Luna's pack and Linformer's projection mix the whole row); empty
      means the layer takes `segment_ids_BxN` (packed rows: positions attend only within
      their own segment).
  """

  layer: type
  settings: type
  normalize_before: bool
  derived: Mapping[str, Callable[[RunShape], Any]] = dataclasses.field(default_factory=dict)
  check: Optional[Callable[[Any, RunShape], None]] = None
  layer_fields: Optional[Callable[[Any, int], dict]] = None
  shared_modules: Optional[Callable[[Any, Any], dict]] = None
  p_for_layer: Optional[Callable[..., tuple]] = None
  final_p: Optional[Callable[[Any, Any, Any], Any]] = None
  cross_attention: Optional[type] = None
  decoder_p: Optional[Callable[..., tuple]] = None
  decoder_self_settings: Optional[Callable[[Any], Any]] = None
  not_causal_because: str = ""
  no_decode_because: str = ""
  no_segments_because: str = "its layer does not take segment ids."
  softmax_path: Optional[Callable[..., str]] = None

  def __post_init__(self):
    if not issubclass(self.layer, layers.LayerBase):
      raise TypeError(f"{self.layer.__name__} must subclass luna_jax.layers.LayerBase.")
    if not dataclasses.is_dataclass(self.settings):
      raise TypeError(f"settings must be a dataclass, got {self.settings!r}.")
    unknown = set(self.derived) - set(self.setting_names())
    if unknown:
      raise ValueError(f"derived names {sorted(unknown)}, which are not settings.")

  def setting_names(self) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(self.settings))

  def fields_for_layer(self, settings, index: int) -> dict:
    """The layer's own keyword arguments for layer `index` of the stack."""
    if self.layer_fields is not None:
      return self.layer_fields(settings, index)
    own = {f.name for f in dataclasses.fields(self.layer)}
    return {k: v for k, v in dataclasses.asdict(settings).items() if k in own}


_MIXERS: dict[str, MixerSpec] = {}
_default_cross_attention: Optional[type] = None  # see register_cross_attention


def register_mixer(name: str, spec: MixerSpec) -> None:
  if name in _MIXERS:
    raise ValueError(f"mixer {name!r} is already registered.")
  _MIXERS[name] = spec


def unregister_mixer(name: str) -> None:
  """Undoes `register_mixer` (for tests and notebooks that register a mixer of their own)."""
  get_mixer(name)
  del _MIXERS[name]


def mixer_names() -> tuple[str, ...]:
  return tuple(_MIXERS)


def get_mixer(name: str) -> MixerSpec:
  try:
    return _MIXERS[name]
  except KeyError:
    raise ValueError(
        f"unknown mixer {name!r}; choose one of: {', '.join(_MIXERS)}."
    ) from None


def register_cross_attention(cls: type) -> None:
  """Sets the default encoder-decoder attention: the one of every mixer whose spec has no
  `cross_attention` (`luna_jax.mixers.transformer` registers its softmax attention)."""
  if not issubclass(cls, layers.CrossAttentionBase):
    raise TypeError(f"{cls.__name__} must subclass luna_jax.layers.CrossAttentionBase.")
  global _default_cross_attention
  if _default_cross_attention is not None:
    raise ValueError("the default cross-attention is already "
                     f"{_default_cross_attention.__name__}.")
  _default_cross_attention = cls


def cross_attention(name: str) -> type:
  """The encoder-decoder attention class of mixer `name`'s decoder layers: its spec's
  `cross_attention`, else the default one."""
  own = get_mixer(name).cross_attention
  if own is not None:
    return own
  if _default_cross_attention is None:
    raise ValueError(f"mixer {name!r} has no cross_attention and no default is registered "
                     "(luna_jax.mixers.transformer registers it).")
  return _default_cross_attention


def make_settings(name: str, options: Any, run: RunShape):
  """The settings of mixer `name` for a run, checked.

  Args:
    options: a mapping of some settings (the rest keep their defaults; lists become
      tuples, as a config read back from JSON has them), or a settings object.
    run: what the derived settings follow and the check compares against.
  """
  spec = get_mixer(name)
  if isinstance(options, spec.settings):
    settings = options
  else:
    options = dict(options or {})
    unknown = set(options) - set(spec.setting_names())
    if unknown:
      raise ValueError(f"unknown mixer_options {sorted(unknown)} for mixer {name!r}; it "
                       f"accepts {list(spec.setting_names())}.")
    settings = spec.settings(**{k: tuple(v) if isinstance(v, list) else v
                                for k, v in options.items()})
  follow = {k: derive(run) for k, derive in spec.derived.items()
            if getattr(settings, k) is None}
  settings = dataclasses.replace(settings, **{k: v for k, v in follow.items() if v is not None})
  if spec.check is not None:
    spec.check(settings, run)
  return settings
