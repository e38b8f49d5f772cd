"""Command line: python -m luna_jax.data prepare TASK --data_dir DIR [options]."""

from __future__ import annotations

import argparse
import logging
import sys

from luna_jax.data.build import prepare
from luna_jax import errors
from luna_jax.data.tasks import task_names


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m luna_jax.data",
                                   description="Prepare LRA task data (tfds, ArrayRecord).")
  commands = parser.add_subparsers(dest="command", required=True)
  p = commands.add_parser("prepare", help="build one task's dataset in --data_dir")
  p.add_argument("task", choices=task_names())
  p.add_argument("--data_dir", required=True, help="tfds data directory to write")
  p.add_argument("--source", choices=("generate", "release", "manual", "download"),
                 help="where the data comes from (default: release if --release_dir is "
                      "given, else the generator for ListOps/Pathfinder, else the archive "
                      "in the manual dir)")
  p.add_argument("--release_dir", help="the unpacked lra_release folder")
  p.add_argument("--manual_dir", help="folder holding aclImdb_v1.tar.gz / "
                                      "cifar-10-binary.tar.gz (default DATA_DIR/downloads/manual)")
  p.add_argument("--num_examples", type=int, help="generated training examples "
                 "(default: the official 96,000 for ListOps, 160,000 for Pathfinder)")
  p.add_argument("--num_eval_examples", type=int, help="generated validation and test "
                 "examples, each (default: the official proportion to the training "
                 "examples: ListOps 2,000 per 96,000, Pathfinder 1 per 8, as its 80/10/10)")
  p.add_argument("--seed", type=int, default=0, help="generator seed")
  p.add_argument("--difficulty", default="hard", help="Pathfinder: easy, intermediate, hard")
  p.add_argument("--overwrite", action="store_true", help="rebuild a prepared dataset")
  p.add_argument("--no_progress", action="store_true", help="no progress bar")
  p.add_argument("--workers", type=int, default=None, help="generating processes "
                 "(default: every core); the data is the same for any number")
  c = commands.add_parser("prepare_corpus", help="tokenise a text corpus for language "
                          "modelling into --out (task=corpus, corpus_dir=OUT)")
  c.add_argument("input", help="a .txt file (documents separated by blank lines), a folder "
                 "of .txt files (one document each), a .jsonl file, or tfds:NAME")
  c.add_argument("--out", required=True, help="the corpus folder to write")
  c.add_argument("--tokenizer", choices=("bytes", "sentencepiece"), default="bytes")
  c.add_argument("--vocab_size", type=int, default=8000, help="SentencePiece pieces")
  c.add_argument("--text_field", default="text", help="the document's field (.jsonl, tfds)")
  c.add_argument("--heldout_fraction", type=float, default=0.05, help="documents held out "
                 "for validation and again for test, when the input has no splits")
  c.add_argument("--seed", type=int, default=0)
  c.add_argument("--tfds_data_dir", help="tfds data directory for tfds:NAME")
  t = commands.add_parser("prepare_translation", help="tokenise parallel text for "
                          "translation into --out (task=translation, translation_dir=OUT)")
  t.add_argument("input", help="a folder of train/valid/test.SRC and .TGT files (one "
                 "sentence per line), or tfds:NAME (e.g. tfds:wmt14_translate/de-en)")
  t.add_argument("--src", required=True, help="source language suffix / tfds field")
  t.add_argument("--tgt", required=True, help="target language suffix / tfds field")
  t.add_argument("--out", required=True, help="the folder to write")
  t.add_argument("--vocab_size", type=int, default=8000, help="joint SentencePiece pieces")
  t.add_argument("--tfds_data_dir", help="tfds data directory for tfds:NAME")
  args = parser.parse_args(argv)
  logging.basicConfig(level=logging.WARNING)
  if args.command == "prepare_corpus":
    return _prepare_corpus(args)
  if args.command == "prepare_translation":
    return _prepare_translation(args)
  try:
    path = prepare(args.task, args.data_dir, source=args.source, release_dir=args.release_dir,
                   manual_dir=args.manual_dir, num_examples=args.num_examples,
                   num_eval_examples=args.num_eval_examples, seed=args.seed,
                   difficulty=args.difficulty, overwrite=args.overwrite,
                   progress=not args.no_progress, workers=args.workers)
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"{args.task}: prepared in {path}")
  return 0


def _prepare_corpus(args) -> int:
  from luna_jax.data.corpus import prepare_corpus

  try:
    meta = prepare_corpus(args.input, args.out, tokenizer=args.tokenizer,
                          vocab_size=args.vocab_size, text_field=args.text_field,
                          heldout_fraction=args.heldout_fraction, seed=args.seed,
                          tfds_data_dir=args.tfds_data_dir)
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sizes = ", ".join(f"{k} {v['documents']} documents / {v['tokens']} tokens"
                    for k, v in meta["splits"].items())
  print(f"corpus ({meta['tokenizer']}, {meta['num_tokens']} tokens in the vocabulary) "
        f"prepared in {args.out}: {sizes}")
  return 0


def _prepare_translation(args) -> int:
  from luna_jax.data.translation import prepare_translation

  try:
    meta = prepare_translation(args.input, args.out, src=args.src, tgt=args.tgt,
                               vocab_size=args.vocab_size, tfds_data_dir=args.tfds_data_dir)
  except errors.UserError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  sizes = ", ".join(f"{k} {v['sentences']} pairs" for k, v in meta["splits"].items())
  print(f"parallel text ({meta['src']}-{meta['tgt']}, {meta['num_tokens']} joint pieces) "
        f"prepared in {args.out}: {sizes}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
