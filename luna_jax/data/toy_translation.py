"""A generated translation task that needs reordering and alignment, for offline runs.

The source language is subject-verb-object with adjectives before their noun:

    the red old cat sees 3 small dogs

The target language translates every word through a fixed invented lexicon, puts the
adjectives after their noun in reverse order, and the verb at the end (subject-object-
verb); numbers are copied as they are:

    ka mirun tela vosi 3 dalu pefo ranite

So a model must translate words (alignment), move them (reordering) and copy numbers;
copying the source scores a low BLEU (only numbers and their n-grams match). Everything
is a function of the seed: the lexicon of `seed`, sentence i of a split from
(seed, split, i).
"""

from __future__ import annotations

import pathlib

import numpy as np

from luna_jax.data import lines

NOUNS = ("cat dog bird fish horse cow sheep goat mouse lion tiger bear wolf fox deer "
         "frog duck owl crow bee ant snake whale seal crab king queen child farmer "
         "teacher doctor baker sailor singer painter pilot judge poet monk").split()
ADJECTIVES = ("red blue green old young small big tall short happy sad quick slow "
              "loud quiet brave shy wise calm wild").split()
VERBS = ("sees likes feeds chases finds helps paints calls follows meets hears "
         "visits greets watches carries pushes teaches thanks knows loves").split()
DETERMINERS = ("the a this").split()
_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
SPLIT_SIZES_SEEDS = {"train": 0, "valid": 1, "test": 2}


def lexicon(seed: int = 0) -> dict[str, str]:
  """Source word -> an invented target word of 2-3 syllables (one-to-one)."""
  rng = np.random.default_rng([seed, 99])
  words = NOUNS + ADJECTIVES + VERBS + DETERMINERS
  out, used = {}, set()
  for w in words:
    while True:
      n = 1 if w in DETERMINERS else int(rng.integers(2, 4))
      t = "".join(_SYLLABLES[int(i)] for i in rng.integers(0, len(_SYLLABLES), n))
      if t not in used and t not in words:
        break
    used.add(t)
    out[w] = t
  return out


def _noun_phrase(rng) -> tuple[list[str], list[str]]:
  """(source words, their target order's source words): det adj* [num] noun."""
  det = [DETERMINERS[int(rng.integers(len(DETERMINERS)))]] if rng.random() < 0.7 else []
  adjs = [ADJECTIVES[int(i)] for i in rng.choice(len(ADJECTIVES), int(rng.integers(0, 3)),
                                                 replace=False)]
  num = [str(int(rng.integers(2, 100)))] if rng.random() < 0.3 else []
  noun = [NOUNS[int(rng.integers(len(NOUNS)))]]
  return det + num + adjs + noun, det + num + noun + adjs[::-1]


def sentence_pair(rng, lex: dict[str, str]) -> tuple[str, str]:
  subject, subject_t = _noun_phrase(rng)
  verb = VERBS[int(rng.integers(len(VERBS)))]
  obj, obj_t = _noun_phrase(rng)
  source = subject + [verb] + obj
  target = [lex.get(w, w) for w in subject_t + obj_t + [verb]]
  return " ".join(source), " ".join(target)


def write_parallel_text(folder, sizes: dict[str, int], seed: int = 0,
                        src: str = "src", tgt: str = "tgt") -> pathlib.Path:
  """Writes train/valid/test.{src,tgt} (sizes: {"train": n, "valid": n, "test": n})."""
  folder = pathlib.Path(folder).expanduser()
  folder.mkdir(parents=True, exist_ok=True)
  lex = lexicon(seed)
  for split, n in sizes.items():
    rng = np.random.default_rng([seed, SPLIT_SIZES_SEEDS[split]])
    pairs = [sentence_pair(rng, lex) for _ in range(n)]
    lines.write_lines(folder / f"{split}.{src}", [s for s, _ in pairs])
    lines.write_lines(folder / f"{split}.{tgt}", [t for _, t in pairs])
  return folder
