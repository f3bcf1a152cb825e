"""training.cleaning and its use by training.corpus: a downloaded novel loses its markup and the site's lines.

Every text here is invented for these tests, in the shape real downloads have (saved web pages, site banners).
"""

from __future__ import annotations

from pathlib import Path

from river_novel import LINES

from training.cleaning import SITE_LINE_MAX_CHARS, clean, strip_markup, strip_site_lines
from training.corpus import load_corpus

PARAGRAPH = "".join(LINES)  # longer than SITE_LINE_MAX_CHARS: a real paragraph, not a banner

SAVED_PAGE = f"""<!DOCTYPE html>
<html><head><title>第一回_河边的故事_某某书屋</title>
<script>var ad = "<p>广告</p>";</script><style>p {{ margin: 0 }}</style></head>
<body>
<h3>第一回　河边的故事</h3>
<p>&nbsp;&nbsp;&nbsp;&nbsp;{LINES[0]}</p>
<p>{LINES[1]}<br />{LINES[2]}</p>
<div>他指着<a href="https://www.example.com/river">小河</a>说&lt;那边&gt;。</div>
<!-- 下一章 -->
<h3>第二回　回家</h3>
<p>{LINES[3]}</p>
</body></html>
"""


def test_markup_goes_and_the_text_stays_in_its_lines() -> None:
    text, tags = strip_markup(SAVED_PAGE)
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    assert lines == [
        "第一回　河边的故事",
        LINES[0],  # the &nbsp; indentation decodes to no-break spaces, which the line strip removes
        LINES[1],
        LINES[2],  # <br /> ended the line
        "他指着小河说<那边>。",  # the link's text stays, &lt; &gt; are decoded
        "第二回　回家",
        LINES[3],
    ]
    assert "广告" not in text and "某某书屋" not in text and "margin" not in text
    # doctype + html head title /title script /script style /style /head body + 2×(h3 /h3) + 3×(p /p) + br
    # + div a /a /div + comment + /body /html
    assert tags == 1 + 10 + 4 + 6 + 1 + 4 + 1 + 2


def test_what_only_looks_like_markup_is_kept() -> None:
    text = "他读过<红楼梦>和<<西游记>>，算式是x<y，公司叫AT&T。"
    assert strip_markup(text) == (text, 0)


def test_site_lines_go_whole_and_insertions_go_from_paragraphs() -> None:
    text = "\n".join(
        [
            "本书由河边书屋整理制作，仅供交流",
            LINES[0],
            "更多精彩，尽在ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ",  # full-width address
            "TXT下载：http://example.net/book/1.txt",
            PARAGRAPH[:40] + "藏书网" + PARAGRAPH[40:] + " www.example.org/x ",
            "他说：“OK，好的。”",  # a Latin word is not an address
        ]
    )
    cleaned, lines, insertions = strip_site_lines(text)
    assert cleaned.split("\n") == [LINES[0], PARAGRAPH + "  ", "他说：“OK，好的。”"]
    assert (lines, insertions) == (3, 2)
    assert len(PARAGRAPH) > SITE_LINE_MAX_CHARS


def test_a_downloaded_novel_loads_clean_and_keep_markup_keeps_it(tmp_path: Path) -> None:
    path = tmp_path / "河边.txt"
    path.write_text(SAVED_PAGE + "\n更多精彩小说，请访问 www.example.com\n", encoding="gb18030")
    corpus = load_corpus(path)
    assert corpus.titles == ["第一回　河边的故事", "第二回　回家"]
    assert "<" not in corpus.text.replace("<那边>", "") and "www" not in corpus.text
    assert corpus.chapters[1] == f"第二回　回家\n{LINES[3]}"
    assert corpus.manifest()["cleaning"] == {"tags": 29, "site_lines": 1, "site_insertions": 0, "kept": False}

    kept = load_corpus(path, keep_markup=True)
    assert "<h3>第二回　回家</h3>" in kept.text and "www.example.com" in kept.text
    assert kept.manifest()["cleaning"] == {"tags": 0, "site_lines": 0, "site_insertions": 0, "kept": True}
    assert kept.sha256 == corpus.sha256  # the same file: what was removed is recorded, not a different input


def test_clean_text_is_unchanged() -> None:
    text = "\n".join(["第一回　河边的故事", *LINES])
    cleaned, removed = clean(text)
    assert cleaned == text and (removed.tags, removed.site_lines, removed.site_insertions) == (0, 0, 0)
