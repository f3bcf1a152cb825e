"""The model directory format (DESIGN §6): atomic writing and verified reading of manifest.json.

A model directory holds vectors.bin, lstm.npz, report.png, optional userdict.txt and manifest.json, which
lists the sha256 of every other file. It is built in a hidden temporary sibling and renamed into place, so a
crash or a bug never leaves a half-written model where a server would load it.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import secrets
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_LIBRARIES = ("novel-lstm", "numpy", "jieba", "gensim", "charset-normalizer")


class ArtifactError(Exception):
    """A model directory that cannot be used.

    str() is one line naming the directory or file, the problem and the fix.
    """


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _fsync_path(path: Path) -> None:
    # Directories are fsynced too: a rename is only durable once the parent directory entry is on disk.
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() and hasattr(os, "O_DIRECTORY") else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the data files were synced already
        pass
    finally:
        os.close(fd)


def write_model_dir(target: Path, build: Callable[[Path], dict]) -> Path:
    """Build a model directory atomically.

    build(tmp) writes its files into the temporary directory tmp and returns the manifest dict; this adds
    format_version, created_at, library_versions and files {name: sha256}, writes manifest.json, fsyncs and
    renames the directory into place. On any exception the temporary directory is removed, the exception
    re-raised and target is left as it was (absent, or the previous model).
    """
    target = Path(target)
    # Replacing renames the old directory aside and deletes it: never do that to something not ours.
    if target.exists() and not target.is_dir():
        raise ArtifactError(f"{target}: exists and is not a directory; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not (target / MANIFEST_NAME).is_file():
        raise ArtifactError(
            f"{target}: a non-empty directory without {MANIFEST_NAME}, so not a model directory; "
            "refusing to replace it, choose another output path"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        manifest = dict(build(tmp))
        files = {}
        for path in sorted(tmp.iterdir()):
            if path.name == MANIFEST_NAME:
                continue
            if not path.is_file():
                raise ArtifactError(
                    f"model directory {target}: build produced {path.name}, which is not a file"
                )
            _fsync_path(path)
            files[path.name] = sha256_file(path)
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "library_versions": library_versions(),
            "files": files,
            **{key: value for key, value in manifest.items() if key not in ("format_version", "files")},
        }
        manifest_path = tmp / MANIFEST_NAME
        with open(manifest_path, "w", encoding="utf-8") as handle:
            json.dump(manifest, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_path(tmp)
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_path(target.parent)
    return target


def _swap_into_place(tmp: Path, target: Path) -> None:
    # POSIX cannot atomically replace a non-empty directory, so the old model is renamed aside first; the
    # window in which target is missing is two renames long, and it never holds a partial model.
    if not target.exists():
        os.rename(tmp, target)
        return
    old = target.parent / f".{target.name}.old-{secrets.token_hex(4)}"
    os.rename(target, old)
    try:
        os.rename(tmp, target)
    except BaseException:
        os.rename(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def read_manifest(model_dir: Path) -> dict:
    """Return the manifest of a verified model directory, or raise ArtifactError saying what is wrong."""
    model_dir = Path(model_dir)
    retrain = "retrain it with `python -m training --out DIR ...` or point to another model directory"
    if not model_dir.is_dir():
        raise ArtifactError(f"model directory {model_dir}: does not exist; {retrain}")
    manifest_path = model_dir / MANIFEST_NAME
    if not manifest_path.is_file():
        raise ArtifactError(f"{manifest_path}: missing, so this is not a finished model directory; {retrain}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: not valid UTF-8 JSON ({exc}); {retrain}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path}: expected a JSON object at the top level; {retrain}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: format_version {version!r}, this program reads format_version "
            f"{FORMAT_VERSION}; {retrain}"
        )
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{manifest_path}: no 'files' table of sha256 hashes; {retrain}")
    for name, expected in files.items():
        # Names are plain file names inside the directory; anything else would let a manifest point elsewhere.
        if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
            raise ArtifactError(f"{manifest_path}: file entry {name!r} is not a plain file name; {retrain}")
        path = model_dir / name
        if not path.is_file():
            raise ArtifactError(f"{path}: listed in manifest.json but missing; {retrain}")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"{path}: sha256 {actual[:12]}… does not match manifest.json ({str(expected)[:12]}…), "
                f"the file was modified or corrupted; {retrain}"
            )
    return manifest
