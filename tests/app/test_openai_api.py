"""The /v1 infrastructure with the real `openai` client: the model list, and OpenAI's error shape on every
/v1 path (unknown route, wrong method, invalid body, request guard), never the TGI shape."""

from __future__ import annotations

import httpx
import openai
import pytest
from fastapi.testclient import TestClient


def _assert_openai_error(response: httpx.Response, status: int, code: str, *fragments: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    expected_type = "invalid_request_error" if status < 500 and status != 429 else None
    if expected_type:
        assert error["type"] == expected_type
    for fragment in fragments:
        assert fragment in error["message"], (fragment, error["message"])
    return error


@pytest.fixture(scope="module")
def openai_client(server_url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server_url}/v1", api_key="unused", max_retries=0, timeout=30)


def test_openai_client_lists_and_retrieves_the_model(openai_client: openai.OpenAI, tiny_model_dir) -> None:
    models = openai_client.models.list()
    assert [model.id for model in models.data] == [tiny_model_dir.name]
    assert models.data[0].object == "model" and models.data[0].created > 1_600_000_000
    assert openai_client.models.retrieve(tiny_model_dir.name).id == tiny_model_dir.name
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.models.retrieve("gpt-4")
    assert "gpt-4" in caught.value.body["message"] and caught.value.body["code"] == "model_not_found"


def test_unknown_v1_route_and_wrong_method_use_openai_shape(client: TestClient) -> None:
    _assert_openai_error(client.get("/v1/nothing"), 404, "not_found", "/v1/nothing")
    _assert_openai_error(client.get("/v1"), 404, "not_found")
    _assert_openai_error(client.post("/v1/models"), 405, "method_not_allowed", "POST")
    # Outside /v1 the TGI shape stays.
    assert client.get("/nothing").json()["error_type"] == "not_found"


def test_request_guard_errors_under_v1_use_openai_shape(client: TestClient) -> None:
    response = client.post("/v1/models", content=b"x", headers={"content-type": "text/plain"})
    _assert_openai_error(response, 415, "unsupported_media_type")


def test_openai_client_raises_its_own_error_classes(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client.get("/nothing", cast_to=object)
    assert caught.value.body["code"] == "not_found"
