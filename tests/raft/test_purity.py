"""etcdpy.raft is a pure state machine: no I/O, clocks, threads or global randomness."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RAFT_DIR = Path(__file__).resolve().parents[2] / "etcdpy" / "raft"
MODULES = sorted(RAFT_DIR.rglob("*.py"))

# Modules whose import would give raft a way to reach the world outside its inputs.
FORBIDDEN = {
    "socket", "asyncio", "time", "os", "threading", "multiprocessing", "subprocess", "select",
    "selectors", "signal", "datetime", "logging", "plyvel", "grpc", "secrets", "uuid", "io",
    "tempfile", "shutil", "pathlib", "concurrent", "sys",
}  # fmt: skip
# random may only be used for its Random class (an injected, seeded generator).
RANDOM_ALLOWED = {"Random"}


def _imports(tree: ast.AST) -> list[tuple[str, list[str]]]:
    """Return (module, imported names) for every import statement in tree."""
    out: list[tuple[str, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = ("." * node.level) + (node.module or "")
            out.append((module, [alias.name for alias in node.names]))
    return out


def test_modules_found() -> None:
    assert len(MODULES) >= 10, MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_no_forbidden_imports(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for module, _names in _imports(tree):
        top = module.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {module}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_imports_nothing_else_from_etcdpy(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for module, _names in _imports(tree):
        if module.startswith("etcdpy"):
            assert module.startswith(("etcdpy.raft", "etcdpy.api.raftpb")), f"{path.name} imports {module}"
        assert not module.startswith(".."), f"{path.name} uses a relative import leaving etcdpy.raft"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_random_only_through_injected_generator(path: Path) -> None:
    tree = ast.parse(path.read_text(), str(path))
    for module, names in _imports(tree):
        if module == "random" and names:
            assert set(names) <= RANDOM_ALLOWED, f"{path.name} imports {names} from random"
    # `import random` followed by random.<function>(...) would use the global generator.
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "random":
            assert node.attr in RANDOM_ALLOWED, f"{path.name} uses random.{node.attr}"


def test_checker_catches_a_forbidden_import() -> None:
    """The checks above would fail on code that breaks the rule (they are not vacuous)."""
    bad = ast.parse("import time\nfrom random import randint\nimport random\nrandom.random()\n")
    found = _imports(bad)
    assert ("time", []) in found
    assert ("random", ["randint"]) in found
    attrs = [n.attr for n in ast.walk(bad) if isinstance(n, ast.Attribute)]
    assert "random" in attrs
