"""Checks every request body before any route sees it: size, read time, media type, UTF-8, lone surrogates.

One ASGI middleware for the whole app rather than per-route code, so a new route is covered without doing
anything:

* a body larger than `max_body_bytes` is refused with 413 before it is read in full (Content-Length first,
  then counted while reading), so one client cannot make a worker hold 100 MB;
* a body that has not arrived in full `body_read_timeout` seconds after the headers is answered 408 and
  the connection freed (a half-sent or dripping body would otherwise hold a worker's request forever);
  the headers themselves have their own deadline (`install_header_timeout`, below);
* an explicit non-JSON Content-Type is 415 naming the type received;
* bytes that are not UTF-8 are 400 "not valid UTF-8 JSON" with the byte offset;
* a JSON string holding a lone UTF-16 surrogate (`"\\ud800"`, valid JSON but not encodable text) is 422
  naming the field; before this it reached the model and failed as a 500, or broke a stream half-way.

The checked body is replayed to the app unchanged; after it, `receive` is the server's own, so routes still
see `http.disconnect` when a client goes away.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.errors import error_payload

# Cheap pre-check: a surrogate can only enter through a \uD800-\uDFFF escape (raw UTF-8 cannot encode one).
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_BODY_METHODS = {"POST", "PUT", "PATCH"}


async def send_json_error(scope: Scope, send: Send, status: int, error_type: str, message: str) -> None:
    body = json.dumps(error_payload(scope.get("path", ""), status, error_type, message), ensure_ascii=False)
    encoded = body.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(encoded)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": encoded})


def _lone_surrogate_field(value: Any, where: str = "") -> str | None:
    """The dotted path of the first string (or key) holding a surrogate code point, else None."""
    if isinstance(value, str):
        return (where or "request body") if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            name = f"{where}.{key}" if where else str(key)
            if _SURROGATE.search(str(key)):
                return name
            found = _lone_surrogate_field(item, name)
            if found:
                return found
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _lone_surrogate_field(item, f"{where}[{index}]")
            if found:
                return found
    return None


def _is_json_type(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


class RequestGuardMiddleware:
    def __init__(self, app: ASGIApp, max_body_bytes: int, body_read_timeout: float) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_read_timeout = body_read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        limit = self.max_body_bytes
        too_large = (
            f"request body larger than {limit} bytes; send a shorter prompt or fewer items "
            "(the limits are listed at /info)"
        )
        declared = headers.get(b"content-length", b"").decode("latin-1").strip()
        if declared.isdigit() and int(declared) > limit:
            await send_json_error(scope, send, 413, "payload_too_large", too_large)
            return

        chunks: list[bytes] = []
        size = 0
        # One deadline for the whole body, not per chunk: a byte every few seconds would otherwise hold the
        # request (and a worker's memory for it) for as long as the client likes.
        deadline = asyncio.get_running_loop().time() + self.body_read_timeout
        while True:
            try:
                remaining = deadline - asyncio.get_running_loop().time()
                message = await asyncio.wait_for(receive(), max(remaining, 0.0))
            except TimeoutError:
                await send_json_error(
                    scope,
                    send,
                    408,
                    "request_timeout",
                    f"the request body did not arrive within {self.body_read_timeout:g} s; send it in full",
                )
                return
            if message["type"] == "http.disconnect":
                return  # the client left before sending its body: nothing to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await send_json_error(scope, send, 413, "payload_too_large", too_large)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)

        if body:
            error = self._check(body, headers.get(b"content-type", b"").decode("latin-1"))
            if error is not None:
                await send_json_error(scope, send, *error)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    def _check(body: bytes, content_type: str) -> tuple[int, str, str] | None:
        if not _is_json_type(content_type):
            media = content_type.split(";", 1)[0].strip()
            return (
                415,
                "unsupported_media_type",
                f"Content-Type {media!r} is not accepted; send the body as JSON "
                "with the header 'Content-Type: application/json'",
            )
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return (
                400,
                "invalid_body",
                f"the request body is not valid UTF-8 JSON "
                f"(byte 0x{body[exc.start]:02x} at offset {exc.start}); encode the JSON text as UTF-8",
            )
        if _SURROGATE_ESCAPE.search(body):
            try:
                parsed = json.loads(body)
            except ValueError:
                return None  # not JSON: the route's own validation says so
            field = _lone_surrogate_field(parsed)
            if field is not None:
                return (
                    422,
                    "validation",
                    f"{field}: contains a lone UTF-16 surrogate (a \\uD800-\\uDFFF escape without its pair), "
                    "which is not text; send valid Unicode",
                )
        return None


# uvicorn answers a request it cannot parse by itself, in plain text ("Invalid HTTP request received."),
# before any ASGI app or middleware sees it: a URL longer than 65,535 bytes (httptools cannot split it),
# a malformed request line or header. Clients of this API parse JSON errors, so that answer is replaced by
# the app's error shape (before this, a 90 KB URL was answered in plain text). uvicorn has no hook; both
# of its HTTP/1.1 protocol classes route every such answer through `send_400_response`.
_LONGEST_URL = 65_535
# These answers bypass the app and so its security headers middleware: the same headers, by hand.
_RAW_SECURITY_HEADERS = "x-content-type-options: nosniff\r\nx-frame-options: DENY\r\n"


def _parse_error_response(url_length: int) -> bytes:
    if url_length > _LONGEST_URL:
        status, reason, error_type = 414, "URI Too Long", "uri_too_long"
        message = (
            f"the URL is {url_length} bytes long, the limit is {_LONGEST_URL}; "
            "send long inputs in a POST body instead"
        )
    else:
        status, reason, error_type = 400, "Bad Request", "invalid_http"
        message = (
            "the request could not be parsed as HTTP/1.1 (malformed request line or header, or headers "
            "too long); check the client"
        )
    body = json.dumps({"error": message, "error_type": error_type}).encode("utf-8")
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n{_RAW_SECURITY_HEADERS}"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _send_json_parse_error(self: Any, msg: str) -> None:
    url = getattr(self, "url", b"")  # httptools' protocol accumulates the raw URL here
    self.transport.write(_parse_error_response(len(url) if isinstance(url, bytes) else 0))
    self.transport.close()


def install_json_parse_errors() -> None:
    """Make uvicorn's unparseable-request answers JSON (idempotent; a no-op for protocols not installed)."""
    import importlib

    for module_name, class_name in (
        ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol"),
        ("uvicorn.protocols.http.h11_impl", "H11Protocol"),
    ):
        try:
            protocol = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue  # that HTTP implementation is not installed
        if hasattr(protocol, "send_400_response"):
            protocol.send_400_response = _send_json_parse_error


