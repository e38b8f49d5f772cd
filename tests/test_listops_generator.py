"""The ListOps generator: labels re-evaluated independently, LRA's bounds, seeding."""

import numpy as np

from luna_jax.data import listops, readers, vocab


def evaluate_tokens(tokens: list[str]) -> int:
  """An evaluator written for the test: a stack machine over LRA's token stream."""
  stack = [[]]
  for tok in tokens:
    if tok.startswith("["):
      stack.append([tok])
    elif tok == "X":
      op, *values = stack.pop()
      if op == "[MIN":
        result = min(values)
      elif op == "[MAX":
        result = max(values)
      elif op == "[MED":
        ordered = sorted(values)
        mid = len(ordered) // 2
        result = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) // 2
      else:
        assert op == "[SM"
        result = sum(values) % 10
      stack[-1].append(result)
    else:
      stack[-1].append(int(tok))
  assert len(stack) == 1 and len(stack[0]) == 1
  return stack[0][0]


def test_labels_match_an_independent_evaluator_and_lengths_are_in_bounds():
  examples = list(listops.generate(40, seed=3))
  assert len({s for s, _ in examples}) == 40
  for source, label in examples:
    tokens = vocab.listops_tokens(source)
    assert 500 < len(tokens) < 2000
    assert evaluate_tokens(tokens) == label
    assert source.count("(") == source.count(")")


def test_string_form_is_lras_left_nested_pairs():
  assert listops.to_string(("[MAX", [2, 9])) == "( ( ( [MAX 2 ) 9 ) ] )"
  assert listops.evaluate(("[MED", [1, 8, 4, 2])) == 3  # int(median) truncates 3.0
  assert listops.evaluate(("[SM", [9, 8])) == 7


def test_same_seed_same_data_other_seed_other_data(tmp_path):
  a = listops.write_release(tmp_path / "a", {"train": 6, "val": 2, "test": 2}, seed=1)
  b = listops.write_release(tmp_path / "b", {"train": 6, "val": 2, "test": 2}, seed=1)
  c = listops.write_release(tmp_path / "c", {"train": 6, "val": 2, "test": 2}, seed=2)
  for name in listops.SPLIT_FILES.values():
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()
  rows = list(readers.read_listops_tsv(a / "basic_train.tsv"))
  assert len(rows) == 6 and all(evaluate_tokens(vocab.listops_tokens(s)) == t for s, t in rows)
  # Splits are disjoint.
  train = {s for s, _ in rows}
  test = {s for s, _ in readers.read_listops_tsv(a / "basic_test.tsv")}
  assert not train & test


def test_tokens_have_a_fixed_vocabulary():
  ids = vocab.encode_listops("( ( ( [MAX 2 ) 9 ) ] )")
  np.testing.assert_array_equal(ids, [2, 8, 15, 5])  # [MAX=2, digit d = 6 + d, X = 5
  assert vocab.LISTOPS_VOCAB.size == 18 and vocab.LISTOPS_VOCAB.cls_id == 16


def test_any_number_of_workers_writes_the_same_files(tmp_path):
  sizes = {"train": 12, "val": 3, "test": 3}
  one = listops.write_release(tmp_path / "one", sizes, seed=3, workers=1)
  two = listops.write_release(tmp_path / "two", sizes, seed=3, workers=2)
  for name in listops.SPLIT_FILES.values():
    assert (one / name).read_bytes() == (two / name).read_bytes()


def test_a_repeated_tree_draws_again_so_examples_stay_distinct(monkeypatch):
  """Dedup in index order: force example 2 to repeat example 0's first draw."""
  original = listops._example

  def repeating(seed, index, attempt=0):
    if index == 2 and attempt == 0:
      return original(seed, 0, 0)[:2] + (0,)
    return original(seed, index, attempt)

  monkeypatch.setattr(listops, "_example", repeating)
  examples = list(listops.generate(4, seed=0, workers=1))
  assert len({s for s, _ in examples}) == 4
  assert examples[2][0] == original(0, 2, 1)[0]  # from its next attempt on
