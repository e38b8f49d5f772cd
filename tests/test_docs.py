"""The README and docs/ show commands that still run, checked without running them.

Every command in a fenced shell block, and every inline `python ...` command, of README.md
and docs/*.md is parsed as its script would parse it: train.py, eval.py and translate.py
with their absl flags rebuilt from their source into a fresh FlagValues, the config loaded
by ml_collections exactly as train.py loads it (file, `:variant`, every `--config.x=y`
against the locked config); `python -m luna_jax.data` and the benchmarks with their
argparse parsers rebuilt from their source (subcommands, options, positionals, types,
literal choices); `bash benchmarks/*.sh` options and `pip install '.[extra]'` extras
against the script and pyproject.toml. Nothing trains. The relative links and the repository paths the pages
name must exist, and the README stays an overview: at most 200 lines, two one-line
commands in its Quick start, the second the one CI runs (.ci/run's awk line).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import functools
import io
import pathlib
import re
import shlex
import shutil
import subprocess
import tomllib

import pytest
from absl import flags
from ml_collections import config_flags

from luna_jax import cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200
SHELL_LANGUAGES = {"bash", "sh", "shell", "console"}
# Paths the README names before they land (the workloads, being built beside this work).
_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)


def _rel(path: pathlib.Path) -> str:
  return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


# --- Collecting the commands ------------------------------------------------------------


def _prose(text: str) -> str:
  """The page without its fenced blocks (kept as blank lines, so line numbers hold)."""
  return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def page_commands(path: pathlib.Path) -> list[tuple[str, str]]:
  """(where, command) for each shell command of a page: a line of a fenced bash block
  (continuations joined), or an inline code span that starts with `python`/`bash`."""
  text = path.read_text()
  found = []
  for m in _FENCE.finditer(text):
    if m.group(1) not in SHELL_LANGUAGES:
      continue
    first = text.count("\n", 0, m.start(2)) + 1
    for offset, line in enumerate(m.group(2).replace("\\\n", " ").splitlines()):
      if line.strip() and not line.lstrip().startswith("#"):
        found.append((f"{_rel(path)}:{first + offset}", line.strip()))
  prose = _prose(text)
  for m in re.finditer(r"`([^`]+)`", prose):
    span = " ".join(m.group(1).split())
    if re.match(r"(python3?|bash) ", span) and not re.fullmatch(r"python3? -m [\w.]+", span):
      # (`python -m luna_jax.data` alone names the tool)
      found.append((f"{_rel(path)}:{prose.count(chr(10), 0, m.start()) + 1}", span))
  return found


def all_commands() -> list[tuple[str, str]]:
  return [c for page in PAGES for c in page_commands(page)]


def _simple_commands(command: str) -> list[list[str]]:
  """The simple commands of a shell line (split at &&, ||, ;, |), without comments,
  redirections and leading VAR=value assignments."""
  lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
  lexer.whitespace_split = True
  commands, current, tokens = [], [], iter(lexer)
  for token in tokens:
    if token in ("&&", "||", ";", "|", "&"):
      commands.append(current)
      current = []
    elif token in ("<", ">", ">>", "2>", "&>"):
      next(tokens, None)
    elif not current and re.fullmatch(r"[A-Za-z_]\w*=.*", token):
      continue
    else:
      current.append(token)
  commands.append(current)
  return [c for c in commands if c]


# --- Rebuilding the scripts' parsers ----------------------------------------------------


def _literal(node):
  try:
    return ast.literal_eval(node)
  except (ValueError, TypeError, SyntaxError):
    return None


def _kwargs(call: ast.Call, keep) -> dict:
  return {k.arg: _literal(k.value) for k in call.keywords
          if k.arg in keep and _literal(k.value) is not None}


@functools.cache
def absl_flags(script: str) -> tuple[list[tuple], tuple | None]:
  """The `flags.DEFINE_*` calls of an absl script as (kind, name, default, enum_values,
  required), and its config flag (name, default) if it has one."""
  defined, config = [], None
  for node in ast.walk(ast.parse((ROOT / script).read_text())):
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and node.func.attr.startswith("DEFINE_")):
      continue
    kind, args = node.func.attr[len("DEFINE_"):], [_literal(a) for a in node.args]
    if kind == "config_file":
      config = (args[0], args[1])
    else:
      enum_values = args[2] if kind == "enum" else None
      defined.append((kind, args[0], args[1], enum_values,
                      _kwargs(node, {"required"}).get("required", False)))
  return defined, config


def _absolute_config(value: str) -> str:
  path, _, variant = value.partition(":")
  return str(ROOT / path) + (f":{variant}" if variant else "")


def check_absl(script: str, args: list[str]) -> list[str]:
  """Parses args as the script's absl flags and its config flag would (no training)."""
  defined, config = absl_flags(script)
  argv = [script]
  for i, arg in enumerate(args):  # the config file relative to the repository root
    if config and re.fullmatch(rf"--{config[0]}=.*", arg):
      arg = f"--{config[0]}={_absolute_config(arg.split('=', 1)[1])}"
    elif config and i and args[i - 1] == f"--{config[0]}":
      arg = _absolute_config(arg)
    argv.append(arg)
  fv = flags.FlagValues()
  for kind, name, default, enum_values, required in defined:
    define = getattr(flags, f"DEFINE_{kind}")
    extra = (enum_values,) if kind == "enum" else ()
    define(name, default, *extra, "", flag_values=fv, required=required)
  holder = None
  if config:
    holder = config_flags.DEFINE_config_file(
        config[0], _absolute_config(config[1]), "", flag_values=fv, lock_config=True,
        sys_argv=argv)
  try:
    rest = fv(argv)
    if holder is not None:
      holder.value.keys()  # a config that failed to load raises on first use
  except Exception as e:  # noqa: BLE001  (absl, ml_collections and the configs' own errors)
    return [f"{script}: {type(e).__name__}: {' '.join(cli.clean_message(str(e)).split())}"]
  if rest[1:]:
    return [f"{script} takes no positional arguments: {rest[1:]}"]
  return []