# uvicorn starts no timer while a client sends its request line and headers: a connection that sends half
# its headers (or one byte every few seconds) is held forever (900 such connections were held after 45 s).
# This arms one deadline per request, from the connection's start or the first byte of the next request on a
# kept-alive connection, until the headers are complete; past it the client gets a JSON 408 and the
# connection is closed. Only the httptools protocol (what uvicorn[standard] uses) is covered.
def _headers_timed_out(protocol: Any) -> None:
    protocol._header_timer = None
    if protocol.transport.is_closing():
        return
    seconds = type(protocol)._header_read_timeout
    body = json.dumps(
        {
            "error": f"the request headers did not arrive within {seconds:g} s; send the whole request",
            "error_type": "request_timeout",
        }
    ).encode("utf-8")
    protocol.transport.write(
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        + _RAW_SECURITY_HEADERS.encode("ascii")
        + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n".encode("ascii")
        + body
    )
    protocol.transport.close()


def _arm(protocol: Any) -> None:
    if getattr(protocol, "_header_timer", None) is None:
        protocol._header_timer = protocol.loop.call_later(
            type(protocol)._header_read_timeout, _headers_timed_out, protocol
        )


def _disarm(protocol: Any) -> None:
    timer = getattr(protocol, "_header_timer", None)
    if timer is not None:
        timer.cancel()
        protocol._header_timer = None


def install_header_timeout(seconds: float) -> None:
    """Give every request `seconds` to send its headers (idempotent; the latest value wins)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return  # httptools is not installed
    already = hasattr(HttpToolsProtocol, "_header_read_timeout")
    HttpToolsProtocol._header_read_timeout = seconds
    if already:
        return
    connection_made = HttpToolsProtocol.connection_made
    on_message_begin = HttpToolsProtocol.on_message_begin
    on_headers_complete = HttpToolsProtocol.on_headers_complete
    connection_lost = HttpToolsProtocol.connection_lost

    def patched_connection_made(self: Any, transport: Any) -> None:
        connection_made(self, transport)
        _arm(self)

    def patched_on_message_begin(self: Any) -> None:
        on_message_begin(self)
        _arm(self)  # a kept-alive connection's next request: its own deadline from its first byte

    def patched_on_headers_complete(self: Any) -> None:
        _disarm(self)
        on_headers_complete(self)

    def patched_connection_lost(self: Any, exc: Exception | None) -> None:
        _disarm(self)
        connection_lost(self, exc)

    HttpToolsProtocol.connection_made = patched_connection_made
    HttpToolsProtocol.on_message_begin = patched_on_message_begin
    HttpToolsProtocol.on_headers_complete = patched_on_headers_complete
    HttpToolsProtocol.connection_lost = patched_connection_lost
