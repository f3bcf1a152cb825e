"""models.artifacts: atomic model directories and verified manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.artifacts import FORMAT_VERSION, ArtifactError, read_manifest, sha256_file, write_model_dir


def _build(payload: bytes = b"weights") -> callable:
    def build(tmp: Path) -> dict:
        (tmp / "vectors.bin").write_bytes(payload)
        (tmp / "lstm.npz").write_bytes(payload * 2)
        return {"corpus": {"name": "test"}}

    return build


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_write_and_read_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "model"
    assert write_model_dir(target, _build()) == target
    manifest = read_manifest(target)
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["corpus"] == {"name": "test"}
    assert manifest["files"] == {
        "lstm.npz": sha256_file(target / "lstm.npz"),
        "vectors.bin": sha256_file(target / "vectors.bin"),
    }
    assert manifest["library_versions"]["numpy"]
    assert manifest["created_at"]
    assert _leftovers(tmp_path) == []


def test_sha256_file_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "f"
    path.write_bytes(b"abc" * 1_000_000)
    assert sha256_file(path) == hashlib.sha256(b"abc" * 1_000_000).hexdigest()


def test_crash_midway_leaves_no_target_and_no_temp_dir(tmp_path: Path) -> None:
    def build(tmp: Path) -> dict:
        (tmp / "vectors.bin").write_bytes(b"half")
        raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        write_model_dir(tmp_path / "model", build)
    assert list(tmp_path.iterdir()) == []


def test_existing_target_survives_a_failed_rewrite(tmp_path: Path) -> None:
    target = tmp_path / "model"
    write_model_dir(target, _build(b"old"))
    before = read_manifest(target)

    def build(tmp: Path) -> dict:
        (tmp / "vectors.bin").write_bytes(b"new")
        raise KeyboardInterrupt  # even an interrupt must not damage the old model

    with pytest.raises(KeyboardInterrupt):
        write_model_dir(target, build)
    assert read_manifest(target) == before
    assert (target / "vectors.bin").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_successful_rewrite_replaces_target(tmp_path: Path) -> None:
    target = tmp_path / "model"
    write_model_dir(target, _build(b"old"))
    write_model_dir(target, _build(b"new"))
    assert (target / "vectors.bin").read_bytes() == b"new"
    read_manifest(target)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_modified_file_is_rejected_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "model"
    write_model_dir(target, _build())
    (target / "lstm.npz").write_bytes(b"tampered")
    with pytest.raises(ArtifactError, match=r"lstm\.npz.*sha256.*does not match"):
        read_manifest(target)


def test_missing_listed_file_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "model"
    write_model_dir(target, _build())
    (target / "vectors.bin").unlink()
    with pytest.raises(ArtifactError, match=r"vectors\.bin.*missing"):
        read_manifest(target)


def test_wrong_format_version_is_rejected(tmp_path: Path) -> None:
    target = tmp_path / "model"
    write_model_dir(target, _build())
    manifest_path = target / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["format_version"] = FORMAT_VERSION + 1
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError, match="format_version"):
        read_manifest(target)


def test_missing_directory_and_broken_manifest(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        read_manifest(tmp_path / "absent")
    (tmp_path / "half").mkdir()
    with pytest.raises(ArtifactError, match=r"manifest\.json: missing"):
        read_manifest(tmp_path / "half")
    (tmp_path / "half" / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ArtifactError, match="not valid UTF-8 JSON"):
        read_manifest(tmp_path / "half")


def test_manifest_cannot_point_outside_the_directory(tmp_path: Path) -> None:
    target = tmp_path / "model"
    write_model_dir(target, _build())
    (tmp_path / "outside").write_bytes(b"x")
    manifest_path = target / "manifest.json"
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest["files"]["../outside"] = sha256_file(tmp_path / "outside")
    manifest_path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError, match="plain file name"):
        read_manifest(target)


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError) as info:
        read_manifest(tmp_path / "absent")
    assert "\n" not in str(info.value)


def test_refuses_to_replace_a_directory_that_is_not_a_model(tmp_path: Path) -> None:
    target = tmp_path / "documents"
    target.mkdir()
    (target / "thesis.txt").write_text("precious", encoding="utf-8")
    with pytest.raises(ArtifactError, match="not a model directory"):
        write_model_dir(target, _build())
    assert (target / "thesis.txt").read_text(encoding="utf-8") == "precious"
    (tmp_path / "file").write_text("x", encoding="utf-8")
    with pytest.raises(ArtifactError, match="not a directory"):
        write_model_dir(tmp_path / "file", _build())


def test_empty_existing_directory_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    write_model_dir(target, _build())
    read_manifest(target)
