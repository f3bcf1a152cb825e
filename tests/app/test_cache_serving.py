"""The continuous cache as served: /predict, /generate and chat read the model's cache.json, and the
CONTINUOUS_CACHE setting serves the model without it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from app.settings import Settings
from models.artifacts import CACHE_FILE, MANIFEST_FILE, manifest_digest, sha256_file
from models.cache import CacheSettings, ContinuousCache
from models.decoding import Decoder, SamplingParams
from models.trained import TrainedModel

PROMPT = "凤姐儿笑道：“老祖宗也去逛逛。”凤姐儿笑道：“老祖宗"


@pytest.fixture(scope="module")
def cached_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with a cache.json listed in its manifest, as training writes it."""
    model_dir = tmp_path_factory.mktemp("cached") / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    CacheSettings(weight=0.3, flatness=10.0, window=64).save(model_dir / CACHE_FILE)
    manifest = json.loads((model_dir / MANIFEST_FILE).read_text(encoding="utf-8"))
    manifest["files"][CACHE_FILE] = sha256_file(model_dir / CACHE_FILE)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (model_dir / MANIFEST_FILE).write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    return model_dir


def _client(model_dir: Path, **settings: object) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(model_dir=model_dir, **settings))) as client:
        yield client


@pytest.fixture(scope="module")
def cached(cached_model_dir: Path) -> Iterator[TestClient]:
    yield from _client(cached_model_dir)


@pytest.fixture(scope="module")
def uncached(cached_model_dir: Path) -> Iterator[TestClient]:
    yield from _client(cached_model_dir, continuous_cache=False)


def _predict(client: TestClient) -> dict[str, float]:
    response = client.post("/predict", json={"inputs": PROMPT, "top_k": 50})
    assert response.status_code == 200, response.text
    return {c["word"]: c["probability"] for c in response.json()["candidates"]}


def test_served_predictions_and_generations_are_the_cached_decoders(
    cached_model_dir: Path, cached: TestClient, uncached: TestClient
) -> None:
    model = TrainedModel.load(cached_model_dir)
    assert model.cache == CacheSettings(weight=0.3, flatness=10.0, window=64)
    with_cache = Decoder(model.network, model.vectors, model.tokenizer, cache=ContinuousCache(model.cache))
    without = Decoder(model.network, model.vectors, model.tokenizer)
    for client, decoder in ((cached, with_cache), (uncached, without)):
        expected = {c.word: c.probability for c in decoder.predict_next(PROMPT, top_k=50)[1]}
        assert _predict(client) == pytest.approx(expected, abs=1e-6)
        params = SamplingParams(max_new_tokens=20, do_sample=True, seed=7, top_k=20)
        text = decoder.generate(PROMPT, params).run().text
        body = {
            "inputs": PROMPT,
            "parameters": {"max_new_tokens": 20, "do_sample": True, "seed": 7, "top_k": 20},
        }
        assert client.post("/generate", json=body).json()["generated_text"] == text
    # The two settings serve different distributions for a prompt that repeats itself.
    assert _predict(cached) != pytest.approx(_predict(uncached), abs=1e-3)
