"""The package's shape: imports point down the layers, no circles, no reaching into privates.

The layers, lowest first (also in docs/architecture.md). A module may import modules of its own
package and of lower layers only; packages of one layer do not import each other.
"""

import ast
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LAYERS = (
    ("util",),
    ("data",),
    ("models", "plots"),
    ("train",),
    ("eval", "interpret", "attacks"),
    ("layout", "pipeline"),
    ("report",),
    ("study", "speed", "zoo"),
)
LAYER_OF = {part: i for i, parts in enumerate(LAYERS) for part in parts}


def module_name(path: pathlib.Path, base: pathlib.Path = REPO) -> str:
  parts = path.relative_to(base).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(root: str, base: pathlib.Path = REPO) -> dict:
  """{dotted module name: parsed AST} of every .py file under base/root."""
  return {module_name(p, base): ast.parse(p.read_text(), str(p))
          for p in sorted((base / root).rglob("*.py"))}


def imported(tree, known) -> list:
  """(module imported, name, line) for every import statement, nested ones too.

  `from a.b import c` is module a.b.c when that is a module, else module a.b (name c).
  """
  out = []
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      out += [(a.name, None, node.lineno) for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module:
      for a in node.names:
        full = f"{node.module}.{a.name}"
        out.append((full, None, node.lineno) if full in known else
                   (node.module, a.name, node.lineno))
  return out


def part_of(module: str) -> str | None:
  """The layer unit of a ccmnist module: its subpackage or top-level module."""
  parts = module.split(".")
  return parts[1] if parts[0] == "ccmnist" and len(parts) > 1 else None


LIBRARY = modules("ccmnist")
ALL = {**LIBRARY, **modules("launch"), **modules("configs")}


def test_every_library_part_has_a_layer():
  parts = {part_of(m) for m in LIBRARY} - {None}
  assert parts <= set(LAYER_OF), f"add {sorted(parts - set(LAYER_OF))} to LAYERS"


def test_imports_point_down_and_the_library_imports_no_config():
  bad = []
  for name, tree in LIBRARY.items():
    for target, _, line in imported(tree, ALL):
      if target.split(".")[0] in ("configs", "launch"):
        bad.append(f"{name}:{line} imports {target} (configs flow down as arguments)")
      src, dst = part_of(name), part_of(target)
      if dst is None or src is None or src == dst:
        continue
      if LAYER_OF[dst] >= LAYER_OF[src]:
        bad.append(f"{name}:{line} imports {target} ({src} is not above {dst})")
  assert not bad, "\n".join(bad)


def import_graph(mods: dict) -> dict:
  """{module: the modules of `mods` it imports}: every import statement, nested (function-local)
  ones and a package's imports of its own modules included."""
  return {name: {t for t, _, _ in imported(tree, mods) if t in mods and t != name}
          for name, tree in mods.items()}


def first_cycle(graph: dict) -> list:
  """A circle of `graph` as [a, b, ..., a], or [] when it has none."""
  state, cycle = {}, []

  def visit(node, path):
    state[node] = "open"
    for nxt in sorted(graph[node]):
      if state.get(nxt) == "open":
        cycle.append(path + [nxt])
      elif nxt not in state:
        visit(nxt, path + [nxt])
    state[node] = "done"

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  return cycle[0][cycle[0].index(cycle[0][-1]):] if cycle else []


def test_no_import_circle_between_modules():
  cycle = first_cycle(import_graph(LIBRARY))
  assert not cycle, " -> ".join(cycle)


# A package built by hand: each case adds one import that closes a circle, through a package's
# import of its own module or through an import inside a function.
TOY = {"pkg/__init__.py": "from pkg import reg\n",
       "pkg/reg.py": "from pkg import a\n",
       "pkg/a.py": "import math\n",
       "pkg/b.py": "from pkg import a\n"}


@pytest.mark.parametrize("path,line,want", [
    ("pkg/a.py", "import pkg\n", ["pkg", "pkg.reg", "pkg.a", "pkg"]),
    ("pkg/a.py", "def f():\n  from pkg import b\n", ["pkg.a", "pkg.b", "pkg.a"]),
    ("pkg/a.py", "def f():\n  from pkg import reg\n", ["pkg.reg", "pkg.a", "pkg.reg"]),
])
def test_the_circle_check_sees_package_and_nested_imports(tmp_path, path, line, want):
  for name, text in TOY.items():
    (tmp_path / name).parent.mkdir(exist_ok=True)
    (tmp_path / name).write_text(text)
  assert first_cycle(import_graph(modules("pkg", tmp_path))) == []
  (tmp_path / path).write_text(TOY[path] + line)
  assert first_cycle(import_graph(modules("pkg", tmp_path))) == want


def private_uses(tree, known) -> list:
  """`mod._name` attribute reads and `from mod import _name` of project modules."""
  aliases, out = {}, []
  for target, name, line in imported(tree, known):
    if name is None:
      continue
    if name.startswith("_"):
      out.append(f"{line}: from {target} import {name}")
  for node in ast.walk(tree):
    if isinstance(node, ast.ImportFrom) and node.module:
      for a in node.names:
        if f"{node.module}.{a.name}" in known:
          aliases[a.asname or a.name] = f"{node.module}.{a.name}"
    elif isinstance(node, ast.Import):
      for a in node.names:
        if a.asname and a.name in known:
          aliases[a.asname] = a.name
  for node in ast.walk(tree):
    if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in aliases and node.attr.startswith("_")
        and not node.attr.startswith("__")):
      out.append(f"{node.lineno}: {aliases[node.value.id]}.{node.attr}")
  return out


def test_no_module_uses_another_modules_private_names():
  bad = [f"{name}:{use}" for name, tree in ALL.items() for use in private_uses(tree, ALL)]
  assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source,expected", [
    ("from ccmnist.attacks import sweep\nsweep._x()\n", ["2: ccmnist.attacks.sweep._x"]),
    ("from ccmnist.attacks.sweep import _x\n", ["1: from ccmnist.attacks.sweep import _x"]),
    ("from ccmnist.attacks import sweep\nsweep.x()\nself._y\n", []),
])
def test_the_private_check_finds_what_it_should(source, expected):
  assert private_uses(ast.parse(source), {"ccmnist.attacks.sweep"}) == expected


def test_the_layer_check_sees_nested_imports():
  tree = ast.parse("def f():\n  from ccmnist.report import report\n")
  assert imported(tree, {"ccmnist.report.report"}) == [("ccmnist.report.report", None, 2)]
