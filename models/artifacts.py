"""The model directory format: its file names, atomic writing and verified reading of manifest.json.

A model directory holds the files named below; manifest.json lists the sha256 of every other file. It is built
in a hidden temporary sibling and renamed into place, so a crash or a bug never leaves a half-written model
where a server would load it. docs/architecture.md describes each file.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import platform
import secrets
import shutil
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

# 2: the open-vocabulary token stream (models/vocabulary.py: rare words spelled with their characters,
# <unk>), vocabulary and word2vec from the training chapters only. A format-1 model deleted unknown
# words from the text and from prompts.
# 3: characters.json (the novel's speakers, for chat) is part of every model directory.
# 4: lstm.npz may hold fixed arrays beside the trained ones (the adaptive softmax head's word clusters,
# "out.cluster"). A format-3 directory holds none and means the same as before, so it is still read.
FORMAT_VERSION = 4
OLDEST_READABLE_VERSION = 3

# The files of a model directory: every reader and writer names them through these constants.
MANIFEST_FILE = "manifest.json"  # settings, metrics and the sha256 of every other file
VECTORS_FILE = "vectors.bin"  # the vocabulary and its word2vec vectors, word2vec C binary format
NETWORK_FILE = "lstm.npz"  # the network's configuration and weights (NumPy, no pickle)
CHARACTERS_FILE = "characters.json"  # the novel's speakers, for chat
NGRAM_FILE = "ngram.npz"  # optional: the token n-gram and its mixture weight
CACHE_FILE = "cache.json"  # optional: the continuous cache's weights (models/cache.py)
MEMORY_FILE = "memory.json"  # optional: the novel's exchanges recalled for chat (absent in older models)
USER_DICT_FILE = "userdict.txt"  # optional: the jieba user dictionary the novel was cut with
REPORT_FILE = "report.png"  # optional: the training curve and the held-out table, for people
REQUIRED_FILES = (VECTORS_FILE, NETWORK_FILE, CHARACTERS_FILE)
MANIFEST_HASH_KEY = "manifest_sha256"
# Killed runs leave these behind; older than this they cannot belong to a run still writing.
STALE_TEMP_SECONDS = 3600
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
    check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target)
    tmp = target.parent / f".{target.name}.tmp-{secrets.token_hex(4)}"
    tmp.mkdir()
    try:
        manifest = dict(build(tmp))
        files = {}
        for path in sorted(tmp.iterdir()):
            if path.name == MANIFEST_FILE:
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
        manifest[MANIFEST_HASH_KEY] = manifest_digest(manifest)
        manifest_path = tmp / MANIFEST_FILE
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


def manifest_digest(manifest: dict) -> str:
    """sha256 of the manifest's canonical JSON without its own hash, so edits or flipped bits are detected."""
    content = {key: value for key, value in manifest.items() if key != MANIFEST_HASH_KEY}
    canonical = json.dumps(content, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def is_model_dir(path: Path) -> bool:
    """True only for a directory this program wrote: a parseable manifest whose own hash matches, listing
    exactly the files the directory holds (nothing foreign that replacing it would delete)."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        manifest = json.loads((path / MANIFEST_FILE).read_text(encoding="utf-8"))
        if not isinstance(manifest, dict) or manifest.get(MANIFEST_HASH_KEY) != manifest_digest(manifest):
            return False
        files = manifest.get("files")
        if not isinstance(files, dict) or not files:
            return False
        present = {entry.name for entry in path.iterdir()}
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return present == set(files) | {MANIFEST_FILE} and all((path / name).is_file() for name in files)


def check_replaceable(target: Path) -> None:
    """Raise ArtifactError unless target is absent, an empty directory, or verifiably a model we wrote.

    Replacing renames the old directory aside and deletes it: never do that to something not ours.
    """
    target = Path(target)
    if target.is_symlink():
        raise ArtifactError(f"{target}: is a symbolic link; choose another output path")
    if target.exists() and not target.is_dir():
        raise ArtifactError(f"{target}: exists and is not a directory; choose another output path")
    if target.is_dir() and any(target.iterdir()) and not is_model_dir(target):
        raise ArtifactError(
            f"{target}: a non-empty directory that is not a model directory written by this program "
            f"(no verified {MANIFEST_FILE}, or files it does not list); refusing to replace it, "
            "choose another output path"
        )


def check_writable(target: Path) -> None:
    """Raise ArtifactError unless a model directory can be created next to target (before any long work)."""
    target = Path(target)
    check_replaceable(target)
    parent = target.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ArtifactError(f"{target}: {existing} is not a directory; choose another output path")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        probe = parent / f".{target.name}.tmp-probe-{secrets.token_hex(4)}"
        probe.mkdir()
        probe.rmdir()
    except OSError as exc:
        raise ArtifactError(
            f"{target}: cannot write in {parent} ({exc.strerror or exc}); choose a writable output path"
        ) from exc


def remove_stale_temporaries(target: Path, max_age_seconds: float = STALE_TEMP_SECONDS) -> list[Path]:
    """Delete `.NAME.tmp-*` and `.NAME.old-*` directories that killed runs left next to target.

    Only real directories (not links) older than max_age_seconds, so a concurrent run's fresh temporary is
    never touched. Returns the removed paths.
    """
    target = Path(target)
    removed = []
    if not target.parent.is_dir():
        return removed
    now = time.time()
    for prefix in (f".{target.name}.tmp-", f".{target.name}.old-"):
        for path in target.parent.glob(glob.escape(prefix) + "*"):
            try:
                info = path.lstat()
            except OSError:
                continue
            if not stat.S_ISDIR(info.st_mode) or now - info.st_mtime < max_age_seconds:
                continue
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


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


def read_json_file(path: str | Path) -> object:
    """The parsed content of one of a model directory's JSON files; ValueError naming the file when it is not
    UTF-8 JSON (each reader then checks the shape it expects)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path}: not valid UTF-8 JSON ({error})") from None


