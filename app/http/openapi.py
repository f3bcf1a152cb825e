"""The OpenAPI document, made to say exactly what the server accepts and answers.

FastAPI derives the schema from the pydantic models, but two kinds of truth live elsewhere:

* **limits from settings** (MAX_NEW_TOKENS, TOP_K_LIMIT, MAX_STOP_SEQUENCES, ...) are checked at run time by
  the service, so they cannot be static `Field(le=...)` constraints; they are written into the document here,
  from the same Settings object the checks read, for every field of that name, in any model or query
  parameter. A new route whose fields reuse these names (TGI's `inputs`, `max_new_tokens`, `top_k`, `stop`)
  is described with the server's limits without doing anything, and must enforce them (the Schemathesis test
  in tests/app/test_schema_fuzz.py finds any disagreement);
* **statuses answered outside the routes**: the request guard (400 invalid UTF-8, 408 stalled body, 413 body
  too large, 415 not JSON, 422 lone surrogate) answers for every operation with a body, and every 422 is this
  app's error shape, not FastAPI's default `HTTPValidationError` (which this app never sends).

Clients that generate code from the schema, and fuzzers that test the server against it, read this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from app.settings import Settings
from models.tokenizer import NON_BLANK

_GUARD_RESPONSES = {
    "400": "the body is not valid UTF-8 JSON (the message gives the byte offset)",
    "408": "the body stalled for longer than BODY_READ_TIMEOUT seconds between chunks",
    "413": "the body is larger than MAX_BODY_BYTES (see /info)",
    "415": "the Content-Type is not JSON; send 'Content-Type: application/json'",
    "422": "invalid request: the message names the field, the value received and the limit",
}
_APP_ERROR = {"$ref": "#/components/schemas/ErrorResponse"}
# OpenAI's error shape, which the middleware answers under /v1 (app/http/request_guard.py, error_payload).
_OPENAI_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_FASTAPI_VALIDATION_ERROR = "#/components/schemas/HTTPValidationError"

# Which JSON types a keyword constrains, so a limit lands on the right branch of `anyOf: [integer, null]`.
_KEYWORD_TYPES = {
    "maximum": {"integer", "number"},
    "minLength": {"string"},
    "maxLength": {"string"},
    "pattern": {"string"},
    "maxItems": {"array"},
    "items": {"array"},
}


# Cross-field rules the shared request models cannot state. TGI refuses prefill logprobs and best_of > 1 for
# a streamed answer (app/protocols/tgi.py), so decoder_input_details must be false or null and best_of at
# most 1 where the answer is a stream; and best_of > 1 needs sampling (do_sample, or a temperature other
# than 1, top_k, top_p < 1 or typical_p < 1, as SamplingParams.sampling says).
def _parameters(*branches: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {"parameters": {"anyOf": [{"type": "null"}, *branches]}}}


def _set(name: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [name], "properties": {name: schema}}


_ONE_SEQUENCE = {"type": "object", "properties": {"best_of": {"maximum": 1}}}
_BEST_OF_SAMPLES = _parameters(
    _ONE_SEQUENCE,
    _set("do_sample", {"const": True}),
    _set("temperature", {"type": "number", "not": {"const": 1}}),
    _set("top_k", {"type": "integer"}),
    _set("top_p", {"type": "number", "exclusiveMaximum": 1}),
    _set("typical_p", {"type": "number", "exclusiveMaximum": 1}),
)
_STREAMABLE = _parameters(
    {
        "type": "object",
        "properties": {"decoder_input_details": {"enum": [False, None]}, "best_of": {"maximum": 1}},
    }
)
_NOT_STREAMED = {"properties": {"stream": {"enum": [False, None]}}}
_REQUEST_RULES = {
    ("post", "/generate_stream"): {"allOf": [_STREAMABLE, _BEST_OF_SAMPLES]},
    ("post", "/generate"): {"allOf": [{"anyOf": [_NOT_STREAMED, _STREAMABLE]}, _BEST_OF_SAMPLES]},
    ("post", "/"): {"allOf": [{"anyOf": [_NOT_STREAMED, _STREAMABLE]}, _BEST_OF_SAMPLES]},
    ("post", "/tokenize"): _BEST_OF_SAMPLES,
}


def field_limits(settings: Settings) -> dict[str, dict[str, Any]]:
    """JSON Schema constraints per field name, from the settings the service checks requests against."""
    word = {"minLength": 1, "maxLength": settings.max_word_chars, "pattern": NON_BLANK}
    words = {"maxItems": settings.max_similar_words, "items": word}
    prompt = {"maxLength": settings.max_prompt_chars, "pattern": NON_BLANK}
    return {
        "inputs": prompt,
        "prompt": {**prompt, "items": prompt},  # OpenAI completions: a string or a list of one
        # TGI's max_input_tokens, which is MAX_PROMPT_CHARS (a token is at least one character).
        "truncate": {"maximum": settings.max_prompt_chars},
        "max_new_tokens": {"maximum": settings.max_new_tokens},
        # OpenAI's names for it (/v1/completions, /v1/chat/completions).
        "max_tokens": {"maximum": settings.max_new_tokens},
        "max_completion_tokens": {"maximum": settings.max_new_tokens},
        "top_k": {"maximum": settings.top_k_limit},
        "stop": {  # a list (TGI, OpenAI) or one string (OpenAI)
            "maxItems": settings.max_stop_sequences,
            "items": {"minLength": 1, "maxLength": settings.max_stop_chars},
            "minLength": 1,
            "maxLength": settings.max_stop_chars,
        },
        "top_n_tokens": {"maximum": settings.max_top_n_tokens},
        "logprobs": {"maximum": settings.max_top_n_tokens},  # OpenAI completions' name for it
        # Candidates of one request: TGI's best_of, OpenAI's n and best_of.
        "best_of": {"maximum": settings.max_best_of},
        "n": {"maximum": settings.max_best_of},
        "topn": {"maximum": settings.max_topn},
        # TGI's u64; pydantic prints le=2**64-1 as the float 1.8446744073709552e19, which is 2**64.
        "seed": {"maximum": 2**64 - 1},
        "word": word,
        "positive": words,
        "negative": words,
    }


def _integer_bounds(schema: dict[str, Any]) -> None:
    # pydantic prints the bounds of `int | None` fields as floats (minimum: 1.0); an integer's are integers.
    for branch in schema.get("anyOf") or schema.get("oneOf") or [schema]:
        if branch.get("type") == "integer":
            for keyword in ("minimum", "maximum"):
                value = branch.get(keyword)
                if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                    branch[keyword] = int(value)


def _constrain(schema: dict[str, Any], limits: dict[str, Any]) -> None:
    branches = schema.get("anyOf") or schema.get("oneOf") or [schema]
    for branch in branches:
        kind = branch.get("type")
        for keyword, value in limits.items():
            if kind not in _KEYWORD_TYPES[keyword]:
                continue
            if keyword == "items":
                branch.setdefault("items", {}).update(value)
            elif keyword == "maximum" and "maximum" in branch:
                branch["maximum"] = min(branch["maximum"], value)
            else:
                branch[keyword] = value


def _error_schema(path: str) -> dict[str, Any]:
    return _OPENAI_ERROR if path.startswith("/v1/") else _APP_ERROR


def describe_server(document: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Write the settings' limits and the guard's statuses into a FastAPI-generated document (in place)."""
    limits = field_limits(settings)
    for component in document.get("components", {}).get("schemas", {}).values():
        for name, prop in component.get("properties", {}).items():
            _integer_bounds(prop)
            if name in limits:
                _constrain(prop, limits[name])
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            for parameter in operation.get("parameters", []):
                _integer_bounds(parameter.get("schema", {}))
                if parameter.get("name") in limits:
                    _constrain(parameter["schema"], limits[parameter["name"]])
            rule = _REQUEST_RULES.get((method, path))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if rule is not None and body is not None:
                body["schema"] = {"allOf": [body["schema"], rule]}
            responses = operation.setdefault("responses", {})
            for response in responses.values():
                schema = response.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref") == _FASTAPI_VALIDATION_ERROR:
                    response["content"]["application/json"]["schema"] = _error_schema(path)
            statuses = dict(_GUARD_RESPONSES) if "requestBody" in operation else {}
            if operation.get("parameters"):
                statuses["422"] = _GUARD_RESPONSES["422"]
            for status, description in statuses.items():
                responses.setdefault(
                    status,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": _error_schema(path)}},
                    },
                )
    schemas = document.get("components", {}).get("schemas", {})
    if _FASTAPI_VALIDATION_ERROR.rsplit("/", 1)[1] in schemas and _FASTAPI_VALIDATION_ERROR not in str(
        document
    ):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    return document


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve the described document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = describe_server(document, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
