"""One set of close codes: `kefu.protocol.errors`' CLOSE_* constants are the codes kefu sends,
and docs/protocol.md's close-code table lists exactly them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from kefu.protocol import errors

ROOT = Path(__file__).resolve().parents[2]
CLOSE_CODES = {name: value for name, value in vars(errors).items() if name.startswith("CLOSE_")}


def _documented_close_codes() -> list[int]:
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    section = text.split("### Close codes", 1)[1].split("\n#", 1)[0]
    return [int(code) for code in re.findall(r"^\| (\d{4}) \|", section, flags=re.MULTILINE)]


def test_the_close_code_table_lists_exactly_the_close_codes() -> None:
    documented = _documented_close_codes()
    assert len(documented) == len(set(documented)), "a close code is listed twice"
    assert sorted(documented) == documented, "the table is in order"
    assert set(documented) == set(CLOSE_CODES.values())


def test_each_close_code_has_one_name_and_is_exported() -> None:
    assert len(set(CLOSE_CODES.values())) == len(CLOSE_CODES)
    assert set(CLOSE_CODES) <= set(errors.__all__)


def test_no_close_code_is_written_as_a_number_outside_the_table() -> None:
    """The edge and the actors import the codes: a `close(...)` or `aclose(...)` call, or a
    constant named CLOSE_*, with a literal code is a second source of truth."""
    offenders = []
    for folder in ("server", "actors", "protocol", "loadtest"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            if path == ROOT / "protocol" / "errors.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if _literal_close(node):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")  # type: ignore[attr-defined]
    assert offenders == []


def test_the_codes_that_end_reconnecting_are_one_set_in_the_docs_the_console_and_the_pages() -> None:
    """A client reconnects after every close but DO_NOT_RECONNECT's: the docs say so, and the
    browser client (which cannot import Python) writes the same set."""
    docs = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    (said,) = re.findall(r"Reconnect after any close except ([\d, and]+), with", docs)
    assert {int(code) for code in re.findall(r"\d{4}", said)} == errors.DO_NOT_RECONNECT
    client = (ROOT / "web" / "static" / "kefu-client.js").read_text(encoding="utf-8")
    (listed,) = re.findall(r"\[([\d, ]+)\]\.includes\(event\.code\)", client)
    assert {int(code) for code in listed.split(",")} == errors.DO_NOT_RECONNECT


def _literal_close(node: ast.AST) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("close", "aclose"):
        return bool(node.args) and _is_code(node.args[0])
    if isinstance(node, ast.Assign):
        named = any(isinstance(target, ast.Name) and target.id.startswith("CLOSE_") for target in node.targets)
        return named and _is_code(node.value)
    return False


def _is_code(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) is int and 1000 <= node.value <= 4999
