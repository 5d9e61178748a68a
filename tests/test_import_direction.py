"""Imports flow one way (DESIGN.md, Layout): a test, so the architecture cannot rot silently.

Three floors, stated as packages. The ground floor (`common`, `workerrpc`, and the generated stubs
`heteroserve.v1`) imports nothing above it. The components stand on it: `placement` imports no other
component, `cache` none, `workers` imports `cache`, `control_plane` imports `placement` and `cache`.
The top floor (the rest of `heteroserve`, and `benchmarks`) may import anything. Every import statement
counts, including ones inside functions. A second test finds import cycles between modules.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STUBS = "heteroserve.v1"
GROUND: dict[str, tuple[str, ...]] = {
    "common": ("common",),
    "workerrpc": ("workerrpc", "common", STUBS),
}
COMPONENTS: dict[str, tuple[str, ...]] = {
    "placement": ("placement",),
    "cache": ("cache",),
    "workers": ("workers", "cache"),
    "control_plane": ("control_plane", "placement", "cache"),
}
# The SDK is top floor but installs without the engine: it may use only errors and the stubs.
SDK = "heteroserve.client"
ALLOWED: dict[str, tuple[str, ...]] = {
    **GROUND,
    **{name: (*deps, *GROUND, STUBS) for name, deps in COMPONENTS.items()},
    SDK: (SDK, "common.errors", STUBS),
}
TOP = ("heteroserve", "benchmarks")
PROJECT_ROOTS = (*GROUND, *COMPONENTS, *TOP)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in PROJECT_ROOTS]


def dotted(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
    return ".".join(parts)


def owner_of(path: Path) -> str | None:
    """The package whose rules bind `path`: a ground or component package, the SDK, or None (top)."""
    name = dotted(path)
    if name == SDK or name.startswith(SDK + "."):
        return SDK
    root = name.split(".")[0]
    return root if root in ALLOWED else None


def allowed(owner: str, module: str) -> bool:
    if module == "heteroserve":  # `from heteroserve import __version__`: the root holds nothing else
        return True
    return any(module == prefix or module.startswith(prefix + ".") for prefix in ALLOWED[owner])


def project_files() -> list[Path]:
    return [p for p in sorted(ROOT.glob("**/*.py"))
            if ".venv" not in p.parts and "tests" not in p.relative_to(ROOT).parts[:1]
            and not p.relative_to(ROOT).as_posix().startswith("heteroserve/v1/")
            and p.relative_to(ROOT).parts[0] in PROJECT_ROOTS]


def test_import_direction() -> None:
    violations = []
    for path in project_files():
        owner = owner_of(path)
        if owner is None:
            continue
        for line, module in imported_modules(path):
            if not allowed(owner, module):
                violations.append(f"{path.relative_to(ROOT)}:{line} ({owner}) imports {module}")
    assert not violations, "imports against the architecture:\n" + "\n".join(violations)


def _module_graph() -> dict[str, set[str]]:
    files = project_files()
    modules = {dotted(p) for p in files}
    graph: dict[str, set[str]] = {}
    for path in files:
        edges = set()
        for _, module in imported_modules(path):
            # `from a.b import c` may name a module a.b.c or an attribute of a.b: take the longest match.
            while module and module not in modules:
                module = module.rpartition(".")[0]
            if module and module != dotted(path):
                edges.add(module)
        graph[dotted(path)] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle between modules (as a path that returns to its start), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            # A package's __init__ re-exporting its own modules is not a cycle between concepts.
            if nxt.startswith(node + ".") or node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_no_import_cycle_between_modules() -> None:
    cycle = find_cycle(_module_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_rules_catch_violations(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import workers.engine\nfrom control_plane import router\n")
    modules = [m for _, m in imported_modules(bad)]
    assert modules == ["workers.engine", "control_plane"]
    assert not allowed("placement", "workers.engine")
    assert not allowed("control_plane", "workers.engine")
    assert not allowed("common", "cache.hashing")
    assert not allowed("workerrpc", "heteroserve.cli")
    assert allowed("control_plane", "cache.hashing")
    assert allowed("cache", "common.vocab")
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_sdk_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['safetensors.torch'] = None\n"
        "import heteroserve.client\n"
        "from heteroserve import Client, AsyncClient\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
