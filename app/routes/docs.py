"""GET /docs (Swagger UI) and GET /redoc (ReDoc), with their JavaScript and CSS served by this server.

FastAPI's defaults load both from a CDN with floating versions (`swagger-ui-dist@5`, `redoc@2`) and no
integrity hashes, so the pages were blank wherever the server runs offline, and what they ran could change
under us (issue 12 item 13). The assets here are the builds shipped in the `fastapi-standalone-docs` wheel,
pinned in pyproject.toml: Swagger UI 5.33.1 and ReDoc 2.5.4, the same files on every install. Only its static
files are used (its own helper patches FastAPI's module functions globally, which this app does not want).
"""

from __future__ import annotations

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


@router.get("/docs", include_in_schema=False)
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} - Swagger UI",
        swagger_js_url=f"{ASSETS_URL}/swagger/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS_URL}/swagger/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS_URL}/fastapi/favicon.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
    )


@router.get("/docs/oauth2-redirect", include_in_schema=False)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc", include_in_schema=False)
def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} - ReDoc",
        redoc_js_url=f"{ASSETS_URL}/redoc/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS_URL}/fastapi/favicon.png",
        with_google_fonts=False,
    )


@router.get("/redoc/logo-mini.svg", include_in_schema=False)
def redoc_logo() -> FileResponse:
    # ReDoc's bundle asks for its logo relative to the page, not to the script.
    return FileResponse(ASSETS_DIR / "redoc" / "logo-mini.svg", media_type="image/svg+xml")