_TYPES = {"int": int, "float": float, "str": str}
_ARGUMENT_KEYS = {"action", "nargs", "required", "choices", "dest", "const", "metavar"}


@functools.cache
def argparse_parser(source: str) -> argparse.ArgumentParser:
  """The script's argparse parser, rebuilt from its source: every ArgumentParser,
  add_subparsers, add_parser and add_argument call, with their literal settings (help,
  defaults and non-literal choices are left out)."""
  parsers, groups, top = {}, {}, None
  tree = ast.parse((ROOT / source).read_text())
  calls = sorted((n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.Expr))
                  and isinstance(n.value, ast.Call)), key=lambda n: (n.lineno, n.col_offset))
  for node in calls:
    call, func = node.value, node.value.func
    target = (node.targets[0].id if isinstance(node, ast.Assign)
              and isinstance(node.targets[0], ast.Name) else None)
    owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(
        func.value, ast.Name) else None
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name == "ArgumentParser" and target:
      # No abbreviations: a page spells every option out in full.
      parsers[target] = argparse.ArgumentParser(prog=source, allow_abbrev=False)
      top = top or parsers[target]
    elif name == "add_subparsers" and owner in parsers and target:
      groups[target] = parsers[owner].add_subparsers(**_kwargs(call, {"dest", "required"}))
    elif name == "add_parser" and owner in groups and target:
      parsers[target] = groups[owner].add_parser(_literal(call.args[0]))
    elif name == "add_argument" and owner in parsers:
      kwargs = _kwargs(call, _ARGUMENT_KEYS)
      for k in call.keywords:
        if k.arg == "type" and isinstance(k.value, ast.Name) and k.value.id in _TYPES:
          kwargs["type"] = _TYPES[k.value.id]
      parsers[owner].add_argument(*[_literal(a) for a in call.args], **kwargs)
  assert top is not None, f"{source} builds no argparse parser"
  return top


