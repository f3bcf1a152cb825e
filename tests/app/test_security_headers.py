"""Security headers and no disclosure, on the real app and tiny model."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi.testclient import TestClient


def test_every_response_carries_security_headers(client: TestClient) -> None:
    for path in ("/", "/info", "/static/playground.js", "/no-such-route"):
        response = client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
        assert response.headers["x-frame-options"] == "DENY", path
        csp = response.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp, path
    playground_csp = client.get("/").headers["content-security-policy"]
    assert "default-src 'self'" in playground_csp and "unsafe-inline" not in playground_csp


def test_info_shows_no_absolute_paths(client: TestClient, tiny_model_dir) -> None:
    text = client.get("/info").text
    assert str(tiny_model_dir) not in text
    assert '"/' not in text.replace('"/"', ""), "an absolute path is shown on /info"


def test_static_redirect_does_not_echo_the_host_header(client: TestClient) -> None:
    for path in ("/static", "/generate/"):
        response = client.get(path, headers={"Host": "evil.example"}, follow_redirects=False)
        assert "evil.example" not in response.headers.get("location", ""), path
        assert "evil.example" not in response.text, path


def test_docs_pages_and_their_csp_name_no_other_origin(client: TestClient) -> None:
    # Before: /docs and /redoc loaded Swagger UI and ReDoc from a CDN (floating versions).
    for path in ("/docs", "/redoc"):
        response = client.get(path)
        assert response.status_code == 200
        assert "https://" not in response.text and "http://" not in response.text, path
        assert "http" not in response.headers["content-security-policy"], path
        for asset in re.findall(r'(?:src|href)="(/docs-assets/[^"]+)"', response.text):
            assert client.get(asset).status_code == 200, asset


def test_the_docs_csp_allows_only_the_pages_own_inline_scripts(client: TestClient) -> None:
    """No 'unsafe-inline' for scripts: each inline script of /docs is allowed by its own sha256, so an
    injected one would not run (tests/app/test_docs_browser.py shows the pages still work under it)."""
    for path in ("/docs", "/docs/oauth2-redirect", "/redoc"):
        response = client.get(path)
        script_src = re.search(r"script-src ([^;]*)", response.headers["content-security-policy"]).group(1)
        assert "unsafe-inline" not in script_src and "unsafe-eval" not in script_src, path
        for script in re.findall(r"<script>(.*?)</script>", response.text, flags=re.DOTALL):
            digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
            assert f"'sha256-{digest}'" in script_src.split(), path
    assert re.search(r"<script>", client.get("/docs").text)  # the case that needs a hash exists
