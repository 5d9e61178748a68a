"""Imports flow one way (DESIGN.md, Layout): a test, so the architecture cannot rot silently.

placement imports no other component; cache imports only the shared vocabulary; workers imports cache;
control_plane imports placement and cache; the CLI and benchmarks may import anything. Every import
statement counts, including ones inside functions.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = ("placement", "cache", "workers", "control_plane")
# heteroserve modules that any component may use: the package root (version only), errors, config,
# logging, the local Redis launcher, generated stubs, the worker registry records and the worker RPC client
# (with its Session multiplexer).
SHARED = ("heteroserve.errors", "heteroserve.config", "heteroserve.logs", "heteroserve.localredis",
          "heteroserve.v1", "heteroserve.registry", "heteroserve.workerclient", "heteroserve.worker_session")
ALLOWED: dict[str, tuple[str, ...]] = {
    "placement": ("placement", "heteroserve.errors", "heteroserve.config", "heteroserve.logs"),
    "cache": ("cache", *SHARED),
    "workers": ("workers", "cache", *SHARED),
    "control_plane": ("control_plane", "placement", "cache", *SHARED),
    "heteroserve.client": ("heteroserve.client", "heteroserve.errors", "heteroserve.v1"),
    "shared": ("cache.hashing", *SHARED),
}
PROJECT_ROOTS = (*COMPONENTS, "heteroserve", "benchmarks")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if name.split(".")[0] in PROJECT_ROOTS]


def owner_of(path: Path) -> str | None:
    rel = path.relative_to(ROOT).with_suffix("")
    dotted = ".".join(rel.parts)
    if rel.parts[0] in COMPONENTS:
        return rel.parts[0]
    if dotted.startswith("heteroserve.client"):
        return "heteroserve.client"
    if any(dotted == s or dotted.startswith(s + ".") for s in SHARED if s != "heteroserve.v1"):
        return "shared"
    return None


def allowed(owner: str, module: str) -> bool:
    if module == "heteroserve":  # `from heteroserve import __version__`: the root holds nothing else
        return True
    return any(module == prefix or module.startswith(prefix + ".") for prefix in ALLOWED[owner])


def test_import_direction() -> None:
    violations = []
    for path in sorted(ROOT.glob("**/*.py")):
        if ".venv" in path.parts or "heteroserve/v1" in path.as_posix():
            continue
        owner = owner_of(path)
        if owner is None:
            continue
        for line, module in imported_modules(path):
            if not allowed(owner, module):
                violations.append(f"{path.relative_to(ROOT)}:{line} ({owner}) imports {module}")
    assert not violations, "imports against the architecture:\n" + "\n".join(violations)


def test_rule_catches_a_violation(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import workers.engine\nfrom control_plane import router\n")
    modules = [m for _, m in imported_modules(bad)]
    assert modules == ["workers.engine", "control_plane"]
    assert not allowed("placement", "workers.engine")
    assert not allowed("control_plane", "workers.engine")
    assert allowed("control_plane", "cache.hashing")


def test_sdk_imports_without_torch() -> None:
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['safetensors.torch'] = None\n"
        "import heteroserve.client\n"
        "from heteroserve import Client, AsyncClient\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
