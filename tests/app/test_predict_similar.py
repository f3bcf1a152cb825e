"""POST /predict and GET/POST /similar."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient


def test_predict_lists_candidates_by_probability(client: TestClient, vocabulary: list[str]) -> None:
    response = client.post("/predict", json={"inputs": "黛玉听了", "top_k": 8})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tokens"] == ["黛玉", "听", "了"]
    candidates = body["candidates"]
    assert len(candidates) == 8
    probabilities = [c["probability"] for c in candidates]
    assert probabilities == sorted(probabilities, reverse=True)
    assert 0 < sum(probabilities) <= 1.0 + 1e-6
    assert all(vocabulary[c["id"]] == c["word"] and -1 <= c["similarity"] <= 1 for c in candidates)


def test_predict_top_candidate_is_the_greedy_next_word(client: TestClient) -> None:
    top = client.post("/predict", json={"inputs": "黛玉听了", "top_k": 1}).json()["candidates"][0]
    greedy = client.post("/generate", json={"inputs": "黛玉听了", "parameters": {"max_new_tokens": 1}}).json()
    assert greedy["generated_text"] == top["word"]


def test_predict_lower_temperature_sharpens(client: TestClient) -> None:
    cold = client.post("/predict", json={"inputs": "宝玉", "top_k": 1, "temperature": 0.5}).json()
    warm = client.post("/predict", json={"inputs": "宝玉", "top_k": 1, "temperature": 2.0}).json()
    assert cold["candidates"][0]["probability"] > warm["candidates"][0]["probability"]


def test_similar_get_matches_cosine_ranking(client: TestClient) -> None:
    response = client.get("/similar", params={"word": "宝玉", "topn": 5})
    assert response.status_code == 200, response.text
    similar = response.json()["similar"]
    vectors = client.app.state.service.model.vectors
    cosines = vectors.unit @ vectors.unit[vectors.index["宝玉"]]
    cosines[vectors.index["宝玉"]] = -np.inf
    # The five highest cosines in order. Compared by value, not by word: two words whose cosines agree to
    # float32 rounding may come out in either order from another summation order of the same product.
    top = np.sort(cosines)[::-1][:5]
    words = [item["word"] for item in similar]
    assert len(set(words)) == 5 and "宝玉" not in words
    assert [item["similarity"] for item in similar] == pytest.approx(top.tolist(), abs=1e-5)
    assert all(
        item["similarity"] == pytest.approx(cosines[vectors.index[item["word"]]], abs=1e-5)
        for item in similar
    )


def test_similar_post_analogy(client: TestClient) -> None:
    response = client.post("/similar", json={"positive": ["宝玉", "黛玉"], "negative": ["袭人"], "topn": 4})
    assert response.status_code == 200, response.text
    body = response.json()
    words = [item["word"] for item in body["similar"]]
    assert len(words) == 4 and not {"宝玉", "黛玉", "袭人"} & set(words)
    assert body["positive"] == ["宝玉", "黛玉"] and body["negative"] == ["袭人"]


def test_subnormal_temperature_gives_finite_greedy_answers(client: TestClient) -> None:
    # Before: /predict answered "probability": null and /generate repeated one word with
    # logprob -1e30 for temperature 5e-324.
    greedy = client.post("/predict", json={"inputs": "宝玉笑道", "top_k": 3}).json()["candidates"]
    for temperature in (5e-324, 1e-308):
        response = client.post(
            "/predict", json={"inputs": "宝玉笑道", "top_k": 3, "temperature": temperature}
        )
        assert response.status_code == 200, response.text
        candidates = response.json()["candidates"]
        assert candidates[0]["word"] == greedy[0]["word"]
        assert candidates[0]["probability"] == 1.0
        assert all(isinstance(c["probability"], float) for c in candidates)

        parameters = {"max_new_tokens": 6, "do_sample": True, "temperature": temperature, "seed": 3}
        generated = client.post(
            "/generate", json={"inputs": "宝玉笑道", "parameters": {**parameters, "details": True}}
        )
        assert generated.status_code == 200, generated.text
        plain = client.post(
            "/generate", json={"inputs": "宝玉笑道", "parameters": {"max_new_tokens": 6, "details": True}}
        ).json()
        assert generated.json()["generated_text"] == plain["generated_text"]
        assert all(token["logprob"] == 0.0 for token in generated.json()["details"]["tokens"])