def read_manifest(model_dir: Path) -> dict:
    """Return the manifest of a verified model directory, or raise ArtifactError saying what is wrong."""
    model_dir = Path(model_dir)
    retrain = "retrain it with `python -m training --out DIR ...` or point to another model directory"
    if not model_dir.is_dir():
        raise ArtifactError(f"model directory {model_dir}: does not exist; {retrain}")
    manifest_path = model_dir / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ArtifactError(f"{manifest_path}: missing, so this is not a finished model directory; {retrain}")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{manifest_path}: not valid UTF-8 JSON ({exc}); {retrain}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{manifest_path}: expected a JSON object at the top level; {retrain}")
    version = manifest.get("format_version")
    if isinstance(version, int) and version < OLDEST_READABLE_VERSION:
        raise ArtifactError(
            f"{manifest_path}: written by an older version of novel-lstm (format_version {version}, this "
            f"program reads {OLDEST_READABLE_VERSION} to {FORMAT_VERSION}: the open-vocabulary token stream "
            "and characters.json); retrain it with "
            "`make train OUT=DIR` or `python -m training --out DIR ...`"
        )
    if not isinstance(version, int) or not OLDEST_READABLE_VERSION <= version <= FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path}: format_version {version!r}, this program reads format_version "
            f"{OLDEST_READABLE_VERSION} to {FORMAT_VERSION}; {retrain}"
        )
    if manifest.get(MANIFEST_HASH_KEY) != manifest_digest(manifest):
        raise ArtifactError(
            f"{manifest_path}: its content does not match its {MANIFEST_HASH_KEY} (edited or corrupted); "
            f"{retrain}"
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
            raise ArtifactError(f"{path}: listed in {MANIFEST_FILE} but missing; {retrain}")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactError(
                f"{path}: sha256 {actual[:12]}… does not match {MANIFEST_FILE} ({str(expected)[:12]}…), "
                f"the file was modified or corrupted; {retrain}"
            )
    return manifest
