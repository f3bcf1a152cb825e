"""The one exception the engine and the protocols raise for a request that cannot be served.

Its vocabulary is the status code and the error kind that both protocols share: TGI's ErrorResponse kinds
(`validation` 422, `generation` 424, `overloaded` 429) and OpenAI's statuses for the same failures. The engine
decides *what* went wrong; app/http/errors.py decides how it is written (TGI's or OpenAI's JSON shape, by
path).
"""

from __future__ import annotations

from typing import Any


class APIError(Exception):
    """A client-facing error; app/http/errors.py renders it in the shape of the path's protocol."""

    def __init__(
        self,
        status_code: int,
        error_type: str,
        message: str,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.headers = headers  # e.g. Retry-After on 429
        self.status_code = status_code
        self.error_type = error_type
        self.message = message
        self.extra = extra


class ClientDisconnected(Exception):
    """The client of a plain request went away before its generation ended (the generation was cancelled)."""
