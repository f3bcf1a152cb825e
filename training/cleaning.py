"""What downloaded novels carry besides the novel: HTML markup and the download site's own lines.

Many `.txt` novels on the web are saved web pages or were assembled from them: chapter headings in `<h3>`,
`<br />` line breaks, `<a href=...>` links, `&nbsp;` indentation, and lines the site added such as
`本书由某某网整理制作`, `更多精彩，尽在www.example.com`, or `藏书网` dropped into a sentence. Left in, they
become "words" the model learns and writes. Removed by default (`--keep-markup` keeps the text as it is):

* markup, with the standard library's HTML parser (html.parser, which also decodes `&nbsp;`, `&amp;`,
  `&#...;`): tags of HTML elements are dropped, block elements (`<p>`, `<br>`, `<h3>`, `<div>`...) end a line,
  and the contents of `<script>`, `<style>` and `<title>` are dropped. Anything that merely looks like a tag
  but names no HTML element (`<红楼梦>`, `x<y`) is kept as text;
* site lines: a line of at most SITE_LINE_MAX_CHARS characters that holds a web address or one of
  SITE_PHRASES is dropped whole; in a longer line (a real paragraph) only the address or the phrase goes.
  Full-width forms (`ｗｗｗ．ｅｘａｍｐｌｅ．ｃｏｍ`) are recognised too.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from html.parser import HTMLParser

# The element names of HTML (WHATWG, plus the obsolete ones old sites still write, like <font>, <center>).
# fmt: off
HTML_ELEMENTS = frozenset((
    "a", "abbr", "acronym", "address", "area", "article", "aside", "audio", "b", "base", "basefont", "bdi",
    "bdo", "big", "blockquote", "body", "br", "button", "canvas", "caption", "center", "cite", "code",
    "col", "colgroup", "data", "datalist", "dd", "del", "details", "dfn", "dialog", "dir", "div", "dl",
    "dt", "em", "embed", "fieldset", "figcaption", "figure", "font", "footer", "form", "frame", "frameset",
    "h1", "h2", "h3", "h4", "h5", "h6", "head", "header", "hgroup", "hr", "html", "i", "iframe", "img",
    "input", "ins", "kbd", "label", "legend", "li", "link", "main", "map", "mark", "marquee", "menu",
    "meta", "meter", "nav", "nobr", "noframes", "noscript", "object", "ol", "optgroup", "option", "output",
    "p", "param", "picture", "pre", "progress", "q", "rp", "rt", "ruby", "s", "samp", "script", "section",
    "select", "small", "source", "span", "strike", "strong", "style", "sub", "summary", "sup", "table",
    "tbody", "td", "template", "textarea", "tfoot", "th", "thead", "time", "title", "tr", "track", "tt",
    "u", "ul", "var", "video", "wbr",
))
# Elements that end a line of text where they open or close.
BLOCK_ELEMENTS = frozenset((
    "address", "article", "aside", "blockquote", "body", "br", "center", "dd", "div", "dl", "dt",
    "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "html",
    "li", "main", "nav", "ol", "p", "pre", "section", "table", "tbody", "td", "tfoot", "th", "thead", "tr",
    "ul",
))
# fmt: on
# Elements whose text is the page's, not the novel's.
DROPPED_ELEMENTS = frozenset({"script", "style", "title", "noscript", "template"})

SITE_LINE_MAX_CHARS = 80
# Phrases that download sites add and novels do not write (compared case-insensitively, full-width as ASCII).
SITE_PHRASES = (
    "整理制作",
    "藏书网",
    "更多精彩",
    "免费下载",
    "txt下载",
    "电子书下载",
    "下载地址",
    "请记住本站",
    "本站网址",
    "手机阅读",
    "最新章节",
    "版权归原作者",
)
# A web address: a scheme or www. prefix, or a host name ending in a common top-level domain.
_ADDRESS = re.compile(
    r"(?:https?://|www\.)[\w./?=&%#:~+-]+"
    r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|net|org|cn|cc|info|me|la|tw|hk)\b[\w./?=&%#~+-]*",
    re.IGNORECASE | re.ASCII,
)
# Full-width ASCII (ｗｗｗ．ｃｏｍ, ＴＸＴ) read as ASCII: one character each way, so spans stay valid.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_PHRASE = re.compile("|".join(re.escape(phrase) for phrase in SITE_PHRASES), re.IGNORECASE)


@dataclass
class Cleaning:
    """What was removed from a novel's text (summed over its files)."""

    tags: int = 0  # HTML tags, comments and declarations
    site_lines: int = 0  # whole lines a download site added
    site_insertions: int = 0  # addresses and site phrases removed from inside longer lines
    kept: bool = False  # --keep-markup: nothing was removed

    def add(self, other: Cleaning) -> None:
        self.tags += other.tags
        self.site_lines += other.site_lines
        self.site_insertions += other.site_insertions

    def manifest(self) -> dict:
        return asdict(self)


