"""One JSON error shape for every failure: {"error": "<what to do>", "error_type": "<kind>", ...extra}.

FastAPI's own validation errors, malformed JSON, unknown routes and wrong methods are converted too, so a
client never has to parse two formats (the shape follows text-generation-inference's ErrorResponse).
Under /v1 the same errors are rendered in OpenAI's shape instead (app/http/openai_errors.py), since OpenAI
clients call those routes; `error_response` is the one place that chooses.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from app.engine.errors import APIError, ClientDisconnected
from app.http.openai_errors import is_openai_path, openai_error_body

logger = logging.getLogger("app")

# Extra advice for fields whose plain range message would leave a person guessing.
_FIELD_HINTS = {
    "temperature": "for greedy decoding leave temperature out and set do_sample to false",
    "top_p": "1 switches nucleus sampling off",
    "repetition_penalty": "1 means no penalty, values like 1.1-1.3 discourage repeats",
    "inputs": 'send the prompt as a string, e.g. "宝玉笑道"',
    # TGI's and OpenAI's features this model cannot honour: say why, not only which values are allowed.
    "best_of": "best_of > 1 is not supported on /v1/completions (n returns several choices); TGI's "
    "best_of is 1 or more, up to max_best_of in GET /info, and needs sampling",
    "watermark": "watermark is not supported: the green-list watermark (Kirchenbauer et al. 2023) is not "
    "implemented for this model; send false",
    "grammar": "grammar is not supported: this word-level LSTM writes the novel's prose and has no "
    "constrained (JSON/regex) decoding; send null",
    "adapter_id": "adapter_id is not supported: the server serves one model and no LoRA adapters (GET "
    "/info); send null",
    "n": "n is how many choices to return, 1 or more (the limit: max_best_of in GET /info)",
    "suffix": "suffix is not supported: the LSTM only continues text; put it in the prompt",
    "logit_bias": "logit_bias is not supported: its keys are token ids of OpenAI's tokenizers, which mean "
    "nothing to this model's word vocabulary; send null",
    "prompt": "send exactly one prompt, as a string (or a list of one string): this server completes one "
    "text per request",
}


def error_body(message: str, error_type: str, **extra: Any) -> dict[str, Any]:
    return {"error": message, "error_type": error_type, **extra}


def error_payload(
    path: str, status: int, error_type: str, message: str, param: str | None = None, **extra: Any
) -> dict[str, Any]:
    """The body of an error on `path`: OpenAI's shape under /v1 (`error_type` becomes its `code`, extra
    fields are dropped: OpenAI clients know none), the TGI shape with its extra fields everywhere else."""
    if is_openai_path(path):
        return openai_error_body(message, status, code=error_type, param=param)
    return error_body(message, error_type, **extra)


def error_response(
    request: Request,
    status: int,
    error_type: str,
    message: str,
    headers: dict[str, str] | None = None,
    param: str | None = None,
    **extra: Any,
) -> JSONResponse:
    body = error_payload(request.url.path, status, error_type, message, param=param, **extra)
    return JSONResponse(body, status_code=status, headers=headers)


def _location(loc: tuple[Any, ...]) -> str:
    # ("body", "parameters", "top_p") -> "parameters.top_p"; ("query", "word") -> "word"; list indices as [i].
    parts = [part for part in loc if part not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "request body"


def _shown(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    try:
        shown = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def _field(error: dict[str, Any]) -> str:
    return "request body" if error.get("type") == "json_invalid" else _location(tuple(error.get("loc", ())))


def describe_validation_error(error: dict[str, Any]) -> str:
    """One readable sentence for one pydantic error, naming the field and the value received."""
    kind = error.get("type", "")
    where = _location(tuple(error.get("loc", ())))
    if kind == "json_invalid":
        detail = error.get("ctx", {}).get("error", "")
        position = error.get("loc", ())[-1]
        where_in_body = f" at character {position}" if isinstance(position, int) else ""
        return (
            f"the request body is not valid JSON ({detail}{where_in_body}); "
            'send a JSON object such as {"inputs": "宝玉笑道", "parameters": {"max_new_tokens": 20}}'
        )
    if kind == "missing":
        if where == "request body":
            return 'the request body is missing; send a JSON object such as {"inputs": "宝玉笑道"}'
        return f"{where} is required"
    if kind == "extra_forbidden":
        return f"{where} is not a known field; see /docs for the accepted fields"
    message = error.get("msg", "is invalid")
    sentence = f"{where}: {message[0].lower() + message[1:] if message else message}"
    if "input" in error and kind not in ("model_type", "dict_type"):
        sentence += f" (got {_shown(error['input'])})"
    field = str(error.get("loc", ("",))[-1])
    if field in _FIELD_HINTS:
        sentence += f"; {_FIELD_HINTS[field]}"
    return sentence


async def _api_error(request: Request, exc: APIError) -> JSONResponse:
    extra = dict(exc.extra)
    param = extra.pop("param", None)
    return error_response(
        request, exc.status_code, exc.error_type, exc.message, exc.headers, param=param, **extra
    )


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    messages = [describe_validation_error(error) for error in errors]
    fields = [_field(error) for error in errors]
    message = "; ".join(dict.fromkeys(messages))
    param = fields[0] if fields and fields[0] != "request body" else None
    return error_response(request, 422, "validation", message, param=param, fields=fields)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path, found by asking the router about each method.
    Starlette's own 405 names only the first route that matched the path (`Allow: GET` on /similar, which
    also takes POST). Mounted apps (/static) match any method, so they are not asked; they serve GET."""
    routes = [route for route in request.app.router.routes if not isinstance(route, Mount)]
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    return allowed or ["GET", "HEAD"]


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    headers = dict(exc.headers or {})
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}; the API is listed at /docs"
        error_type = "not_found"
    elif exc.status_code == 405:
        allow = ", ".join(allowed_methods(request))
        headers["Allow"] = allow
        if request.method == "OPTIONS":  # RFC 9110: OPTIONS asks which methods the resource supports
            return Response(status_code=204, headers=headers)
        message = f"{request.method} is not allowed on {request.url.path} (only {allow}); see /docs"
        error_type = "method_not_allowed"
    else:
        message = str(exc.detail)
        error_type = "http"
    return error_response(request, exc.status_code, error_type, message, headers)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # A bug on our side, never the client's input: log the traceback, answer with the same JSON shape.
    logger.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, 500, "internal", "internal server error; the server log has the details")


# nginx's "client closed request": only ever seen in logs and metrics, since the client is gone.
CLIENT_CLOSED_REQUEST = 499


async def _client_disconnected(request: Request, exc: ClientDisconnected) -> Response:
    return Response(status_code=CLIENT_CLOSED_REQUEST)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(APIError, _api_error)
    app.add_exception_handler(ClientDisconnected, _client_disconnected)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)


class ErrorResponse(BaseModel):
    error: str = Field(examples=["parameters.top_p: input should be less than or equal to 1 (got 1.5)"])
    error_type: str = Field(
        examples=["validation"],
        description="validation (422), generation (424), overloaded (429), as TGI; not_found, "
        "method_not_allowed and the request guard's kinds otherwise",
    )
