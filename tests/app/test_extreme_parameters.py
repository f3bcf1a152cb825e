"""No response anywhere contains a non-finite number, on the real app and tiny model.

Every operation in the OpenAPI document is called with its example (or a minimal valid body), then once per
numeric field at each extreme the schema admits: the smallest positive double (5e-324) and 1e-308 where a
field only has to be > 0, its minimum and maximum, 1e308 where it has no maximum; and once with every field
at its smallest and at its largest extreme together. Booleans that switch extra output on (details,
return_full_text, do_sample, ...) are on. Routes added later are walked the same way without editing this
file. Every JSON body, every Server-Sent Event and every /metrics sample must be finite, and no number may be
a disguised infinity (|x| >= 1e29, e.g. a clamped -1e30 logprob).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

TINY = 5e-324
DISGUISED_INFINITY = 1e29
FALLBACK_TEXT = "宝玉笑道"


def _resolve(document: dict, schema: dict) -> dict:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _concrete(document: dict, schema: dict) -> dict:
    """The non-null branch of `anyOf: [X, null]`, resolved."""
    schema = _resolve(document, schema)
    for branch in schema.get("anyOf", []):
        branch = _resolve(document, branch)
        if branch.get("type") != "null":
            return branch
    return schema


def _extremes(schema: dict) -> list[float | int]:
    kind = schema.get("type")
    if kind not in ("integer", "number"):
        return []
    values: list[float | int] = []
    if kind == "number" and schema.get("exclusiveMinimum") == 0:
        values += [TINY, 1e-308]
    if "minimum" in schema:
        values.append(schema["minimum"])
    if "maximum" in schema:
        values.append(schema["maximum"])
    elif kind == "number":
        values.append(1e308)
    return values


def _minimal(document: dict, schema: dict) -> Any:
    schema = _concrete(document, schema)
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    kind = schema.get("type")
    if kind == "object":
        return {
            name: _minimal(document, prop)
            for name, prop in schema.get("properties", {}).items()
            if name in schema.get("required", [])
        }
    if kind == "array":
        return [_minimal(document, schema["items"])] * schema.get("minItems", 0)
    return {
        "string": FALLBACK_TEXT,
        "integer": schema.get("minimum", 1),
        "number": 1.0,
        "boolean": False,
    }.get(kind)


def _numeric_fields(document: dict, schema: dict, prefix: tuple = ()) -> Iterator[tuple[tuple, dict]]:
    schema = _concrete(document, schema)
    for name, prop in schema.get("properties", {}).items():
        prop = _concrete(document, prop)
        if prop.get("type") == "object":
            yield from _numeric_fields(document, prop, (*prefix, name))
        elif _extremes(prop):
            yield (*prefix, name), prop


def _switch_output_on(document: dict, schema: dict, body: Any) -> None:
    schema = _concrete(document, schema)
    if not isinstance(body, dict):
        return
    for name, prop in schema.get("properties", {}).items():
        prop = _concrete(document, prop)
        if prop.get("type") == "boolean" and "const" not in prop and name != "stream":
            body[name] = True
        elif prop.get("type") == "object":
            body.setdefault(name, {})
            _switch_output_on(document, prop, body[name])


def _set(body: dict, path: tuple, value: Any) -> dict:
    body = copy.deepcopy(body)
    node = body
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = value
    return body


def _bodies(document: dict, schema: dict) -> Iterator[dict]:
    resolved = _resolve(document, schema)
    examples = resolved.get("examples") or ([resolved["example"]] if "example" in resolved else [])
    base = copy.deepcopy(examples[0]) if examples else _minimal(document, schema)
    _switch_output_on(document, schema, base)
    yield base
    fields = list(_numeric_fields(document, schema))
    for path, prop in fields:
        for value in _extremes(prop):
            yield _set(base, path, value)
    for pick in (min, max):
        combined = base
        for path, prop in fields:
            combined = _set(combined, path, pick(_extremes(prop)))
        yield combined


def _refuse_constant(name: str) -> None:
    raise AssertionError(f"non-finite number {name} in a response")


def _assert_finite(value: Any, where: str) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        assert math.isfinite(value) and abs(value) < DISGUISED_INFINITY, f"{where}: {value}"
    elif isinstance(value, dict):
        for key, item in value.items():
            _assert_finite(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _assert_finite(item, f"{where}[{index}]")


def _check_response(response, where: str) -> None:
    assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
    kind = response.headers.get("content-type", "")
    if kind.startswith("application/json"):
        _assert_finite(json.loads(response.text, parse_constant=_refuse_constant), where)
    elif kind.startswith("text/event-stream"):
        events = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        assert events, f"{where}: an empty stream"
        for event in events:
            if event != "[DONE]":
                _assert_finite(json.loads(event, parse_constant=_refuse_constant), where)
    elif kind.startswith("text/plain") and "# TYPE" in response.text:  # Prometheus
        for line in response.text.splitlines():
            if line and not line.startswith("#"):
                value = float(line.rsplit(" ", 1)[1])
                assert math.isfinite(value), f"{where}: {line}"


def test_every_route_at_extreme_parameters_answers_finite_numbers(client: TestClient) -> None:
    document = client.app.openapi()
    calls = 0
    for path, item in document["paths"].items():
        for method, operation in item.items():
            where = f"{method.upper()} {path}"
            body_schema = (
                operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            )
            if body_schema is not None:
                for body in _bodies(document, body_schema):
                    _check_response(client.request(method, path, json=body), f"{where} {json.dumps(body)}")
                    calls += 1
                continue
            query = {}
            for parameter in operation.get("parameters", []):
                schema = _concrete(document, parameter["schema"])
                examples = schema.get("examples") or parameter.get("examples") or []
                if examples or parameter.get("required"):
                    query[parameter["name"]] = examples[0] if examples else _minimal(document, schema)
            variants = [query]
            for parameter in operation.get("parameters", []):
                for value in _extremes(_concrete(document, parameter["schema"])):
                    variants.append({**query, parameter["name"]: value})
            for params in variants:
                _check_response(client.request(method, path, params=params), f"{where} {params}")
                calls += 1
    assert calls > 40  # the walk reached every operation's variants


def test_analogy_of_a_word_minus_itself_is_finite(client: TestClient) -> None:
    # mean(positive) - mean(negative) is the zero vector: cosines against it are 0/0 unless guarded.
    response = client.post("/similar", json={"positive": ["宝玉"], "negative": ["宝玉"], "topn": 5})
    _check_response(response, "POST /similar 宝玉 - 宝玉")
