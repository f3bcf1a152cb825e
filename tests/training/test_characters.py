"""Speakers found in real text with the real jieba tagger: invented dialogue, the tiny model, and 红楼梦."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.artifacts import CHARACTERS_FILE, read_manifest, sha256_file
from models.characters import CharacterList
from training.characters import MAX_GAP_CHARS, adjacent_quotes, extract_characters, quote_pair
from training.corpus import load_corpus

# Invented lines in the novel's dialogue form: two speakers with an alias each, a look-back attribution
# (`X听了，忙问：“`), an addressee that must not become a speaker, and common nouns that speak.
DIALOGUE = "\n".join(
    [
        "第一回 测试",
        "宝玉笑道：“今日天气好。”黛玉道：“你又来了。”",
        "宝玉听了，忙问：“妹妹往那里去？”黛玉笑道：“我去看花。”",
        "宝玉道：“我也去。”林黛玉道：“随你。”林黛玉笑道：“走罢。”",
        "凤姐道：“都来吃饭。”凤姐儿笑道：“快些。”凤姐儿道：“别等了。”凤姐道：“走罢。”",
        "凤姐向宝玉道：“你先去。”宝玉道：“好。”",
        "一个婆子道：“饭好了。”那婆子道：“请罢。”婆子道：“来了。”婆子笑道：“是。”",
        "众人都笑道：“好。”众人道：“是。”众人笑道：“去罢。”",
        "黛玉叫宝玉来，和凤姐说话，向黛玉笑，见凤姐儿在那里，问林黛玉好。",
        "那个婆子走了，这个婆子来了，那婆子又走了，几个婆子都笑了。",
        "二人笑道：“好。”二人道：“是。”二人都笑道：“走。”叫二人来，和二人说话。",
    ]
)


def test_speakers_aliases_and_look_back() -> None:
    extraction = extract_characters([DIALOGUE], min_utterances=2)
    characters = extraction.characters
    names = [c.name for c in characters.characters]
    assert set(names[:3]) == {"宝玉", "凤姐", "黛玉"}
    assert characters.find("林黛玉").name == "黛玉" and characters.find("凤姐儿").name == "凤姐"
    # 婆子 is preceded by a determiner most of the time (a common noun), 众人 starts with one.
    assert "婆子" not in names and "众人" not in names and "那婆子" not in names
    assert "二人" not in names  # "the two of them", though jieba's dictionary tags it as a name
    said = {(u.speaker, u.text) for u in extraction.utterances}
    assert ("宝玉", "妹妹往那里去？") in said  # 宝玉听了，忙问：“
    assert ("凤姐", "你先去。") in said  # 凤姐向宝玉道: the speaker, not the addressee
    assert characters.attributed == len(extraction.utterances)
    assert characters.quoted == DIALOGUE.count("“")


def test_a_novel_without_dialogue_has_no_characters() -> None:
    extraction = extract_characters(["第一回\n天色渐晚，山下有一座庙。庙里住着一个老僧。"])
    assert extraction.characters.characters == [] and extraction.utterances == []
    assert extraction.characters.summary()["attributed_share"] is None


def test_corner_brackets_are_the_quotes_of_a_novel_that_uses_them() -> None:
    text = DIALOGUE.replace("“", "「").replace("”", "」")
    assert quote_pair(text) == ("「", "」")
    extraction = extract_characters([text], min_utterances=2)
    assert extraction.characters.quotes == ("「", "」")
    plain = extract_characters([DIALOGUE], min_utterances=2)
    assert extraction.characters.characters == plain.characters.characters


def test_characters_file_round_trips(tmp_path: Path) -> None:
    characters = extract_characters([DIALOGUE], min_utterances=2).characters
    characters.save(tmp_path / CHARACTERS_FILE)
    loaded = CharacterList.load(tmp_path / CHARACTERS_FILE)
    assert loaded == characters
    (tmp_path / "bad.json").write_text('{"characters": [{"utterances": 3}]}', encoding="utf-8")
    with pytest.raises(ValueError, match="no name"):
        CharacterList.load(tmp_path / "bad.json")


def test_the_tiny_model_lists_its_characters_in_the_manifest(tiny_model_dir: Path) -> None:
    manifest = read_manifest(tiny_model_dir)
    assert manifest["files"][CHARACTERS_FILE] == sha256_file(tiny_model_dir / CHARACTERS_FILE)
    data = json.loads((tiny_model_dir / CHARACTERS_FILE).read_text(encoding="utf-8"))
    assert data["characters"][0]["name"] == "宝玉"  # the first 60,000 characters: 宝玉 speaks most
    assert manifest["characters"]["top"][0] == {
        "name": "宝玉",
        "utterances": data["characters"][0]["utterances"],
    }
    for character in data["characters"]:
        assert character["utterances"] >= 3 and len(character["examples"]) <= 3


def test_hongloumeng_top_ten_speakers_are_characters_of_the_novel() -> None:
    """The whole novel (about 5 s). The expected set is the test's knowledge of 红楼梦, not the method's."""
    corpus = load_corpus("hongloumeng")
    characters = extract_characters(corpus.chapters).characters
    top = [c.name for c in characters.characters[:10]]
    real = {
        "宝玉",
        "凤姐",
        "贾母",
        "黛玉",
        "宝钗",
        "袭人",
        "王夫人",
        "湘云",
        "平儿",
        "探春",
        "贾政",
        "贾琏",
        "李纨",
    }
    assert set(top) <= real, top
    assert characters.attributed / characters.quoted >= 0.6
    assert characters.find("林黛玉").name == "黛玉" and characters.find("凤姐儿").name == "凤姐"
    names = [c.name for c in characters.characters]
    # Found in /characters of the default model: 宝钗笑, 宝钗忙, 宝钗因, 贾母笑 (a name with a verb glued on
    # by jieba's dictionary), 袭人等 ("Xiren and the others"), 二人 ("the two"), 问他 ("asked him").
    assert [name for name in names if name[:-1] in names] == []
    assert "二人" not in names and "问他" not in names


def test_adjacent_quotes_pair_each_quote_with_the_next_after_a_short_narration() -> None:
    long_narration = "他说完便走了出去，" * (MAX_GAP_CHARS // 9 + 1)
    chapters = [
        "第一回\n宝玉道：“妹妹可好？”黛玉道：“好。”“你呢？”" + long_narration + "袭人道：“来了。”",
        "第二回\n众人笑道：“吃饭。”“”凤姐道：“走罢。”",
        "第三回\n贾母道：“看戏。”王夫人道：“好。”",
    ]
    assert len(long_narration) > MAX_GAP_CHARS
    # Chapter 0: attributed or not, whoever speaks; not across the long narration. Chapter 1: an empty quote
    # pairs with nothing. Chapter 2 is not asked for.
    assert adjacent_quotes(chapters, {0, 1}) == [(0, "妹妹可好？", "好。"), (0, "好。", "你呢？")]
    assert adjacent_quotes(chapters, {2, 7}) == [(2, "看戏。", "好。")]
