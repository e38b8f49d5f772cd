"""WMT'14 English-German translation: Luna, LightConv, DynamicConv and the Transformer.

Prepare the data once (tensorflow-datasets' wmt14_translate/de-en; its download and
preparation need TensorFlow and a network), or from your own parallel files
train/valid/test.en and .de (e.g. fairseq's prepare-wmt14en2de.sh output, detokenised):
    python -m luna_jax.data prepare_translation tfds:wmt14_translate/de-en --src en \\
        --tgt de --out ~/wmt14_en_de --vocab_size 32000

Train (variant = the mechanism and size; every run shares the joint vocabulary,
label smoothing 0.1, Adam (0.9, 0.98) and inverse-sqrt warm-up):
    python train.py --config configs/wmt14_en_de.py:luna --workdir runs/wmt_luna
    python train.py --config configs/wmt14_en_de.py:lightconv_big --workdir runs/wmt_lc
  luna: the authors' recipe (examples/luna/README.wmt.md in XuezheMax/fairseq-apollo):
    6 + 6 layers, d 512, 8 heads, FFN 2048, projection length 32, tied K/V
    (luna_base_tied; model.luna.tied_kv=False for luna_base_untied), shared embeddings,
    dropout, attention and activation dropout 0.1, 8,192 tokens per batch. They trained
    with the Apollo optimiser (lr 0.1, 500k updates), which luna-jax does not have: this
    config uses Adam with fairseq's Transformer schedule instead. Published BLEU: see the
    Luna paper's WMT'14 table (the figure is not in our reference notes).
  lightconv / dynamicconv: the paper's base models (7 encoder and 6 decoder layers,
    kernels 3 7 15 31 31 31 31, d 512, 8 heads, FFN 2048); *_big: d 1024, 16 heads, FFN
    4096, dropout 0.3, weight dropout 0.1 (fairseq's lightconv_wmt_en_de_big recipe:
    30k updates of 3,584 x 128 tokens, cosine schedule, lr 1e-3). Published BLEU
    (Wu et al. 2019, big, newstest2014): DynamicConv 29.7, LightConv 28.9.
  transformer: the base Transformer (6 + 6 layers, d 512, pre-LN); published 27.3 for
    base (Vaswani et al. 2017) and 29.3 for Transformer Big in Wu et al.'s setting.
  None of these has been trained here: they need an accelerator (no GPU was lent).
  The published figures are tokenised BLEU with German compounds split: compare them
  with summary.json's test_tokenized_bleu (its method in tokenized_bleu_method), not
  with test_bleu (sacreBLEU, signature in bleu_signature).

CPU variant (offline: generates a reordering task, data/toy_translation.py, in
~/translation_cpu on first use):
    python train.py --config configs/wmt14_en_de.py:cpu --workdir runs/translation_cpu
  Writes test_bleu and copy_bleu to summary.json. Measured on the 2-core CPU: test BLEU
  96.58 against a copy BLEU of 0.08 (test perplexity 1.148), in 1 min 49 s including
  generating and preparing the data; docs/translation.md compares the other mixers.
"""

from luna_jax.training.config import base_config
from luna_jax.training.variants import apply_variant


def get_config(variant: str = "luna"):
  c = base_config()
  c.task = "translation"  # trains objective=seq2seq, its own
  c.translation_dir = "~/wmt14_en_de"
  m, t, o = c.model, c.translation, c.optimizer
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim = 6, 512, 8, 2048
  m.dropout, m.attention_dropout, m.activation_dropout = 0.1, 0.1, 0.0
  t.decoder_layers = 6
  t.max_source_len = t.max_target_len = 256
  t.max_tokens = 8192
  t.vocab_size = 32000  # as prepared above (what a compile-only run assumes without data)
  t.share_embeddings = "all"
  t.beam_size, t.length_penalty = 4, 0.6
  o.learning_rate, o.warmup_steps, o.warmup_init_lr = 7e-4, 4000, 1e-7
  o.weight_decay = 0.0
  c.num_train_steps = 100_000
  c.log_every, c.eval_every, c.checkpoint_every = 100, 5000, 5000
  return apply_variant(c, variant or "luna", VARIANTS, __file__)


def luna(c):
  """The authors' WMT recipe (see the module docstring): 6 + 6 layers, l = 32, tied K/V."""
  c.model.name = "luna"
  lu = c.model.luna
  lu.proj_len, lu.tied_kv, lu.p_style = 32, True, "seq2seq"
  c.model.activation_dropout = 0.1


def transformer(c):
  c.model.name = "transformer"


def _conv(name: str, big: bool):
  def variant(c):
    m, t = c.model, c.translation
    m.name = name
    m.num_layers, t.decoder_layers = 7, 6
    block = m[name]
    block.kernel_sizes = (3, 7, 15, 31, 31, 31, 31)
    block.weight_dropout = 0.1
    if big:
      m.d_model, m.num_heads, m.ffn_dim, m.dropout = 1024, 16, 4096, 0.3
      t.max_tokens = 3584 * 16  # fairseq's 3,584 tokens x update-freq 16 per GPU step
      c.optimizer.learning_rate = 1e-3
      c.num_train_steps = 30_000
  variant.__doc__ = f"{name}, {'big' if big else 'base'} (Wu et al. 2019)."
  return variant


def cpu(c):
  """Luna-8 on the generated reordering task, 2 + 2 layers of width 64, on 2 CPU cores."""
  luna(c)
  m, t, o = c.model, c.translation, c.optimizer
  c.translation_dir = "~/translation_cpu"
  t.generate, t.generate_eval, t.vocab_size = 20_000, 300, 400
  t.max_source_len = t.max_target_len = 48
  t.max_tokens = 2048
  m.num_layers, t.decoder_layers = 2, 2
  m.d_model, m.num_heads, m.ffn_dim = 64, 4, 256
  m.luna.proj_len = 8
  m.dropout = m.attention_dropout = m.activation_dropout = 0.0
  o.learning_rate, o.warmup_steps = 3e-3, 100
  t.beam_size = 4
  t.val_bleu_sentences = 100
  c.num_train_steps = 1000
  c.log_every, c.eval_every, c.checkpoint_every = 50, 250, 250


VARIANTS = {"luna": luna, "transformer": transformer,
            "lightconv": _conv("lightconv", False), "lightconv_big": _conv("lightconv", True),
            "dynamicconv": _conv("dynamicconv", False),
            "dynamicconv_big": _conv("dynamicconv", True), "cpu": cpu}
