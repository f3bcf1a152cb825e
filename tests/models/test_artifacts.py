"""models.artifacts: atomic model directories and verified manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.artifacts import (
    FORMAT_VERSION,
    ArtifactError,
    manifest_digest,
    read_manifest,
    sha256_file,
    write_model_dir,
)


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
    manifest["manifest_sha256"] = manifest_digest(manifest)  # a consistent manifest of another version
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
    manifest["manifest_sha256"] = manifest_digest(manifest)  # so the file-name check itself is reached
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


def test_replaces_only_a_verified_model(tmp_path: Path) -> None:
    # A manifest.json alone, or a model with a foreign file beside it, is not ours to delete.
    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "manifest.json").write_text("{}")
    (stray / "keep.js").write_text("k")
    with pytest.raises(ArtifactError, match="refusing to replace"):
        write_model_dir(stray, _build())
    assert (stray / "keep.js").read_text() == "k"

    model = write_model_dir(tmp_path / "model", _build())
    (model / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="refusing to replace"):
        write_model_dir(model, _build(b"new"))
    assert (model / "notes.txt").read_text() == "mine"

    (model / "notes.txt").unlink()
    write_model_dir(model, _build(b"new"))  # a verified model of ours is replaced
    assert (model / "vectors.bin").read_bytes() == b"new"


def test_stale_temporaries_of_killed_runs_are_removed(tmp_path: Path) -> None:
    # `.NAME.tmp-*` left by kill -9 are cleaned; a fresh one (a concurrent run) and
    # other names are left alone.
    import os
    import time

    stale = tmp_path / ".model.tmp-deadbeef"
    stale.mkdir()
    (stale / "lstm.npz").write_bytes(b"x" * 1000)
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".model.tmp-0123abcd"
    fresh.mkdir()
    other = tmp_path / ".othermodel.tmp-deadbeef"
    other.mkdir()
    os.utime(other, (old, old))
    write_model_dir(tmp_path / "model", _build())
    assert not stale.exists()
    assert fresh.exists() and other.exists()


@pytest.mark.parametrize("edit", ["flip", "add", "remove"])
def test_manifest_metadata_is_integrity_checked(tmp_path: Path, edit: str) -> None:
    # Flipped bits in manifest.json's own metadata are refused with one line.
    target = write_model_dir(tmp_path / "model", _build())
    path = target / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if edit == "flip":
        manifest["corpus"]["name"] = "tesu"
    elif edit == "add":
        manifest["evaluation"] = {"bpc": 1.0}
    else:
        del manifest["created_at"]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ArtifactError) as raised:
        read_manifest(target)
    assert "manifest_sha256" in str(raised.value) and "\n" not in str(raised.value)
