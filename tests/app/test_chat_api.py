"""POST /v1/chat/completions and GET /characters on the real app and the tiny real model.

In-process (TestClient) for shapes and bad input; over real sockets with the unchanged `openai` client and
huggingface_hub's InferenceClient (plain and streaming) against a real uvicorn server.
"""

from __future__ import annotations

import json

import httpx
import pytest
from fastapi.testclient import TestClient

URL = "/v1/chat/completions"
SEEDED = {"max_tokens": 30, "temperature": 0.9, "seed": 11}


def _error(response: httpx.Response) -> dict:
    """OpenAI's error shape, which /v1 routes answer in (app/http/openai_errors.py)."""
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    return error


def test_characters_route_and_info(client: TestClient) -> None:
    listed = client.get("/characters").json()
    assert listed["default"] == listed["characters"][0]["name"]
    first = listed["characters"][0]
    assert {"name", "aliases", "utterances", "examples"} <= set(first)
    info = client.get("/info").json()
    assert info["characters"]["top"][0]["name"] == first["name"]
    assert info["characters"]["attributed"] == listed["attributed"]


def test_plain_reply_shape_usage_and_seed(client: TestClient) -> None:
    body = {"messages": [{"role": "user", "content": "你今天去哪里了？我在找你"}], **SEEDED}
    first = client.post(URL, json=body)
    assert first.status_code == 200, first.text
    data = first.json()
    assert data["object"] == "chat.completion" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["finish_reason"] in ("stop", "length")
    reply = choice["message"]["content"]
    assert reply and "”" not in reply
    usage = data["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert 1 <= usage["completion_tokens"] <= 30 and usage["prompt_tokens"] > 5
    assert data["character"] == client.get("/characters").json()["default"] and data["seed"] == 11
    assert client.post(URL, json=body).json()["choices"][0]["message"]["content"] == reply


def test_text_parts_system_character_and_extension_fields(client: TestClient) -> None:
    parts = [{"type": "text", "text": "你好，"}, {"type": "text", "text": "姐姐"}]
    body = {"messages": [{"role": "system", "content": "你是林黛玉"}, {"role": "user", "content": parts}]}
    data = client.post(URL, json={**body, **SEEDED}).json()
    assert data["character"] == "黛玉" and data["choices"][0]["message"]["content"]
    data = client.post(
        URL, json={**body, **SEEDED, "character": "宝玉", "user_character": "凤姐", "temperature": 0}
    ).json()
    assert (data["character"], data["user_character"]) == ("宝玉", "凤姐")


def test_stream_chunks_end_with_done(client: TestClient) -> None:
    body = {"messages": [{"role": "user", "content": "吃了饭没有？"}], **SEEDED}
    plain = client.post(URL, json=body).json()["choices"][0]["message"]["content"]
    stream = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", URL, json=stream) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "[DONE]"
    import json

    chunks = [json.loads(line) for line in lines[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip() == plain
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] in ("stop", "length") and all(f is None for f in finish[:-1])
    usage = chunks[-1]["usage"]
    assert (
        chunks[-1]["choices"] == []
        and usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    )


HELLO = [{"role": "user", "content": "你好"}]


@pytest.mark.parametrize(
    ("body", "status", "param", "says"),
    [
        ({"messages": []}, 422, "messages", "at least 1 item"),
        ({"messages": [{"role": "user", "content": ""}]}, 422, "messages[0].content", "at least 1 character"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 422, "messages[0].role", "wizard"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            422,
            "messages[0].content",
            "should be 'text' (got \"image_url\")",
        ),
        ({"messages": HELLO, "n": 5}, 422, "n", "the limit is 4 (MAX_BEST_OF)"),
        ({"messages": HELLO, "character": "孙悟空"}, 404, "character", "宝玉"),  # names the known ones
        ({"messages": HELLO, "max_tokens": 65}, 422, "max_tokens", "limit is 64"),
        ({"messages": HELLO, "max_completion_tokens": 65}, 422, "max_completion_tokens", "limit is 64"),
        ({"messages": HELLO, "temperature": 3}, 422, "temperature", "2"),
        ({"messages": HELLO, "presence_penalty": 5}, 422, "presence_penalty", "2"),
        ({"messages": HELLO, "user_character": "我 们"}, 422, "user_character", "pattern"),
        ({"messages": HELLO, "stream_options": {"include_usage": 0}}, 422, "stream_options", "boolean"),
        ({"messages": "你好"}, 422, "messages", "list"),
    ],
)
def test_bad_input_is_a_clear_4xx_naming_the_field(
    client: TestClient, body: dict, status: int, param: str, says: str
) -> None:
    response = client.post(URL, json=body)
    assert response.status_code == status, response.text
    error = _error(response)
    assert says in error["message"]
    assert (error.get("param") or "").startswith(param)


def test_only_a_system_message_lets_the_character_speak_first(client: TestClient) -> None:
    body = {"messages": [{"role": "system", "content": "你是黛玉"}], **SEEDED}
    data = client.post(URL, json=body).json()
    assert data["character"] == "黛玉" and data["choices"][0]["message"]["content"]


def test_presence_and_frequency_penalties_are_applied(client: TestClient) -> None:
    body = {
        "messages": [{"role": "user", "content": "你好"}],
        "max_tokens": 30,
        "temperature": 0,
        "stop": ["。"],
    }
    plain = client.post(URL, json=body).json()["choices"][0]["message"]["content"]
    penalised = client.post(URL, json={**body, "presence_penalty": 2, "frequency_penalty": 2}).json()
    assert penalised["choices"][0]["message"]["content"] != plain  # greedy, so only the penalty can change it


def test_a_fifty_turn_history_gets_a_reply(client: TestClient) -> None:
    messages = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"这是第{i}句很长很长的话，说了又说"}
        for i in range(50)
    ]
    response = client.post(URL, json={"messages": messages, **SEEDED})
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"]