class _TextOfHTML(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.tags = 0
        self._dropping = 0

    def _tag(self, tag: str, opening: bool, closing: bool) -> None:
        self.tags += 1
        if tag in DROPPED_ELEMENTS:
            self._dropping = max(0, self._dropping + opening - closing)
        elif tag == "body":  # an unclosed <title> or <script> in the head must not swallow the novel
            self._dropping = 0
        if tag in BLOCK_ELEMENTS:
            self.parts.append("\n")

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in HTML_ELEMENTS:
            self._tag(tag, opening=True, closing=False)
        else:
            self.handle_data(self.get_starttag_text() or "")

    def handle_startendtag(self, tag: str, attrs: list) -> None:
        if tag in HTML_ELEMENTS:
            self._tag(tag, opening=False, closing=False)
        else:
            self.handle_data(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if tag in HTML_ELEMENTS:
            self._tag(tag, opening=False, closing=True)
        else:
            self.handle_data(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if not self._dropping:
            self.parts.append(data)

    def handle_comment(self, data: str) -> None:
        self.tags += 1

    def handle_decl(self, decl: str) -> None:
        self.tags += 1

    def handle_pi(self, data: str) -> None:
        self.tags += 1


def strip_markup(text: str) -> tuple[str, int]:
    """(text without HTML markup, number of tags removed); entities such as &nbsp; are decoded."""
    parser = _TextOfHTML()
    parser.feed(text)
    parser.close()
    return "".join(parser.parts), parser.tags


def _site_spans(line: str) -> list[tuple[int, int]]:
    """Where addresses and site phrases are in line, full-width forms read as their ASCII ones."""
    folded = line.translate(_FULL_WIDTH)
    return [m.span() for pattern in (_ADDRESS, _PHRASE) for m in pattern.finditer(folded)]


def _without(line: str, spans: list[tuple[int, int]]) -> str:
    """line without the characters of any span (spans may overlap: an address inside a phrase's line)."""
    drop = bytearray(len(line))
    for start, stop in spans:
        drop[start:stop] = b"\x01" * (stop - start)
    return "".join(char for char, dropped in zip(line, drop, strict=True) if not dropped)


def strip_site_lines(text: str) -> tuple[str, int, int]:
    """(text without the site's lines and insertions, whole lines removed, insertions removed)."""
    kept, lines, insertions = [], 0, 0
    for line in text.split("\n"):
        spans = _site_spans(line)
        if not spans:
            kept.append(line)
        elif len(line.strip()) <= SITE_LINE_MAX_CHARS:
            lines += 1
        else:
            insertions += len(spans)
            kept.append(_without(line, spans))
    return "\n".join(kept), lines, insertions


def clean(text: str) -> tuple[str, Cleaning]:
    """The novel's own text, and what was removed (see the module docstring)."""
    text, tags = strip_markup(text)
    text, lines, insertions = strip_site_lines(text)
    return text, Cleaning(tags=tags, site_lines=lines, site_insertions=insertions)
