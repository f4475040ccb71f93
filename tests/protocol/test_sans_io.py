"""protocol/ is sans-IO: nothing async, nothing else of ours, typed from the first line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PROTOCOL_DIR = Path(__file__).resolve().parents[2] / "protocol"
FORBIDDEN = {
    "trio",
    "trio_websocket",
    "trio_asyncio",
    "quart",
    "quart_trio",
    "hypercorn",
    "asyncpg",
    "asyncio",
    "anyio",
}
SOURCES = sorted(PROTOCOL_DIR.rglob("*.py"))


def imported_modules(tree: ast.Module) -> set[str]:
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module)
    return modules


def test_sources_found() -> None:
    assert len(SOURCES) >= 5


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_imports_nothing_async_and_nothing_of_ours(path: Path) -> None:
    modules = imported_modules(ast.parse(path.read_text(encoding="utf-8")))
    for module in modules:
        top = module.split(".")[0]
        assert top not in FORBIDDEN, f"{path.name} imports {module}"
        assert top != "kefu" or module.startswith("kefu.protocol"), f"{path.name} imports {module}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_starts_with_future_annotations(path: Path) -> None:
    body = ast.parse(path.read_text(encoding="utf-8")).body
    statements = [node for node in body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    first = statements[0]
    assert isinstance(first, ast.ImportFrom) and first.module == "__future__"
    assert [alias.name for alias in first.names] == ["annotations"]
