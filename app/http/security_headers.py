"""Security headers on every response.

The playground is plain same-origin HTML/JS, so its CSP allows only 'self'. /docs and /redoc load their
assets from this server too (app/routes/docs.py), but FastAPI's Swagger UI page starts with an inline script,
allowed by its sha256 (no 'unsafe-inline' for scripts); both UIs inject styles at run time (style-src keeps
'unsafe-inline', which runs no code) and ReDoc runs a blob: worker. Every page refuses to be framed
(frame-ancestors, and X-Frame-Options for old browsers).
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def docs_csp(script_hashes: tuple[str, ...]) -> str:
    """The CSP of /docs and /redoc: scripts from this server and the inline ones with these hashes."""
    return (
        f"default-src 'self'; script-src 'self' {' '.join(script_hashes)}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; worker-src 'self' blob:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )


DOCS_PATHS = ("/docs", "/redoc")
COMMON = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, docs_script_hashes: tuple[str, ...] = ()) -> None:
        self.app = app
        self.docs_csp = docs_csp(docs_script_hashes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        csp = self.docs_csp if path.startswith(DOCS_PATHS) else PAGE_CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in COMMON.items():
                    headers.setdefault(name, value)
                headers.setdefault("content-security-policy", csp)
            await send(message)

        await self.app(scope, receive, send_with_headers)
