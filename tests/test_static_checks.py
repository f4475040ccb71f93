"""Strict mypy over the package as it is installed, and ruff (lint, complexity, format) over the repository.

The folders are installed as `kefu.<name>` (pyproject's `package-dir`), so mypy checks a tree of
symbolic links `kefu/<name>` -> `<repository>/<folder>` built in a temporary folder: imports of
`kefu.*` resolve to the repository's files, as they do in a wheel. mypy keeps its cache in the
repository's `.mypy_cache`, so a second run takes seconds. `make check` runs the same tools.
"""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def installed_tree(root: Path, into: Path) -> Path:
    """`into/kefu/<sub>` linked to each folder pyproject installs as `kefu.<sub>`; returns `into`."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    package = into / "kefu"
    package.mkdir(parents=True)
    for name, folder in pyproject["tool"]["setuptools"]["package-dir"].items():
        top, _, sub = name.partition(".")
        assert top == "kefu" and sub and "." not in sub, f"unexpected package {name!r} in package-dir"
        (package / sub).symlink_to(root / folder, target_is_directory=True)
    return into


def run_tool(command: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def test_mypy_strict_over_the_installed_package(tmp_path: Path) -> None:
    tree = installed_tree(ROOT, tmp_path / "tree")
    result = run_tool(
        [
            str(BIN / "mypy"),
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--cache-dir",
            str(ROOT / ".mypy_cache"),
            "-p",
            "kefu",
        ],
        cwd=tree,
    )
    if result.returncode != 0:
        pytest.fail(f"mypy --strict -p kefu:\n{result.stdout}{result.stderr}", pytrace=False)


def test_ruff_check() -> None:
    result = run_tool([str(BIN / "ruff"), "check", "--no-cache", "--output-format", "concise", "."], cwd=ROOT)
    if result.returncode != 0:
        pytest.fail(f"ruff check:\n{result.stdout}{result.stderr}", pytrace=False)


def test_ruff_format() -> None:
    result = run_tool([str(BIN / "ruff"), "format", "--check", "--no-cache", "."], cwd=ROOT)
    if result.returncode != 0:
        pytest.fail(f"ruff format --check:\n{result.stdout}{result.stderr}", pytrace=False)


def test_the_tree_resolves_every_package(tmp_path: Path) -> None:
    """Each package-dir entry is a folder of the repository with an `__init__.py`."""
    tree = installed_tree(ROOT, tmp_path / "tree")
    subs = sorted(path.name for path in (tree / "kefu").iterdir())
    assert {"server", "actors", "protocol", "loadtest"} <= set(subs)
    for sub in subs:
        assert (tree / "kefu" / sub / "__init__.py").is_file() or sub == "web", sub
