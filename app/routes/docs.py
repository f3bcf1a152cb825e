"""GET /docs (Swagger UI) and GET /redoc (ReDoc), with their JavaScript and CSS served by this server.

FastAPI's defaults load both from a CDN with floating versions (`swagger-ui-dist@5`, `redoc@2`) and no
integrity hashes, so the pages were blank wherever the server runs offline, and what they ran could change
under us. The assets here are the builds shipped in the `fastapi-standalone-docs` wheel,
pinned in pyproject.toml: Swagger UI 5.33.1 and ReDoc 2.5.4, the same files on every install. Only its static
files are used (its own helper patches FastAPI's module functions globally, which this app does not want).

FastAPI's pages start Swagger UI with an inline script. The pages are built once, so their inline scripts are
fixed, and the docs CSP (app/http/security_headers.py) allows exactly those by their sha256 instead of
'unsafe-inline' (which would let any injected script run as well).
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_standalone_docs
from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

ASSETS_URL = "/docs-assets"
ASSETS_DIR = Path(fastapi_standalone_docs.__file__).resolve().parent / "static"
TITLE = "novel-lstm"

router = APIRouter()


def assets() -> StaticFiles:
    """The app mounts this at ASSETS_URL."""
    return StaticFiles(directory=ASSETS_DIR)


_SWAGGER_UI = get_swagger_ui_html(
    openapi_url="/openapi.json",
    title=f"{TITLE} - Swagger UI",
    swagger_js_url=f"{ASSETS_URL}/swagger/swagger-ui-bundle.js",
    swagger_css_url=f"{ASSETS_URL}/swagger/swagger-ui.css",
    swagger_favicon_url=f"{ASSETS_URL}/fastapi/favicon.png",
    oauth2_redirect_url="/docs/oauth2-redirect",
).body
_OAUTH2_REDIRECT = get_swagger_ui_oauth2_redirect_html().body
_REDOC = get_redoc_html(
    openapi_url="/openapi.json",
    title=f"{TITLE} - ReDoc",
    redoc_js_url=f"{ASSETS_URL}/redoc/redoc.standalone.js",
    redoc_favicon_url=f"{ASSETS_URL}/fastapi/favicon.png",
    with_google_fonts=False,
).body
_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes() -> tuple[str, ...]:
    """CSP sources ('sha256-...') of every inline script of the docs pages, as browsers hash them (the
    exact bytes between <script> and </script>)."""
    scripts = [
        m.group(1) for page in (_SWAGGER_UI, _OAUTH2_REDIRECT, _REDOC) for m in _INLINE_SCRIPT.finditer(page)
    ]
    digests = (base64.b64encode(hashlib.sha256(script).digest()).decode() for script in scripts)
    return tuple(dict.fromkeys(f"'sha256-{digest}'" for digest in digests))


@router.get("/docs", include_in_schema=False)
def swagger_ui() -> HTMLResponse:
    return HTMLResponse(_SWAGGER_UI)


@router.get("/docs/oauth2-redirect", include_in_schema=False)
def swagger_ui_redirect() -> HTMLResponse:
    return HTMLResponse(_OAUTH2_REDIRECT)


@router.get("/redoc", include_in_schema=False)
def redoc() -> HTMLResponse:
    return HTMLResponse(_REDOC)


@router.get("/redoc/logo-mini.svg", include_in_schema=False)
def redoc_logo() -> FileResponse:
    # ReDoc's bundle asks for its logo relative to the page, not to the script.
    return FileResponse(ASSETS_DIR / "redoc" / "logo-mini.svg", media_type="image/svg+xml")
