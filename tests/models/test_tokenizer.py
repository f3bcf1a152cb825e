"""models.tokenizer: real jieba, private instance, punctuation kept, whitespace dropped, user dictionary."""

from __future__ import annotations

from pathlib import Path

import jieba
import pytest

from models.tokenizer import Tokenizer


def test_cut_keeps_punctuation_and_drops_whitespace() -> None:
    tokens = Tokenizer().cut("我们今天去公园散步，  天气很好。\n她笑道：“好！”\r\n")
    assert "，" in tokens and "。" in tokens and "“" in tokens and "”" in tokens
    assert all(token.strip() for token in tokens)
    assert "".join(tokens) == "我们今天去公园散步，天气很好。她笑道：“好！”"


def test_a_text_cut_again_comes_from_the_cache_and_a_caller_cannot_change_it() -> None:
    tokenizer = Tokenizer()
    text = "宝玉笑道：“妹妹今日可大好了？”"
    first = tokenizer.cut(text)
    first.append("改")  # a caller's list is its own
    again = tokenizer.cut(text)
    assert again == [token for token in jieba.Tokenizer().cut(text, HMM=True) if token.strip()]
    assert again[-1] != "改"
    info = tokenizer._token_bounds.cache_info()
    assert (info.hits, info.misses) == (1, 1)
    long = "宝玉道：" * 100  # longer than the cache takes: cut, never remembered
    assert "".join(tokenizer.cut(long)) == long and tokenizer._token_bounds.cache_info().currsize == 1


def test_precise_mode_not_full_mode() -> None:
    # Full mode would also emit the overlapping sub-words of 中华人民共和国.
    assert Tokenizer().cut("中华人民共和国") == ["中华人民共和国"]


def test_user_dictionary_changes_cutting_only_for_its_own_instance(tmp_path: Path) -> None:
    text = "甄士隐梦幻识通灵"
    plain = Tokenizer().cut(text)
    user_dict = tmp_path / "names.txt"
    user_dict.write_text("梦幻识通灵 10000 n\n", encoding="utf-8")
    custom = Tokenizer(user_dict)
    assert custom.cut(text) == ["甄士隐", "梦幻识通灵"]
    assert "梦幻识通灵" not in plain
    # The global jieba tokenizer and a fresh instance are untouched by the user dictionary.
    assert "梦幻识通灵" not in Tokenizer().cut(text)
    assert "梦幻识通灵" not in jieba.lcut(text)


def test_settings() -> None:
    assert Tokenizer().settings() == {"tokenizer": "jieba", "mode": "precise", "hmm": True, "user_dict": None}
    assert Tokenizer(hmm=False).settings()["hmm"] is False


def test_settings_with_user_dict(tmp_path: Path) -> None:
    user_dict = tmp_path / "my-words.txt"
    user_dict.write_text("贾宝玉\n", encoding="utf-8")
    assert Tokenizer(user_dict).settings()["user_dict"] == "userdict.txt"


def test_missing_user_dictionary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.txt"):
        Tokenizer(tmp_path / "nope.txt")


def test_hmm_discovers_unknown_words() -> None:
    # With HMM, jieba joins unseen two-character names; without it they fall apart into single characters.
    text = "杭研大厦里他来到了网易杭研"
    assert Tokenizer(hmm=True).cut(text) != Tokenizer(hmm=False).cut(text)


def test_char_tokenizer_cuts_every_non_whitespace_character() -> None:
    tokenizer = Tokenizer(mode="char")
    assert tokenizer.cut("宝玉 笑道：\n“好”") == list("宝玉笑道：“好”")
    assert tokenizer.settings()["tokenizer"] == "char"
    with pytest.raises(ValueError, match="jieba"):
        Tokenizer("names.txt", mode="char")


def test_non_blank_means_what_the_tokenizer_keeps_in_python_and_pydantic_regex() -> None:
    # Python's re and pydantic's Rust regex (and JavaScript, for schema readers) disagree on what \s is;
    # NON_BLANK must find a character exactly when the tokenizer would keep it (str.isspace() is False).
    import re
    from typing import Annotated

    from pydantic import Field, TypeAdapter, ValidationError

    from models.tokenizer import NON_BLANK

    adapter = TypeAdapter(Annotated[str, Field(pattern=NON_BLANK)])
    for char in [chr(code) for code in range(0x3100)] + ["\ufeff", "\ufffd", "宝"]:
        keeps = not char.isspace()
        assert bool(re.search(NON_BLANK, char)) == keeps, hex(ord(char))
        try:
            adapter.validate_python(char)
            accepted = True
        except ValidationError:
            accepted = False
        assert accepted == keeps, hex(ord(char))
        assert (Tokenizer(mode="char").cut(char) != []) == keeps, hex(ord(char))
