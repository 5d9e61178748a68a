"""The vocabulary is defined once, in `common/vocab.py`: no package enumerates role or device names.

Rule (checked with `ast` on every .py file of the project's packages, tests excluded, and
`heteroserve/v1` excluded as generated code):

    A tuple, list or set display, or the subscript of `Literal[...]`, whose direct elements include
    two or more string constants of one vocabulary, roles {"colocated", "prefill", "decode"} or
    devices {"cpu", "cuda", "csd"}, is a re-definition of that vocabulary and fails, wherever it
    stands: a module constant, a `Literal`, a membership test `x in ("prefill", "decode")`, a loop
    `for r in ("prefill", "decode")` or an argparse `choices=` (config parsing uses `ROLES`/`DEVICES`
    too, and `parse_role`/`parse_device` at the edge).

    A single name used on its own is allowed: a default (`role: Role = "colocated"`), a comparison
    (`role == "prefill"`), a `case "decode":` pattern, a call argument. mypy checks those against the
    `Literal` types, so a typo fails type checking; what this test prevents is a second list that can
    drift from the first. A subset is a re-definition too: `("prefill", "decode")` means "the roles
    that take part in a P/D handoff", which belongs in `common.vocab` under a name.

Dict keys, nested containers (`(("prefill", 1), ("decode", 2))`: no single display holds two names)
and strings inside f-strings or docstrings are not examined. Only `common/vocab.py` may hold such
displays. Each package is a separate case, so the report says which packages still re-define names.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "workerrpc", "cache", "workers", "control_plane", "placement", "heteroserve",
            "benchmarks")
EXCLUDED = (ROOT / "common" / "vocab.py", ROOT / "heteroserve" / "v1")
VOCABULARIES: dict[str, frozenset[str]] = {
    "role": frozenset({"colocated", "prefill", "decode"}),
    "device": frozenset({"cpu", "cuda", "csd"}),
}


def _displays(tree: ast.AST) -> list[tuple[int, list[str]]]:
    """(line, its direct string elements) for every tuple/list/set display. `Literal["a", "b"]` is one
    too: its subscript is the tuple `"a", "b"`."""
    return [(node.lineno, [e.value for e in node.elts
                           if isinstance(e, ast.Constant) and isinstance(e.value, str)])
            for node in ast.walk(tree) if isinstance(node, ast.Tuple | ast.List | ast.Set)]


def violations(source: str, filename: str = "<source>") -> list[str]:
    """One `file:line: re-defines <vocabulary> names [...]` per offending display in `source`."""
    out = []
    for line, strings in sorted(_displays(ast.parse(source, filename))):
        for vocabulary, names in VOCABULARIES.items():
            hits = sorted({s for s in strings if s in names})
            if len(hits) >= 2:
                out.append(f"{filename}:{line}: re-defines {vocabulary} names {hits}")
    return out


def _files(package: str) -> list[Path]:
    return sorted(p for p in (ROOT / package).rglob("*.py")
                  if not any(p == e or e in p.parents for e in EXCLUDED))


@pytest.mark.parametrize("package", PACKAGES)
def test_no_package_redefines_the_vocabulary(package: str) -> None:
    assert _files(package), f"{package}: no .py files found (package moved? update PACKAGES)"
    found = [v for path in _files(package)
             for v in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "use common.vocab (ROLES, DEVICES, Role, Device, parse_*):\n" + "\n".join(found)


def test_rule_catches_redefinitions_and_allows_single_uses() -> None:
    bad = '''
from typing import Literal
import argparse
ROLES = ("colocated", "prefill", "decode")
Device = Literal["cpu", "cuda"]
ok = role in ["prefill", "decode"]
argparse.ArgumentParser().add_argument("--device", choices={"cpu", "csd"})
'''
    assert [v.split(": ", 1)[1] for v in violations(bad)] == [
        "re-defines role names ['colocated', 'decode', 'prefill']",
        "re-defines device names ['cpu', 'cuda']",
        "re-defines role names ['decode', 'prefill']",
        "re-defines device names ['cpu', 'csd']",
    ]
    good = '''
from typing import Literal
from common.vocab import ROLES, Role
role: Role = "colocated"
if role == "prefill" or device == "cpu":
    pass
match role:
    case "decode":
        pass
argv = ["--role", "prefill", "--device", "cpu"]
Single = Literal["decode"]
pairs = (("prefill", 1), ("decode", 2))
'''
    assert violations(good) == []
