"""GET /: the playground page (plain HTML/CSS/JS from app/static, no build step)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(tags=["playground"])


# In the schema, so that `Allow: GET, POST` on / (POST / is TGI's compatibility route) lists only
# documented methods.
@router.get("/", response_class=HTMLResponse, summary="The playground page (HTML)")
def playground() -> FileResponse:
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")
