"""Shape rules for the code itself, read from the source with `ast`.

No function (a method, a nested function or a lambda) takes more than 6 positional
parameters: positional-only and ordinary ones, `self` and `cls` included; keyword-only
parameters (after `*`) and `*args` do not count. Past six, a call site is a row of
values whose meaning depends on their order; the rest go after `*`, named at every call.
"""

from __future__ import annotations

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]
MAX_POSITIONAL = 6


def sources() -> list[pathlib.Path]:
  return (sorted((ROOT / "luna_jax").rglob("*.py"))
          + [ROOT / name for name in ("train.py", "eval.py", "translate.py")]
          + sorted((ROOT / "benchmarks").glob("*.py")))


def positional_counts(tree: ast.AST) -> dict[str, int]:
  """{qualified name: positional parameters} for every function and lambda in tree
  (nested ones as outer.<locals>.inner, lambdas as <lambda>@line)."""
  counts = {}

  def visit(node, prefix):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        name = (f"<lambda>@{child.lineno}" if isinstance(child, ast.Lambda) else child.name)
        counts[prefix + name] = len(child.args.posonlyargs) + len(child.args.args)
        visit(child, f"{prefix}{name}.<locals>.")
      elif isinstance(child, ast.ClassDef):
        visit(child, f"{prefix}{child.name}.")
      else:
        visit(child, prefix)

  visit(tree, "")
  return counts


def over_the_limit() -> dict[str, int]:
  found = {}
  for path in sources():
    tree = ast.parse(path.read_text(), str(path))
    for name, count in positional_counts(tree).items():
      if count > MAX_POSITIONAL:
        found[f"{path.relative_to(ROOT).as_posix()}:{name}"] = count
  return found


def test_no_function_takes_more_than_six_positional_parameters():
  found = over_the_limit()
  assert not found, ("more than 6 positional parameters (make the rest keyword-only with "
                     f"`*` and name them at the call sites): {found}")


def test_the_count_takes_positional_parameters_only():
  tree = ast.parse(
      "def f(a, b, /, c, d=1, *args, e, f=2, **kw):\n"
      "  g = lambda x, y: x\n"
      "class C:\n"
      "  def m(self, a, *, b): pass\n"
      "  @classmethod\n"
      "  def k(cls, a, b, c, d, e, f): pass\n")
  assert positional_counts(tree) == {"f": 4, "f.<locals>.<lambda>@2": 2, "C.m": 2, "C.k": 7}