# ------------------------------------------------------------------------------- real clients, real server
def test_openai_client_plain_and_streaming(server_url: str) -> None:
    import openai

    client = openai.OpenAI(base_url=server_url + "/v1", api_key="unused", max_retries=0)
    messages = [
        {"role": "system", "content": "你是林黛玉"},
        {"role": "user", "content": "妹妹，今儿身上可好些？"},
    ]
    first = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=30, seed=5, temperature=0.8
    )
    reply = first.choices[0].message.content
    assert reply and "”" not in reply and first.choices[0].finish_reason in ("stop", "length")
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    again = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=30, seed=5, temperature=0.8
    )
    assert again.choices[0].message.content == reply

    stream = client.chat.completions.create(
        model="tiny", messages=messages, max_tokens=30, seed=5, temperature=0.8, stream=True
    )
    pieces = [chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices]
    assert len([p for p in pieces if p]) >= 1 and "".join(pieces).strip() == reply

    with pytest.raises(openai.UnprocessableEntityError) as raised:
        client.chat.completions.create(model="tiny", messages=messages, n=5)
    assert "n is 5, the limit is 4" in str(raised.value)  # the client shows the server's message
    with pytest.raises(openai.NotFoundError, match="known: 宝玉"):
        client.chat.completions.create(model="tiny", messages=messages, extra_body={"character": "孙悟空"})


def test_huggingface_inference_client_plain_and_streaming(server_url: str) -> None:
    from huggingface_hub import InferenceClient

    client = InferenceClient(base_url=server_url + "/v1")
    messages = [{"role": "user", "content": "你在做什么呢？"}]
    first = client.chat_completion(messages, max_tokens=25, seed=9, temperature=0.7)
    reply = first.choices[0].message.content
    assert reply and "”" not in reply
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    assert (
        client.chat_completion(messages, max_tokens=25, seed=9, temperature=0.7).choices[0].message.content
        == reply
    )
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat_completion(messages, max_tokens=25, seed=9, temperature=0.7, stream=True)
        if chunk.choices
    )
    assert streamed.strip() == reply


def _memory_turn(client: TestClient) -> tuple[str, str]:
    """A line of the novel's training chapters and the character who answered it there."""
    memory = client.app.state.service.model.memory
    exchange = next(e for e in memory.exchanges if 6 <= len(e.said) <= 30 and len(e.answer) <= 60)
    return exchange.said, exchange.answerer


def test_the_reply_carries_the_novels_lines_that_grounded_it(client: TestClient) -> None:
    said, answerer = _memory_turn(client)
    body = {"messages": [{"role": "user", "content": said}], "character": answerer, **SEEDED}
    data = client.post(URL, json=body).json()
    grounding = data["grounding"]
    assert grounding and all(line["chapter"] >= 1 for line in grounding)
    assert any(line["said"] == said for line in grounding)  # the very exchange is the best match
    assert all(f"“{line['said']}”" in line["text"] for line in grounding)
    # The streamed answer sends the same lines in its first chunk, and the same (ranked) reply.
    with client.stream("POST", URL, json={**body, "stream": True}) as response:
        chunks = [
            json.loads(line[5:])
            for line in response.iter_lines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"
        ]
    assert chunks[0]["grounding"] == grounding
    streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert streamed == data["choices"][0]["message"]["content"]
    # Nothing in common with the novel: no lines, and still a reply.
    plain = client.post(URL, json={**body, "messages": [{"role": "user", "content": "WiFi密码"}]}).json()
    assert plain["grounding"] == [] and plain["choices"][0]["message"]["content"]
