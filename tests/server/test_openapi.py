"""The generated OpenAPI document: a valid OpenAPI 3.1 document, served as it is generated, and
the REST examples of README.md and docs/*.md hold against its schemas.

Examples checked (each kind must find some, so a change of the docs' style cannot silence it):
- full examples: a ```json block after a `<!-- rest: METHOD /path request|STATUS -->` comment,
  validated against the route's body or answer schema;
- bodies of `curl … /api/v1/… -d '{…}'` commands, against the route's body schema;
- inline JSON objects in backticks on a line that names one route, against its body schema;
- the README's REST table: the field names a row lists for the request and for the 2xx answer
  must be fields of the route's body and answer.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import msgspec
import pytest

from kefu.server import openapi
from kefu.server.api.route import ROUTES, RouteSpec
from tests.server.test_contact_center import node_and_database

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OAS_SCHEMA = json.loads((Path(__file__).parent / "vendor" / "openapi-3.1-schema.json").read_text())
ROUTE = re.compile(
    r"\b(GET|POST|PUT|PATCH|DELETE)(?:`?/`?(?:GET|POST|PUT|PATCH|DELETE))*\s+(/api/v1/[\w/<>{}.-]*[\w>}])"
)


def _document() -> dict[str, Any]:
    """The document as a client reads it (JSON types only)."""
    document: dict[str, Any] = json.loads(msgspec.json.encode(openapi.document()))
    return document


def test_the_document_is_a_valid_openapi_3_1_document() -> None:
    document = _document()
    validator = jsonschema.Draft202012Validator(OAS_SCHEMA)
    assert [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)] == []
    for name, schema in document["components"]["schemas"].items():
        jsonschema.Draft202012Validator.check_schema(schema), name
    # The validator does bite: a response without its description is not a valid document.
    broken = copy.deepcopy(document)
    del broken["paths"]["/api/v1/queues"]["get"]["responses"]["200"]["description"]
    assert list(validator.iter_errors(broken))


def test_every_route_is_described_once_with_its_permission() -> None:
    document = _document()
    described = {(path, method) for path, operations in document["paths"].items() for method in operations}
    assert described == {(spec.path, spec.method.lower()) for spec in ROUTES}
    for spec in ROUTES:
        operation = document["paths"][spec.path][spec.method.lower()]
        assert operation["x-permission"] == spec.guard.value
        assert {p["name"] for p in operation.get("parameters", ()) if p["in"] == "path"} == set(spec.path_parameters)


async def test_the_documents_are_served(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (_node, client, _database):
        served = await client.get("/api/v1/openapi.json")
        protocol = await client.get("/api/v1/protocol.schema.json")
    assert served.status_code == 200 and served.json() == _document()
    from kefu.protocol.schema import protocol_json_schema

    assert protocol.status_code == 200
    assert protocol.json() == json.loads(msgspec.json.encode(protocol_json_schema()))


# -- the docs' examples ------------------------------------------------------------------------


def _spec(method: str, path: str) -> RouteSpec:
    """The declared route of a path as the docs write it (`<id>` or `{id}` for any parameter)."""
    pattern = re.sub(r"[<{]\w+[>}]", "<>", path)
    found = [s for s in ROUTES if s.method == method and re.sub(r"<\w+>", "<>", s.rule) == pattern]
    assert len(found) == 1, f"the docs name {method} {path}, which is not one declared route"
    return found[0]


def _validate(example: Any, kind: type | None, where: str) -> None:
    assert kind is not None, f"{where}: the route declares no such JSON"
    schemas = _document()["components"]["schemas"]
    schema = {"$ref": f"#/components/schemas/{kind.__name__}", "components": {"schemas": schemas}}
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    errors = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(example)]
    assert errors == [], f"{where}: {example}"


def _lines() -> list[tuple[str, int, str]]:
    return [(doc.name, number, line) for doc in DOCS for number, line in enumerate(doc.read_text().splitlines(), 1)]


def _full_examples() -> list[tuple[str, str, str, Any]]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in re.finditer(r"<!-- rest: (\w+) (\S+) (request|\d{3}) -->\s*```json\n(.*?)```", text, re.DOTALL):
            found.append((f"{doc.name}: {match[1]} {match[2]} {match[3]}", match[1], match[2], match))
    return found


def test_full_examples_hold() -> None:
    examples = _full_examples()
    assert len(examples) >= 4
    for where, method, path, match in examples:
        spec = _spec(method, path)
        example = json.loads(match[4])
        if match[3] == "request":
            _validate(example, spec.body, where)
        elif int(match[3]) < 400:
            assert int(match[3]) == spec.status, where
            _validate(example, spec.answer, where)
        else:
            _validate(example, openapi.Error, where)


def test_curl_bodies_hold() -> None:
    text = "\n".join(doc.read_text().replace("\\\n", " ") for doc in DOCS)
    bodies = re.findall(r"curl[^\n]*?(/api/v1/[\w/-]+)[^\n]*?-d '(\{[^']*\})'", text)
    assert len(bodies) >= 2
    for path, body in bodies:
        _validate(json.loads(body), _spec("POST", path).body, f"curl {path}")


def test_inline_bodies_hold() -> None:
    checked = 0
    for doc, number, line in _lines():
        routes = ROUTE.findall(line)
        if len(routes) != 1:
            continue
        for snippet in re.findall(r"`(\{[^`]*\})`", line):
            try:
                example = json.loads(snippet)
            except json.JSONDecodeError:
                continue  # a list of field names, checked by the table test
            spec = _spec(*routes[0])
            _validate(example, spec.body, f"{doc}:{number}")
            checked += 1
    assert checked >= 1


def _top_level_names(schematic: str) -> set[str]:
    """The field names at the top of `{"a", "b"?: …, "c": {"d"}}`."""
    names, depth = set(), 0
    for token in re.finditer(r'[{}\[\]]|([{,]\s*)?"(\w+)"', schematic):
        if token[0] in "{[":
            depth += 1
        elif token[0] in "}]":
            depth -= 1
        elif depth == 1 and (token[1] or schematic[token.start() - 1] == "{"):
            names.add(token[2])  # a name follows `{` or `,`; a value follows `:` or `|`
    return names


def _properties(kind: type | None) -> set[str]:
    if kind is None:
        return set()
    return set(_document()["components"]["schemas"][kind.__name__]["properties"])


TABLE_ROW = re.compile(
    r"^\| `(GET|POST|PUT|PATCH|DELETE) (/api/v1/[^`]+)`(?: (?:any of )?`(\{.*?\})`)? [^|]*\| (.*)\|$"
)


@pytest.mark.parametrize("kind", ["request", "answer"])
def test_the_rest_tables_fields_are_declared(kind: str) -> None:
    checked = 0
    for doc, number, line in _lines():
        row = TABLE_ROW.match(line)
        if row is None:
            continue
        spec = _spec(row[1], row[2].split("?")[0])
        if kind == "request" and row[3]:
            listed, declared = _top_level_names(row[3]), _properties(spec.body)
        elif kind == "answer" and (answer := re.match(r"(\d{3}) `(\{.*?\})`", row[4])):
            listed, declared = _top_level_names(answer[2]), _properties(spec.answer)
        else:
            continue
        assert listed <= declared, f"{doc}:{number}: {sorted(listed - declared)} are not fields of {spec.rule}"
        checked += 1
    assert checked >= 5
