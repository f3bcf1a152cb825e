"""The novel's speakers as jieba words, so that a name is one token in training and in serving.

jieba's dictionary knows the names of a few famous characters (宝玉, 探春) but not most (黛玉, 贾母, 袭人).
Without its HMM they are cut into characters (黛 玉), and a user is shown `黛` where the next word is 黛玉;
with the HMM they are glued to the verb after them (袭人道, 惜春道),
rare words that are then spelled out character by character. The speaker extraction (training/characters.py)
finds the names from the novel's own quoted dialogue without any list, so before segmentation its names and
aliases are added to the tokenizer's dictionary: written, after the user's own dictionary if there is one,
to one dictionary file that segmentation uses and the model directory keeps (models/artifacts.py's
USER_DICT_FILE), so the server cuts prompts the same way. jieba suggests each name's frequency itself (the
lowest that keeps the name whole); the tag `nr` (a person's name) is what its tagger says of names.

jieba's dictionary also holds names glued to the one character after them (宝钗笑, 贾母因, 贾政道: forms
learnt from segmented text like this novel's), and they still win in `宝钗笑道`. They stay: removing them
(frequency-0 lines) cost 红楼梦 0.02 bits per character served in a fixed-plan comparison (one seed each; the
glued forms are frequent enough to be words of the vocabulary, which likely gives the n-gram longer reach).
"""

from __future__ import annotations

from pathlib import Path

from training.characters import Extraction, extract_characters

NAME_TAG = "nr"


def speaker_names(extraction: Extraction) -> list[str]:
    """Every name and alias of the extracted characters (most utterances first), each once."""
    characters = extraction.characters.characters
    return list(dict.fromkeys(name for character in characters for name in character.names))


def write_name_dictionary(
    chapters: list[str], user_dict: Path | None, path: Path
) -> tuple[Path | None, Extraction, list[str]]:
    """Extract the speakers, and write `path`: the user's dictionary (if any), then one `name nr` line per
    name it does not already hold. Returns the dictionary segmentation should use (`path`, or `user_dict`
    unchanged when no name was found), the extraction and the names added."""
    extraction = extract_characters(chapters, user_dict=user_dict)
    own = user_dict.read_text(encoding="utf-8") if user_dict is not None else ""
    listed = {line.split()[0] for line in own.splitlines() if line.split()}
    added = [name for name in speaker_names(extraction) if name not in listed]
    if not added:
        return user_dict, extraction, []
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [own.rstrip("\n")] if own.strip() else []
    lines += [f"{name} {NAME_TAG}" for name in added]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, extraction, added
