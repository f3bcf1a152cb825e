"""A trained model directory, loaded: manifest, vectors, network and the tokenizer that cut the novel."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from models.artifacts import (
    CACHE_FILE,
    CHARACTERS_FILE,
    MANIFEST_FILE,
    MEMORY_FILE,
    NETWORK_FILE,
    NGRAM_FILE,
    REQUIRED_FILES,
    USER_DICT_FILE,
    VECTORS_FILE,
    ArtifactError,
    read_manifest,
)
from models.cache import CacheSettings
from models.characters import CharacterList
from models.memory import ExchangeMemory
from models.network import Network
from models.ngram import Mixture
from models.tokenizer import Tokenizer
from models.vectors import WordVectors


@dataclass
class TrainedModel:
    directory: Path
    manifest: dict
    vectors: WordVectors
    network: Network
    tokenizer: Tokenizer
    characters: CharacterList
    mixture: Mixture | None = None  # the LSTM + n-gram mixture the model serves, when it was trained with one
    # The continuous cache's weights (models/cache.py), when training found that it helps.
    cache: CacheSettings | None = None
    # The novel's exchanges recalled for a chat turn; None for a model trained before chat had a memory
    # (its chat still works, ungrounded, as it did then).
    memory: ExchangeMemory | None = None

    @classmethod
    def load(cls, model_dir: str | Path) -> TrainedModel:
        """Verify (format version, sha256 of every file, array shapes) and load; any failure is an
        ArtifactError whose message names the file, the problem and the fix."""
        directory = Path(model_dir)
        manifest = read_manifest(directory)
        retrain = "retrain it with `python -m training --out DIR ...`"
        for name in REQUIRED_FILES:
            if name not in manifest.get("files", {}):
                raise ArtifactError(f"{directory / name}: not listed in {MANIFEST_FILE}; {retrain}")
        try:
            vectors = WordVectors.read_binary(directory / VECTORS_FILE)
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{directory / VECTORS_FILE}: {error}") from None
        try:
            network = Network.load(directory / NETWORK_FILE, vectors.matrix)
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{error}; {retrain}") from None
        network.prepare_inference()
        mixture = None
        if NGRAM_FILE in manifest.get("files", {}):
            try:
                mixture = Mixture.load(directory / NGRAM_FILE, len(vectors))
            except ValueError as error:
                raise ArtifactError(f"{error}; {retrain}") from None
        cache = None
        if CACHE_FILE in manifest.get("files", {}):
            try:
                cache = CacheSettings.load(directory / CACHE_FILE)
            except ValueError as error:
                raise ArtifactError(f"{error}; {retrain}") from None
        segmentation = manifest.get("segmentation") or {}
        user_dict = directory / USER_DICT_FILE if segmentation.get("user_dict") else None
        if user_dict is not None and not user_dict.is_file():
            raise ArtifactError(
                f"{user_dict}: the manifest names a user dictionary but it is missing; {retrain}"
            )
        try:
            tokenizer = Tokenizer(
                user_dict,
                hmm=bool(segmentation.get("hmm", True)),
                mode=str(segmentation.get("tokenizer", "jieba")),
            )
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{directory}: cannot build the tokenizer ({error})") from None
        try:
            characters = CharacterList.load(directory / CHARACTERS_FILE)
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{directory / CHARACTERS_FILE}: {error}; {retrain}") from None
        memory = None
        if MEMORY_FILE in manifest.get("files", {}):
            try:
                memory = ExchangeMemory.load(directory / MEMORY_FILE)
            except (OSError, ValueError) as error:
                raise ArtifactError(f"{directory / MEMORY_FILE}: {error}; {retrain}") from None
        return cls(
            directory=directory,
            manifest=manifest,
            vectors=vectors,
            network=network,
            tokenizer=tokenizer,
            characters=characters,
            mixture=mixture,
            cache=cache,
            memory=memory,
        )
