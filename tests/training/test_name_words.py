"""The novel's speakers become words of the segmentation: real jieba, invented dialogue and the tiny model."""

from __future__ import annotations

from pathlib import Path

from models.artifacts import USER_DICT_FILE, read_manifest
from models.characters import CharacterList
from models.tokenizer import Tokenizer
from models.trained import TrainedModel
from training.name_words import NAME_TAG, write_name_dictionary

# 袭人 and 黛玉 are not in jieba's dictionary: without its HMM they come out as characters (袭 人), with it
# glued to the next verb (袭人道). 凤姐儿 is in the dictionary already.
DIALOGUE = "\n".join(
    [
        "第一回 测试",
        "袭人笑道：“你来了。”黛玉道：“来了。”凤姐儿笑道：“坐罢。”",
        "袭人道：“吃茶。”黛玉笑道：“好。”凤姐儿道：“都坐。”",
        "袭人忙道：“我去倒。”黛玉道：“不必。”凤姐儿道：“走罢。”",
        "贾母道：“好。”贾母笑道：“坐。”贾母道：“吃罢。”贾母道：“来。”",
        # A person is also spoken to (training/characters.py).
        "黛玉叫袭人来，向凤姐儿笑，和贾母说话，叫黛玉去。",
    ]
)


def test_the_speakers_are_written_as_dictionary_words(tmp_path: Path) -> None:
    plain = Tokenizer(hmm=False)
    assert plain.cut("袭人笑道") == ["袭", "人", "笑", "道"]
    path = tmp_path / "names.txt"
    user_dict, extraction, added = write_name_dictionary([DIALOGUE], None, path)
    assert user_dict == path
    assert {"袭人", "黛玉", "凤姐儿", "贾母"} <= set(added) and len(added) == len(set(added))
    assert {c.name for c in extraction.characters.characters} >= {"袭人", "黛玉"}
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[: len(added)] == [f"{name} {NAME_TAG}" for name in added]
    assert len(lines) == len(added)
    named = Tokenizer(path, hmm=False)
    cut = named.cut("袭人笑道：“黛玉来了。”贾母道")
    assert cut == ["袭人", "笑", "道", "：", "“", "黛玉", "来", "了", "。", "”", "贾母", "道"]


def test_the_users_dictionary_comes_first_and_keeps_its_entries(tmp_path: Path) -> None:
    own = tmp_path / "mine.txt"
    own.write_text("黛玉 5 nr\n大观园\n", encoding="utf-8")
    user_dict, _, added = write_name_dictionary([DIALOGUE], own, tmp_path / "names.txt")
    lines = user_dict.read_text(encoding="utf-8").splitlines()
    assert lines[:2] == ["黛玉 5 nr", "大观园"]
    assert "黛玉" not in added and "袭人" in added and f"袭人 {NAME_TAG}" in lines[2:]
    assert own.read_text(encoding="utf-8") == "黛玉 5 nr\n大观园\n"  # the user's file is left as it was


def test_a_novel_without_speakers_keeps_the_users_dictionary(tmp_path: Path) -> None:
    path = tmp_path / "names.txt"
    user_dict, extraction, added = write_name_dictionary(["第一回\n没有人说话，只有风。"], None, path)
    assert user_dict is None and added == [] and not path.exists()
    assert extraction.characters.characters == []


def test_the_tiny_model_cuts_its_speakers_names_whole(tiny_model_dir: Path) -> None:
    manifest = read_manifest(tiny_model_dir)
    assert manifest["segmentation"]["hmm"] is False
    segmentation = manifest["segmentation"]
    assert segmentation["user_dict"] == USER_DICT_FILE and segmentation["name_words"] > 0
    characters = CharacterList.load(tiny_model_dir / "characters.json")
    tokenizer = TrainedModel.load(tiny_model_dir).tokenizer
    assert characters.characters
    for character in characters.characters:
        assert tokenizer.cut(f"{character.name}，") == [character.name, "，"]