def check_argparse(source: str, args: list[str]) -> list[str]:
  err = io.StringIO()
  try:
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      parsed = argparse_parser(source).parse_args(args)
  except SystemExit:
    return [f"{source}: {err.getvalue().strip().splitlines()[-1]}"]
  task = getattr(parsed, "task", None)  # `prepare TASK`: its choices are the task registry's
  if source == "luna_jax/data/__main__.py" and task is not None and task != task.upper():
    from luna_jax.data.tasks import task_names

    if task not in task_names():
      return [f"python -m luna_jax.data: unknown task {task!r}"]
  return []


def check_python(args: list[str]) -> list[str]:
  """A `python ...` command: the script it runs exists and takes these arguments."""
  if args[:1] == ["-m"]:
    module, rest = args[1], args[2:]
    if not module.startswith("luna_jax"):
      return []  # pip, pytest, venv: not this project's commands
    path = ROOT / module.replace(".", "/")
    script = path / "__main__.py" if path.is_dir() else path.with_suffix(".py")
  elif args and args[0].endswith(".py"):
    script, rest = ROOT / args[0], args[1:]
  else:
    return []  # python -c ..., python alone
  if not script.is_file():
    return [f"{_rel(script) if script.is_relative_to(ROOT) else script} does not exist"]
  source = script.read_text()
  if re.search(r"\bflags\.DEFINE_|config_flags\.DEFINE_", source):
    return check_absl(_rel(script), rest)
  if "add_argument(" in source:
    return check_argparse(_rel(script), rest)
  return [] if not [a for a in rest if a.startswith("-")] else [
      f"{_rel(script)} takes no options: {rest}"]


def check_bash(args: list[str]) -> list[str]:
  script = ROOT / args[0]
  if not script.is_file():
    return [f"{args[0]} does not exist"]
  source = script.read_text()
  return [f"{args[0]} has no option {a}" for a in args[1:]
          if a.startswith("-") and not re.search(rf"^\s*{re.escape(a)}\)", source, re.M)]


def check_command(command: str) -> list[str]:
  """What would stop a documented command from running ([] if nothing would)."""
  problems = []
  for words in _simple_commands(command):
    if words[0] in ("python", "python3"):
      problems += check_python(words[1:])
    elif words[0] == "bash" and len(words) > 1:
      problems += check_bash(words[1:])
    elif words[:2] == ["pip", "install"]:
      problems += check_pip_extras(words[2:])
  return problems


def check_pip_extras(args: list[str]) -> list[str]:
  """`pip install -e '.[extra]'`: the extra is one pyproject.toml defines."""
  extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
      "optional-dependencies"]
  problems = []
  for arg in args:
    m = re.fullmatch(r"\.\[([\w,-]+)\]", arg)
    for extra in (m.group(1).split(",") if m else []):
      if extra not in extras:
        problems.append(f"pyproject.toml has no extra {extra!r}")
  return problems


# --- The tests --------------------------------------------------------------------------

# ml_collections loads a config file with the importlib call Python 3.12 removes.
pytestmark = pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
COMMANDS = all_commands()


