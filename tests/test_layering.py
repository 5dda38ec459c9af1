"""Imports flow one way: ``model`` <- ``pipeline`` <- ``training`` / ``metrics`` / evaluation <- top-level scripts.

``model/`` (networks, ops, checkpoint loading) must import and work with nothing above it; tests do not
import ``benchmarks/``; benchmark and top-level scripts do not patch ``sys.path`` (the repository is
installed with ``pip install -e .``).
"""
from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "model"

# The one documented upward import: the original's path model.encoder.align_all_parallel.align_face wraps
# pipeline.faces, imported inside the functions (so importing the module needs no pipeline).
ALLOWED_UPWARD = {("model/encoder/align_all_parallel.py", "pipeline")}


def _above_model() -> set[str]:
    """Top-level names of the repository other than ``model``: its packages and its top-level modules."""
    names = {p.stem for p in ROOT.glob("*.py")}
    names |= {p.parent.name for p in ROOT.glob("*/__init__.py")}
    names |= {"tests", "benchmarks", "training", "pipeline", "metrics"}  # also when a folder lacks __init__.py
    return names - {"model", "setup", "conftest"}


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """``(absolute module name, line, at module level)`` for every import in ``path`` (relative ones resolved)."""
    tree = ast.parse(path.read_text(), str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    top_level = {id(node) for node in tree.body}
    top_level |= {id(n) for node in tree.body if isinstance(node, (ast.If, ast.Try)) for n in ast.walk(node)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in top_level) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found.append((name, node.lineno, id(node) in top_level))
    return found


def test_model_imports_nothing_above_it():
    above = _above_model()
    assert {"pipeline", "training", "util", "style_transfer"} <= above
    bad = []
    for path in sorted(MODEL.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name, line, module_level in _imports(path):
            top = name.split(".")[0]
            if top in above and ((rel, top) not in ALLOWED_UPWARD or module_level):
                bad.append(f"{rel}:{line} imports {name}")
    assert not bad, "model/ must not import the layers above it:\n" + "\n".join(bad)


def test_relative_imports_are_resolved():
    # the AST check above must see `from ..x import y` as the absolute module it is
    names = {n for n, _, _ in _imports(MODEL / "encoder" / "psp.py")}
    assert "model.encoder.encoders.psp_encoders" in names and "model.checkpoint" in names


BLOCKED_IMPORT = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys
    BLOCKED = set(sys.argv[1].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is above model/ and blocked")
            return None

    sys.meta_path.insert(0, Block())
    try:
        import pipeline  # noqa: F401
    except ImportError:
        pass
    else:
        raise SystemExit("the blocker does not block")
    import model
    names = ["model"] + [m.name for m in pkgutil.walk_packages(model.__path__, "model.")]
    for name in names:
        importlib.import_module(name)
    leaked = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print(len(names))
""")


def test_every_model_module_imports_with_the_layers_above_unavailable():
    above = sorted(_above_model())
    proc = subprocess.run([sys.executable, "-c", BLOCKED_IMPORT, ",".join(above)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n_modules = int(proc.stdout.split()[-1])
    assert n_modules >= len(list(MODEL.rglob("*.py"))) - 1, n_modules  # every module was imported


def test_tests_do_not_import_benchmarks():
    """Fixtures and helpers never come from ``benchmarks/``; only the test of a benchmark script imports that
    script (``tests/test_<script>.py`` -> ``benchmarks.<script>``)."""
    bad = [f"{p.name}:{line} imports {name}" for p in sorted((ROOT / "tests").glob("*.py"))
           for name, line, _ in _imports(p)
           if name.split(".")[0] == "benchmarks" and name != f"benchmarks.{p.stem.removeprefix('test_')}"]
    assert not bad, bad


def test_scripts_do_not_patch_sys_path():
    scripts = sorted(ROOT.glob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))
    bad = []
    for path in scripts:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name) \
                    and node.value.id == "sys":
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not bad, "scripts use sys.path (install the repository with `pip install -e .` instead): " + ", ".join(bad)


# ------------------------------------------------------------------------------------------ import graph
#: Each first-party package (or top-level module) and the packages it may import. A layer imports only the layers
#: below it: model <- common <- hub <- pipeline <- training / metrics / demo <- the top-level scripts and benchmarks.
LAYERS = {
    "model": {"model"},
    "common": {"model", "common"},
    "hub": {"model", "common", "hub"},
    "pipeline": {"model", "common", "hub", "pipeline"},
    "training": {"model", "common", "hub", "pipeline", "training"},
    "metrics": {"model", "common", "hub", "pipeline", "metrics"},
    "demo": {"model", "common", "hub", "pipeline", "demo"},
    "util": {"model", "common", "pipeline"},
}
PACKAGES = ["model", "common", "hub", "pipeline", "training", "metrics", "demo"]


def _first_party_modules() -> dict[str, Path]:
    """Every first-party module (``a.b.c`` -> file): the packages, the top-level scripts and ``benchmarks``."""
    mods = {}
    for pkg in PACKAGES + ["benchmarks"]:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in ROOT.glob("*.py"):
        mods[path.stem] = path
    return mods


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks (they never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def _import_graph() -> dict[str, set[str]]:
    """``module -> first-party modules it imports`` (at module level or inside functions alike; ``from a import b``
    counts as importing ``a.b`` where that is a module)."""
    mods = _first_party_modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_only(tree)
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    graph[mod].add(t)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
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
                found.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles():
    """No cycle among first-party modules, counting imports inside functions (only ``TYPE_CHECKING`` blocks are
    exempt): a lazy import that breaks a cycle at run time still ties the modules into one."""
    cycles = _cycles(_import_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_each_layer_imports_only_the_layers_below_it():
    graph = _import_graph()
    bad = []
    for mod, targets in sorted(graph.items()):
        layer = mod.split(".")[0]
        if layer not in LAYERS or layer == "model":  # model/ has its own test above (one documented exception)
            continue
        bad += [f"{mod} imports {t}" for t in sorted(targets) if t.split(".")[0] not in LAYERS[layer]]
    assert not bad, "imports against the layering:\n" + "\n".join(bad)


#: The ported network code keeps the shape of the original files (kept long for a line-by-line comparison).
PORTED = ("model/stylegan/", "model/encoder/", "model/bisenet/")
MAX_LINES = 500


def test_no_module_is_over_500_lines():
    """Every first-party module (packages, scripts, tests, benchmarks) fits in 500 lines, the demo's entry point in
    200: a longer one mixes concerns that want modules of their own."""
    paths = [p for p in sorted(ROOT.rglob("*.py")) if not {".git", "checkpoint", "output", "data"} & set(p.parts)]
    long = {}
    for path in paths:
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(PORTED) or "site-packages" in rel:
            continue
        n = len(path.read_text().splitlines())
        if n > (200 if rel == "app.py" else MAX_LINES):
            long[rel] = n
    assert not long, f"modules over {MAX_LINES} lines (app.py: 200): {long}"
