"""OpenAI's error shape, answered for every failure under /v1.

`{"error": {"message", "type", "param", "code"}}` is what the `openai` client parses (it raises by status
code and shows `message`). Every failure under /v1, including an unknown route, a wrong method, malformed
JSON and the request guard's 413/415, is rendered through `openai_error_body` (app/http/errors.py and
app/http/request_guard.py call it), so an OpenAI client never meets the TGI shape. `type` follows OpenAI's
vocabulary (`invalid_request_error`, `rate_limit_error`, `server_error`); `code` is this server's own error
kind (`validation`, `overloaded`, `not_found`, ...), `param` the offending field when there is one.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

OPENAI_PREFIX = "/v1"

# Status code -> OpenAI's error "type". 4xx the client can fix are invalid_request_error, as OpenAI does.
_TYPES = {429: "rate_limit_error", 424: "server_error", 500: "server_error", 503: "server_error"}


def is_openai_path(path: str) -> bool:
    """True for /v1 and everything under it: those paths answer errors in OpenAI's shape."""
    return path == OPENAI_PREFIX or path.startswith(OPENAI_PREFIX + "/")


def openai_error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "server_error")


def openai_error_body(
    message: str, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": openai_error_type(status), "param": param, "code": code}}


class OpenAIErrorDetail(BaseModel):
    message: str = Field(examples=["max_tokens: input should be greater than or equal to 1 (got 0)"])
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = Field(examples=["max_tokens"])
    code: str | None = Field(examples=["validation"])


class OpenAIErrorResponse(BaseModel):
    error: OpenAIErrorDetail


def openai_error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a /v1 route for OpenAPI: each status with OpenAI's error shape."""
    descriptions = {
        404: "no such model",
        422: "invalid request: a field out of range, of the wrong type, or a feature this model lacks",
        429: "overloaded: every batch slot and the waiting queue are taken; retry after Retry-After seconds",
    }
    return {
        status: {"model": OpenAIErrorResponse, "description": descriptions.get(status, "error")}
        for status in statuses
    }
