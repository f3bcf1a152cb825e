"""training.segment: real jieba, parallel cutting in order, and the on-disk token cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models.tokenizer import Tokenizer
from training import segment
from training.segment import segment_corpus

LINES = [
    "清晨的雾气还没有散去，老渔夫已经把小船推进了河里。",
    "他一边摇橹，一边哼着年轻时学会的山歌，歌声在水面上飘得很远。",
    "岸边的柳树垂下长长的枝条，几只白鹭站在浅滩上。",
    "村子里的孩子们背着书包，沿着石板路跑向学校。",
    "渔夫的女儿站在门口喊他回来吃早饭：“今天的鱼特别多！”",
]


@pytest.fixture(scope="module")
def plain() -> Tokenizer:
    """One default tokenizer for the module: loading jieba's dictionary costs about a second each time."""
    return Tokenizer()


def _chapters(n_chapters: int, lines_per_chapter: int) -> list[str]:
    return [
        "\n".join([f"第{c + 1}章　河边"] + [LINES[(c + i) % len(LINES)] for i in range(lines_per_chapter)])
        for c in range(n_chapters)
    ]


def test_tokens_equal_the_tokenizer_per_chapter(plain: Tokenizer, tmp_path: Path) -> None:
    chapters = _chapters(3, 4)
    result = segment_corpus(chapters, plain, tmp_path, workers=1, progress=False)
    assert result.chapters == [plain.cut(chapter) for chapter in chapters]
    assert result.tokens == sum(len(c) for c in result.chapters)
    assert "，" in result.chapters[0] and "\n" not in result.chapters[0]


def test_parallel_segmentation_keeps_order_and_matches_sequential(
    plain: Tokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small pieces force many tasks across both processes; the result must come back in reading order.
    monkeypatch.setattr(segment, "CHUNK_CHARS", 300)
    monkeypatch.setattr(segment, "PARALLEL_MIN_CHARS", 0)
    chapters = _chapters(6, 40)
    parallel = segment_corpus(chapters, plain, None, workers=2, progress=False)
    sequential = segment_corpus(chapters, plain, None, workers=1, progress=False)
    assert parallel.chapters == sequential.chapters
    assert [chapter[0] for chapter in parallel.chapters] == ["第", "第", "第", "第", "第", "第"]


def test_second_run_hits_the_cache(plain: Tokenizer, tmp_path: Path) -> None:
    chapters = _chapters(3, 5)
    first = segment_corpus(chapters, plain, tmp_path, workers=1, progress=False)
    assert first.cache_hit is False
    assert first.cache_path is not None and first.cache_path.is_file()
    second = segment_corpus(chapters, plain, tmp_path, workers=1, progress=False)
    assert second.cache_hit is True
    assert second.cache_path == first.cache_path
    assert second.chapters == first.chapters
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.cache_path.name]  # no temp files left


def test_cache_is_used_not_recomputed(plain: Tokenizer, tmp_path: Path) -> None:
    chapters = _chapters(2, 3)
    first = segment_corpus(chapters, plain, tmp_path, workers=1, progress=False)
    # Edit the cached tokens: a hit must return exactly what is in the file.
    lines = first.cache_path.read_text(encoding="utf-8").splitlines()
    lines[1] = json.dumps(["缓存", "命中"], ensure_ascii=False)
    first.cache_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    second = segment_corpus(chapters, plain, tmp_path, workers=1, progress=False)
    assert second.cache_hit and second.chapters[0] == ["缓存", "命中"]


def test_cache_file_is_json_lines(plain: Tokenizer, tmp_path: Path) -> None:
    result = segment_corpus(_chapters(2, 2), plain, tmp_path, workers=1, progress=False)
    lines = result.cache_path.read_text(encoding="utf-8").splitlines()
    header = json.loads(lines[0])
    assert header["chapters"] == 2 and header["settings"]["hmm"] is True
    assert [json.loads(line) for line in lines[1:]] == result.chapters


@pytest.mark.parametrize("change", ["hmm", "text", "boundary", "user_dict", "user_dict_content"])
def test_changing_an_input_misses_the_cache(plain: Tokenizer, tmp_path: Path, change: str) -> None:
    user_dict = tmp_path / "dict.txt"
    user_dict.write_text("老渔夫 1000\n", encoding="utf-8")
    cache = tmp_path / "cache"
    chapters = _chapters(2, 3)
    base_tokenizer = Tokenizer(user_dict)
    base = segment_corpus(chapters, base_tokenizer, cache, workers=1, progress=False)
    tokenizer = base_tokenizer
    if change == "hmm":
        tokenizer = Tokenizer(user_dict, hmm=False)
    elif change == "text":
        chapters = [chapters[0] + "。", chapters[1]]
    elif change == "boundary":
        joined = "\n".join(chapters)
        chapters = [joined[:10], joined[10:]]
    elif change == "user_dict":
        tokenizer = plain
    else:
        user_dict.write_text("老渔夫 1000\n小船 5000\n", encoding="utf-8")
    other = segment_corpus(chapters, tokenizer, cache, workers=1, progress=False)
    assert other.cache_hit is False
    assert other.cache_path != base.cache_path
    if change != "user_dict_content":  # the original entry is still there and still hits
        assert segment_corpus(_chapters(2, 3), base_tokenizer, cache, progress=False).cache_hit


def test_damaged_cache_file_is_rebuilt(plain: Tokenizer, tmp_path: Path) -> None:
    chapters = _chapters(2, 2)
    first = segment_corpus(chapters, plain, tmp_path, workers=1, progress=False)
    first.cache_path.write_text('{"key": "truncated', encoding="utf-8")
    second = segment_corpus(chapters, plain, tmp_path, workers=1, progress=False)
    assert second.cache_hit is False and second.chapters == first.chapters
    assert segment_corpus(chapters, plain, tmp_path, workers=1, progress=False).cache_hit


def test_unusable_cache_dir_only_costs_the_cache(
    plain: Tokenizer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x", encoding="utf-8")
    result = segment_corpus(_chapters(1, 2), plain, not_a_dir / "cache", workers=1, progress=False)
    assert result.tokens > 0 and result.cache_hit is False and result.cache_path is None
    assert "warning: segmentation cache not written" in capsys.readouterr().err


def test_no_cache_dir_means_no_cache(plain: Tokenizer) -> None:
    result = segment_corpus(_chapters(1, 1), plain, None, workers=1, progress=False)
    assert result.cache_path is None and result.cache_hit is False
