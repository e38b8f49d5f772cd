"""The import graph among `luna_jax` modules has no cycle.

The graph is read from the source with `ast`, nothing is imported. Its nodes are the
modules of the package, a package standing for its `__init__.py` (`luna_jax.data` is
`luna_jax/data/__init__.py`). An edge A -> B is any import of B written in A:

- `import luna_jax.x.y` and `from luna_jax.x import y`, at top level or inside a function,
  a class or an `if` (a function-level import is an edge all the same: calling the
  function imports B, so A depends on B);
- `from luna_jax.x import y` points at `luna_jax.x.y` where y is a submodule, else at
  `luna_jax.x` (y is a name defined or re-exported by x's `__init__`), and relative
  imports (`from . import y`) are resolved the same way;
- `importlib.import_module(...)` with a string literal, or an f-string made of
  `{__name__}` and literals (`f"{__name__}.build"` in a package `__init__`).

Importing a package depends on its `__init__` only: `import luna_jax.data` is an edge to
`luna_jax.data`, not to the submodules that `__init__` may import (those are its own
edges). The parent packages Python runs before any submodule (`luna_jax/__init__.py` before
`luna_jax.layers`) are not edges: they always run first and the submodule does not use them,
so a package `__init__` importing its submodules is no cycle. A submodule that names its
parent package (`from luna_jax.data import get_task` in `luna_jax.data.x`, `get_task` not
a submodule) does depend on that `__init__`, and if the `__init__` imports the submodule
back, that is a cycle: the submodule may run while the `__init__` is half done.

Not seen: module names computed at run time (the lazy export table in
`luna_jax/__init__.py`, `import_module(f"{__name__}.{name}")`).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def module_names(package_dir: pathlib.Path) -> dict[str, pathlib.Path]:
  """{dotted module name: its file} for every module under package_dir (a package)."""
  names = {}
  for path in sorted(package_dir.rglob("*.py")):
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
      parts.pop()
    names[".".join(parts)] = path
  return names


def _is_package(name: str, modules: dict[str, pathlib.Path]) -> bool:
  return modules[name].name == "__init__.py"


def _resolve(name: str, modules: dict[str, pathlib.Path]) -> str | None:
  """The module that importing `name` runs: name itself, or the nearest module above it
  (`luna_jax.x.attr` -> `luna_jax.x`); None outside the package."""
  while name:
    if name in modules:
      return name
    name = name.rpartition(".")[0]
  return None


def _literal_module(node: ast.AST, module: str, is_package: bool) -> str | None:
  """The module name a string literal, or an f-string of `{__name__}` and literals,
  spells; None for anything computed."""
  if isinstance(node, ast.Constant) and isinstance(node.value, str):
    return node.value
  if isinstance(node, ast.JoinedStr):
    text = []
    for part in node.values:
      if isinstance(part, ast.Constant) and isinstance(part.value, str):
        text.append(part.value)
      elif (isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name)
            and part.value.id == "__name__" and part.format_spec is None):
        text.append(module)
      else:
        return None
    return "".join(text)
  return None


def _is_import_module(func: ast.AST) -> bool:
  if isinstance(func, ast.Attribute):
    return func.attr == "import_module"
  return isinstance(func, ast.Name) and func.id == "import_module"


def imports_of(module: str, modules: dict[str, pathlib.Path]) -> set[str]:
  """The modules of the package that `module` imports anywhere in its source."""
  is_package = _is_package(module, modules)
  package = module if is_package else module.rpartition(".")[0]
  tree = ast.parse(modules[module].read_text(), str(modules[module]))
  targets = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      targets += [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      if node.level:
        base = package.split(".")
        base = base[:len(base) - (node.level - 1)]
        source = ".".join(base + ([node.module] if node.module else []))
      else:
        source = node.module
      for alias in node.names:
        submodule = f"{source}.{alias.name}"
        targets.append(submodule if submodule in modules else source)
    elif isinstance(node, ast.Call) and _is_import_module(node.func) and node.args:
      name = _literal_module(node.args[0], module, is_package)
      if name is not None and not name.startswith("."):
        targets.append(name)
  resolved = {_resolve(t, modules) for t in targets}
  return {t for t in resolved if t is not None and t != module}


def import_graph(package_dir: pathlib.Path) -> dict[str, set[str]]:
  modules = module_names(package_dir)
  return {name: imports_of(name, modules) for name in modules}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
  """One cycle (a list of modules, first repeated at the end) through each strongly
  connected component of more than one module (Tarjan's algorithm, then a search for a
  way back to the component's first module inside it)."""
  index, low, stack, on_stack, components = {}, {}, [], set(), []

  def connect(v):  # recursion depth is bounded by the number of modules
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        connect(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        components.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      connect(v)

  found = []
  for component in sorted(components):
    inside, start = set(component), component[0]
    paths, seen = [[start]], {start}
    while paths:  # breadth first: the shortest cycle through `start`
      path = paths.pop(0)
      nexts = sorted(graph[path[-1]] & inside)
      if start in nexts:
        found.append(path + [start])
        break
      for w in nexts:
        if w not in seen:
          seen.add(w)
          paths.append(path + [w])
  return found


def _describe(found: list[list[str]]) -> str:
  return "import cycles:\n" + "\n".join("  " + " -> ".join(c) for c in found)


def test_luna_jax_has_no_import_cycle():
  found = cycles(import_graph(ROOT / "luna_jax"))
  assert not found, _describe(found)


def test_the_data_package_imports_no_jax():
  """The registry is filled by importing it (`luna_jax.registry` imports the mixers), not
  by `luna_jax/__init__.py`: a data generator's spawned worker, which imports
  luna_jax.data, does not load JAX and Flax (about 2 s and 170 MB each)."""
  code = ("import sys, luna_jax, luna_jax.data, luna_jax.data.pathfinder\n"
          "print(sorted(m for m in ('jax', 'flax', 'luna_jax.mixers') if m in sys.modules))")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=ROOT, check=True)
  assert out.stdout.strip() == "[]", out.stderr


def _write(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
  return root / "pkg"


def test_the_checker_finds_cycles_of_every_kind_of_import(tmp_path):
  package = _write(tmp_path, {
      "pkg/__init__.py": "",
      "pkg/a.py": "from pkg import b\n",
      "pkg/b.py": "def f():\n  from pkg.c import thing\n",  # function level
      "pkg/c.py": "import importlib\nimportlib.import_module('pkg.a')\n",
      "pkg/sub/__init__.py": "from pkg.sub.child import x\n",
      "pkg/sub/child.py": "from pkg.sub import y\n",  # y is the __init__'s name
      "pkg/sub/lazy.py": "from . import other\n",
      "pkg/sub/other.py": "import importlib\n"
                          "def f():\n  importlib.import_module(f'{__name__}x')\n",
      "pkg/sub/otherx.py": "from .lazy import z\n",
  })
  graph = import_graph(package)
  assert graph["pkg.a"] == {"pkg.b"} and graph["pkg.b"] == {"pkg.c"}
  assert graph["pkg.sub.child"] == {"pkg.sub"}
  assert graph["pkg.sub.lazy"] == {"pkg.sub.other"}
  assert graph["pkg.sub.other"] == {"pkg.sub.otherx"}
  assert cycles(graph) == [["pkg.a", "pkg.b", "pkg.c", "pkg.a"],
                           ["pkg.sub", "pkg.sub.child", "pkg.sub"],
                           ["pkg.sub.lazy", "pkg.sub.other", "pkg.sub.otherx",
                            "pkg.sub.lazy"]]
  with pytest.raises(AssertionError, match="pkg.a -> pkg.b -> pkg.c -> pkg.a"):
    assert not cycles(graph), _describe(cycles(graph))


def test_a_package_importing_its_submodules_is_no_cycle(tmp_path):
  package = _write(tmp_path, {
      "pkg/__init__.py": "from pkg import a\nfrom pkg.b import f\n",
      "pkg/a.py": "from pkg import b\n",  # b is a submodule: no edge to pkg's __init__
      "pkg/b.py": "import pkg.c\n",
      "pkg/c.py": "def f():\n  from pkg.c import g\n",  # itself: no edge
  })
  graph = import_graph(package)
  assert graph == {"pkg": {"pkg.a", "pkg.b"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"},
                   "pkg.c": set()}
  assert cycles(graph) == []