@pytest.mark.parametrize("where, command", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_the_documented_command_would_run(where, command):
  assert check_command(command) == [], f"{where}: {command}"


def test_every_kind_of_command_is_checked():
  """The collection finds the commands (a parsing slip would silently check nothing)."""
  text = "\n".join(c for _, c in COMMANDS)
  for kind in ("python train.py", "python eval.py", "python translate.py",
               "python -m luna_jax.data prepare ", "python -m luna_jax.data prepare_corpus",
               "python -m luna_jax.data prepare_translation", "python benchmarks/",
               "--config.", "bash benchmarks/accelerator_check.sh"):
    assert kind in text, kind
  assert len(COMMANDS) >= 40, len(COMMANDS)


@pytest.mark.parametrize("command, problem", [
    ("python train.py --config configs/lra_text.py --config.model.luna.proj_lenx=256",
     "proj_lenx"),
    ("python train.py --config configs/lra_text.py --config.model.luna.proj_len=many",
     "proj_len"),
    ("python train.py --config configs/lra_text.py:nope", "unknown variant"),
    ("python train.py --config configs/lra_nope.py", "lra_nope"),
    ("python train.py --workdirr runs/x", "workdirr"),
    ("python eval.py --workdir runs/x --split dev", "split"),
    ("python eval.py --checkpoint best", "workdir"),
    ("python translate.py --workdir w --beam 4", "beam"),
    ("python -m luna_jax.data prepar listops --data_dir d", "prepar"),
    ("python -m luna_jax.data prepare listopz --data_dir d", "listopz"),
    ("python -m luna_jax.data prepare listops", "data_dir"),
    ("python -m luna_jax.data prepare_corpus in.txt --out d --tokeniser bytes", "tokeniser"),
    ("python benchmarks/mixers.py --repeat 3", "repeat"),
    ("python benchmarks/mixers.py --repeats three", "three"),
    ("python benchmarks/nope.py", "nope.py"),
    ("bash benchmarks/accelerator_check.sh --dryrun", "dryrun"),
    ("pip install -e '.[gpu]'", "gpu"),
])
def test_the_checker_rejects_a_broken_command(command, problem):
  problems = check_command(command)
  assert problems and problem in " ".join(problems), problems


def test_a_page_with_a_misspelled_config_key_fails(tmp_path):
  """End to end: the commands are found in a page, fenced or inline, and the bad ones fail."""
  page = tmp_path / "page.md"
  page.write_text("Run\n\n```bash\npython train.py --config configs/lra_text.py:cpu \\\n"
                  "    --config.model.luna.proj_lenx=256  # Luna-256\n```\n\nor `python\n"
                  "eval.py --workdir runs/text --split dev`; see `python -m luna_jax.data`.\n")
  found = page_commands(page)
  assert [where for where, _ in found] == [f"{page}:4", f"{page}:8"], found
  assert ["proj_lenx" in " ".join(check_command(c)) for _, c in found] == [True, False]
  assert "split" in " ".join(check_command(found[1][1]))


def test_the_checker_takes_a_good_command_with_overrides():
  assert check_command("python train.py --config configs/lra_text.py:cpu "
                       "--config.model.name=linformer --config.model.linformer.proj_len=32 "
                       "--workdir runs/x") == []


def _anchors(page: pathlib.Path) -> set[str]:
  """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
  headings = re.findall(r"^#+ (.+)$", _prose(page.read_text()), re.M)
  return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=_rel)
def test_links_and_named_paths_exist(page):
  prose, missing = _prose(page.read_text()), []
  for target in re.findall(r"\]\(([^)\s]+)\)", prose):
    if re.match(r"[a-z]+:", target):
      continue  # https:, mailto:
    path, _, anchor = target.partition("#")
    linked = (page.parent / path).resolve() if path else page
    if not linked.exists():
      missing.append(target)
    elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
      missing.append(target)
  for span in re.findall(r"`([^`\s]+)`", prose):
    if (re.fullmatch(r"(luna_jax|configs|benchmarks|tests|notebooks|docs)/[\w./*-]*", span)
        and not list(ROOT.glob(span.rstrip("/")))):
      missing.append(span)
  assert missing == [], f"{_rel(page)} names what does not exist: {missing}"


def _quick_start() -> str:
  text = (ROOT / "README.md").read_text()
  return text.split("## Quick start", 1)[1].split("\n## ", 1)[0]


def test_the_readme_is_an_overview():
  lines = (ROOT / "README.md").read_text().count("\n")
  assert lines <= README_MAX_LINES, f"README.md has {lines} lines; the guides go in docs/"
  blocks = [m.group(2) for m in _FENCE.finditer(_quick_start())]
  assert len(blocks) == 2 and all(b.count("\n") == 1 for b in blocks), blocks


def test_ci_runs_the_quick_start_test_command():
  """.ci/run's awk line picks the second Quick start command out of the README."""
  program = re.search(r"awk '([^']+)' README\.md", (ROOT / ".ci/run").read_text()).group(1)
  second = [m.group(2) for m in _FENCE.finditer(_quick_start())][1].strip()
  if shutil.which("awk"):
    picked = subprocess.run(["awk", program, "README.md"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.strip()
    assert picked == second
  assert "pytest" in second and "ruff check ." in second
