"""WMT'14 English-German translation: Luna, LightConv, DynamicConv and the Transformer.

Prepare the data once (tensorflow-datasets' wmt14_translate/de-en; its download and
preparation need TensorFlow and a network), or from your own parallel files
train/valid/test.en and .de (e.g. fairseq's prepare-wmt14en2de.sh output, detokenised):
    python -m luna_jax.data prepare_translation tfds:wmt14_translate/de-en --src en \\
        --tgt de --out ~/wmt14_en_de --vocab_size 32000

Train (variant = the mechanism and size; every run shares the joint vocabulary and
label smoothing 0.1):
    python train.py --config configs/wmt14_en_de.py:luna --workdir runs/wmt_luna
    python train.py --config configs/wmt14_en_de.py:lightconv_big --workdir runs/wmt_lc
translation.max_tokens is the tokens of one update, over all devices and micro-batches
(padded rows x length); optimizer.grad_accum_steps splits it into micro-batches, which
saves memory and leaves the update as it is. Each recipe below states its update as
tokens per GPU x GPUs x fairseq's --update-freq, and sets grad_accum_steps to that
update-freq: on the authors' GPU count each device's micro-batch then holds their
per-GPU tokens. On fewer devices raise grad_accum_steps by the same factor (luna on one
GPU: --config.optimizer.grad_accum_steps=8) to keep that micro-batch size.
  luna: the authors' recipe (examples/luna/README.wmt.md in XuezheMax/fairseq-apollo):
    6 + 6 layers, d 512, 8 heads, FFN 2048, projection length 32, tied K/V
    (luna_base_tied; model.luna.tied_kv=False for luna_base_untied), shared embeddings,
    dropout, attention and activation dropout 0.1. Update: --max-tokens 8192 per GPU,
    --update-freq 1, on 8 GPUs ("Each experiment is conducted on 8 NVIDIA Tesla V100
    GPUs", the same README in its version at commit dfc46a0; the GPU count could not be
    read in the Luna paper's appendix here): 65,536 tokens (--max-sentences 1024 per GPU
    never binds: 8,192 tokens at length >= 8 are at most 1,024 rows). Apollo (lr 0.1,
    beta 0.9, eps 1e-4, constant rebound, L2 weight decay 1e-8), the milestone schedule
    (warm-up over 1,000 updates from 1e-5, lr x 0.1 at 300K and 450K updates, 500K in
    all), each parameter's gradient clipped to norm 0.1 (--clip-mode each), the best
    checkpoint by validation perplexity (translation.select=loss). Published BLEU: see
    the Luna paper's WMT'14 table (the figure is not in our reference notes).
  transformer: the base Transformer (6 + 6 layers, d 512, pre-LN) with Vaswani et al.
    (2017)'s batches of about 25,000 tokens (their 8 P100 GPUs, no accumulation), Adam
    (0.9, 0.98), lr 7e-4 = 512^-0.5 x 4000^-0.5, inverse-sqrt after 4,000 warm-up
    updates, 100K updates; published 27.3 BLEU for base (Vaswani et al. 2017) and 29.3
    for Transformer Big in Wu et al.'s setting.
  lightconv / dynamicconv: the paper's base models (7 encoder and 6 decoder layers,
    kernels 3 7 15 31 31 31 31, d 512, 8 heads, FFN 2048) on the transformer's batches
    and schedule (fairseq's README gives no WMT recipe for the base models). *_big: d
    1024, 16 heads, FFN 4096, dropout 0.3, weight dropout 0.1, fairseq's
    lightconv_wmt_en_de_big recipe (examples/pay_less_attention_paper/README.md: "one
    machine with 8 V100 GPUs", --max-tokens 3584 --update-freq 16, so 3,584 x 8 x 16 =
    458,752 tokens per update; Adam (0.9, 0.98), no clipping or weight decay; cosine
    schedule: warm-up over 10,000 updates from 1e-7 to 1e-3, then one cosine period of
    20,000 updates, 30K in all; fairseq's ends at --min-lr 1e-9, this one at 0).
    Published BLEU (Wu et al. 2019, big, newstest2014): DynamicConv 29.7, LightConv 28.9.
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


# The authors' updates: tokens per GPU x GPUs x --update-freq (sources: the docstring).
LUNA_TOKENS_PER_GPU, LUNA_GPUS, LUNA_UPDATE_FREQ = 8192, 8, 1
VASWANI_TOKENS = 25_000  # per update, on 8 GPUs without accumulation
CONV_BIG_TOKENS_PER_GPU, CONV_BIG_GPUS, CONV_BIG_UPDATE_FREQ = 3584, 8, 16


def get_config(variant: str = "luna"):
  c = base_config()
  c.task = "translation"  # trains objective=seq2seq, its own
  c.translation_dir = "~/wmt14_en_de"
  m, t, o = c.model, c.translation, c.optimizer
  m.num_layers, m.d_model, m.num_heads, m.ffn_dim = 6, 512, 8, 2048
  m.dropout, m.attention_dropout, m.activation_dropout = 0.1, 0.1, 0.0
  t.decoder_layers = 6
  t.max_source_len = t.max_target_len = 256
  t.max_tokens = VASWANI_TOKENS  # tokens per update (the transformer's; luna sets its own)
  t.vocab_size = 32000  # as prepared above (what a compile-only run assumes without data)
  t.share_embeddings = "all"
  t.beam_size, t.length_penalty = 4, 0.6
  t.select = "loss"  # the best checkpoint by validation perplexity
  o.learning_rate, o.warmup_steps, o.warmup_init_lr = 7e-4, 4000, 1e-7
  o.weight_decay = 0.0
  c.num_train_steps = 100_000
  c.log_every, c.eval_every, c.checkpoint_every = 100, 5000, 5000
  return apply_variant(c, variant or "luna", VARIANTS, __file__)


def _luna_model(c):
  c.model.name = "luna"
  lu = c.model.luna
  lu.proj_len, lu.tied_kv, lu.p_style = 32, True, "seq2seq"
  c.model.activation_dropout = 0.1


def luna(c):
  """The authors' WMT recipe (see the module docstring): 6 + 6 layers, l = 32, tied K/V,
  Apollo with the milestone schedule, 8,192 tokens x 8 GPUs per update, 500K updates."""
  _luna_model(c)
  c.translation.max_tokens = LUNA_TOKENS_PER_GPU * LUNA_GPUS * LUNA_UPDATE_FREQ
  o = c.optimizer
  o.grad_accum_steps = LUNA_UPDATE_FREQ
  o.name, o.learning_rate = "apollo", 0.1  # --optimizer apollo --lr 0.1
  o.apollo.beta, o.apollo.eps = 0.9, 1e-4  # --apollo-beta 0.9 --apollo-eps 1e-4
  o.apollo.rebound = "constant"
  o.weight_decay, o.apollo.weight_decay_type = 1e-8, "L2"  # --weight-decay-type 'L2'
  o.schedule, o.milestones, o.gamma = "milestone", (300_000, 450_000), 0.1
  o.warmup_steps, o.warmup_init_lr = 1000, 1e-5  # --warmup-updates, --warmup-init-lr
  o.grad_clip_norm, o.clip_mode = 0.1, "each"  # --clip-norm 0.1 --clip-mode 'each'
  c.num_train_steps = 500_000  # --max-update
  c.translation.select = "loss"  # --best-checkpoint-metric ppl


def transformer(c):
  c.model.name = "transformer"


def _conv(name: str, big: bool):
  def variant(c):
    m, t, o = c.model, c.translation, c.optimizer
    m.name = name
    m.num_layers, t.decoder_layers = 7, 6
    block = m[name]
    block.kernel_sizes = (3, 7, 15, 31, 31, 31, 31)
    block.weight_dropout = 0.1
    if big:
      m.d_model, m.num_heads, m.ffn_dim, m.dropout = 1024, 16, 4096, 0.3
      t.max_tokens = CONV_BIG_TOKENS_PER_GPU * CONV_BIG_GPUS * CONV_BIG_UPDATE_FREQ
      o.grad_accum_steps = CONV_BIG_UPDATE_FREQ
      o.schedule, o.learning_rate = "cosine", 1e-3  # --lr-scheduler cosine --max-lr 1e-3
      o.warmup_steps, o.warmup_init_lr = 10_000, 1e-7
      c.num_train_steps = 30_000  # 10K warm-up + one 20K-update cosine period
  variant.__doc__ = f"{name}, {'big' if big else 'base'} (Wu et al. 2019)."
  return variant


def cpu(c):
  """Luna-8 on the generated reordering task, 2 + 2 layers of width 64, on 2 CPU cores
  (Adam with the inverse-sqrt schedule, not the WMT recipe's Apollo)."""
  _luna_model(c)
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
