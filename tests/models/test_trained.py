"""TrainedModel.load on the real tiny model from the session fixture, and on damaged copies of it."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from models.artifacts import ArtifactError, manifest_digest, sha256_file
from models.cache import CacheSettings
from models.network import FORMAT_KEY, Network
from models.trained import TrainedModel


def test_load_the_tiny_model(tiny_model_dir: Path) -> None:
    model = TrainedModel.load(tiny_model_dir)
    assert model.directory == tiny_model_dir
    assert model.manifest["network"] == asdict(model.network.config)
    assert model.network.embedding.shape == model.vectors.matrix.shape
    assert model.tokenizer.cut("宝玉笑道") != []
    ids = np.array([[model.vectors.index["，"], model.vectors.index["。"]]])
    output, _ = model.network.forward_sequence(ids)
    assert model.network.scores(output[:, -1]).shape == (1, len(model.vectors))


def _copy(tiny_model_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "model"
    shutil.copytree(tiny_model_dir, copy)
    return copy


def _rehash(model_dir: Path, name: str) -> None:
    """Update the manifest's sha256 for a file we changed on purpose, so the shape check itself is reached."""
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"][name] = sha256_file(model_dir / name)
    manifest["manifest_sha256"] = manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")


def test_wrong_array_shape_is_an_artifact_error_naming_the_array(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    model_dir = _copy(tiny_model_dir, tmp_path)
    with np.load(model_dir / "lstm.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    arrays["lstm0.b"] = arrays["lstm0.b"][:-1]
    with open(model_dir / "lstm.npz", "wb") as handle:
        np.savez(handle, **arrays)
    _rehash(model_dir, "lstm.npz")
    with pytest.raises(ArtifactError, match=r"lstm\.npz: array 'lstm0\.b' has shape"):
        TrainedModel.load(model_dir)


def test_network_for_other_vectors_is_an_artifact_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy(tiny_model_dir, tmp_path)
    with np.load(model_dir / "lstm.npz", allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    config = json.loads(str(arrays[FORMAT_KEY]))
    config["vocab_size"] += 1
    arrays[FORMAT_KEY] = np.array(json.dumps(config))
    with open(model_dir / "lstm.npz", "wb") as handle:
        np.savez(handle, **arrays)
    _rehash(model_dir, "lstm.npz")
    with pytest.raises(ArtifactError, match="the vectors and the network come from different models"):
        TrainedModel.load(model_dir)


def test_tampered_file_and_missing_directory(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy(tiny_model_dir, tmp_path)
    with open(model_dir / "lstm.npz", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match=r"does not match manifest\.json"):
        TrainedModel.load(model_dir)
    with pytest.raises(ArtifactError, match="does not exist"):
        TrainedModel.load(tmp_path / "nowhere")


def test_a_format_3_model_without_adaptive_clusters_still_loads(tiny_model_dir: Path, tmp_path: Path) -> None:
    # Format 4 only added fixed arrays for the adaptive softmax head; a format-3 directory (a network without
    # them) means the same and is still served.
    model_dir = _copy(tiny_model_dir, tmp_path)
    model = TrainedModel.load(model_dir)
    config = replace(model.network.config, loss="cos_softmax")
    Network(config, model.vectors.matrix, np.random.default_rng(0)).save(model_dir / "lstm.npz")
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format_version"] = 3
    manifest["network"] = asdict(config)
    manifest["files"]["lstm.npz"] = sha256_file(model_dir / "lstm.npz")
    manifest["manifest_sha256"] = manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    loaded = TrainedModel.load(model_dir)
    assert loaded.manifest["format_version"] == 3 and loaded.network.buffers == {}


def test_a_cache_file_is_read_strictly(tiny_model_dir: Path, tmp_path: Path) -> None:
    model_dir = _copy(tiny_model_dir, tmp_path)
    assert TrainedModel.load(model_dir).cache is None  # trained with --no-cache: no cache.json
    manifest_path = model_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    (model_dir / "cache.json").write_text('{"weight": 0.2, "flatness": 5.0, "window": 300}', encoding="utf-8")
    manifest["files"]["cache.json"] = sha256_file(model_dir / "cache.json")
    manifest["manifest_sha256"] = manifest_digest(manifest)
    manifest_path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")
    assert TrainedModel.load(model_dir).cache == CacheSettings(weight=0.2, flatness=5.0, window=300)
    (model_dir / "cache.json").write_text('{"weight": 2.0, "flatness": 5.0, "window": 300}', encoding="utf-8")
    _rehash(model_dir, "cache.json")
    with pytest.raises(ArtifactError, match=r"cache\.json: cache weight must be a number in \[0, 1\)"):
        TrainedModel.load(model_dir)
