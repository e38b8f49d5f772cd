"""Translates sentences with a trained translation workdir (objective=seq2seq).

    python translate.py --workdir runs/translation_cpu < sources.txt > translations.txt
    python translate.py --workdir runs/wmt_luna --input newstest2014.en --output out.de \\
        [--checkpoint best|latest|STEP] [--beam_size 5] [--length_penalty 0.6]

One source sentence per line, raw text (the workdir's SentencePiece model tokenises it);
one translation per line out, in the same order: as many lines out as in. Lines end at
"\n" alone (a CRLF file's "\r\n" too); U+2028, U+0085, a form feed or a lone "\r"
belongs to its sentence. An empty (or blank) line gives an empty line. Input and output
are UTF-8. The configuration is read from the workdir, so the model is rebuilt exactly as
trained.
"""

import os
import sys

from absl import flags, logging

_WORKDIR = flags.DEFINE_string("workdir", None, "a train.py translation workdir",
                               required=True)
_CHECKPOINT = flags.DEFINE_string("checkpoint", "best", "best, latest, or a step number")
_INPUT = flags.DEFINE_string("input", "-", "source sentences, one per line (- : stdin)")
_OUTPUT = flags.DEFINE_string("output", "-", "translations, one per line (- : stdout)")
_BEAM = flags.DEFINE_integer("beam_size", None, "beam size (default: the config's)")
_LENPEN = flags.DEFINE_float("length_penalty", None, "length penalty (default: config's)")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  from luna_jax.data.lines import join_lines, one_line, split_lines
  from luna_jax.training.evaluate import load_run_and_params
  from luna_jax.training.translate import translate_sentences

  overrides = {k: v for k, v in (("beam_size", _BEAM.value),
                                 ("length_penalty", _LENPEN.value)) if v is not None}
  from luna_jax import errors

  trainer, params = load_run_and_params(_WORKDIR.value, _CHECKPOINT.value,
                                        translation_overrides=overrides)
  if _INPUT.value == "-":
    data = sys.stdin.buffer.read()
  elif not os.path.isfile(_INPUT.value):
    raise errors.MissingDataError(f"--input {_INPUT.value} does not exist.")
  else:
    with open(_INPUT.value, "rb") as f:
      data = f.read()
  try:
    sentences = split_lines(data.decode("utf-8"))
  except UnicodeDecodeError as e:
    raise errors.DataError(f"--input {_INPUT.value} is not UTF-8 text ({e}).") from None
  translations, truncated = translate_sentences(trainer, params, sentences)
  result = join_lines(one_line(t) for t in translations).encode("utf-8")
  if _OUTPUT.value == "-":
    sys.stdout.buffer.write(result)
    sys.stdout.buffer.flush()
  else:
    with open(_OUTPUT.value, "wb") as f:
      f.write(result)
  if truncated:
    print(f"{truncated} of {len(sentences)} sources were longer than max_source_len="
          f"{trainer.run.config.translation.max_source_len} tokens and were truncated.",
          file=sys.stderr)


if __name__ == "__main__":
  from luna_jax import cli

  cli.run(main)
