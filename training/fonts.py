"""The fonts report.png is drawn with: DejaVu Sans (matplotlib's own) for Latin text, and a CJK font chosen
explicitly from those the system has, so a novel's Chinese name is drawn instead of empty boxes.

Debian's fonts-wqy-microhei (installed by the Dockerfile, `.ci/run` and `make fonts`) or any Noto CJK / Source
Han font is found by family name. matplotlib caches its font list when it is first imported, so a font
installed afterwards is looked for in the system's font directories too. Without any CJK font the text is
still drawn cleanly: characters no chosen font has become "?" (never an empty box, never a warning per glyph).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from matplotlib import font_manager
from matplotlib.ft2font import FT2Font

LATIN_FAMILY = "DejaVu Sans"
# Simplified Chinese first: the Japanese and Korean variants draw some Hanzi differently.
CJK_FAMILIES = (
    "WenQuanYi Micro Hei",
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "Noto Sans CJK TC",
    "Noto Sans CJK JP",
    "Droid Sans Fallback",
)
# File names of those fonts, for a font installed after matplotlib built its cache.
_CJK_FILE_NAMES = ("wqy-microhei", "notosanscjk", "notosanssc", "sourcehansans", "droidsansfallback")
MISSING_GLYPH = "?"


@dataclass(frozen=True)
class ReportFonts:
    """The family list to draw with (matplotlib falls back glyph by glyph along it) and what it can draw."""

    families: tuple[str, ...]
    cjk: str | None
    _charmap: frozenset[int]

    def displayable(self, text: str) -> str:
        """text with every character none of the families can draw replaced by MISSING_GLYPH."""
        return "".join(c if ord(c) in self._charmap or c in "\n\t" else MISSING_GLYPH for c in text)


def _font_path(family: str) -> str:
    return font_manager.findfont(font_manager.FontProperties(family=family), fallback_to_default=False)


def _register_new_system_fonts() -> None:
    """Add CJK font files the cached font list does not know (installed after matplotlib first ran)."""
    known = {entry.fname for entry in font_manager.fontManager.ttflist}
    for path in font_manager.findSystemFonts():
        name = Path(path).name.lower().replace("-", "").replace("_", "")
        if path not in known and any(key.replace("-", "") in name for key in _CJK_FILE_NAMES):
            try:
                font_manager.fontManager.addfont(path)
            except (OSError, RuntimeError, ValueError):  # an unreadable font file: simply not a candidate
                continue


def _cjk_family(preferred: tuple[str, ...]) -> str | None:
    def available() -> set[str]:
        return {entry.name for entry in font_manager.fontManager.ttflist}

    found = next((family for family in preferred if family in available()), None)
    if found is None and preferred:
        _register_new_system_fonts()
        found = next((family for family in preferred if family in available()), None)
    return found


@functools.cache
def report_fonts(cjk_families: tuple[str, ...] = CJK_FAMILIES) -> ReportFonts:
    """The fonts to draw with: DejaVu Sans, then the first of cjk_families this system has (if any)."""
    cjk = _cjk_family(cjk_families)
    families = (LATIN_FAMILY,) if cjk is None else (LATIN_FAMILY, cjk)
    charmap: set[int] = set()
    for family in families:
        charmap.update(FT2Font(_font_path(family)).get_charmap())
    return ReportFonts(families=families, cjk=cjk, _charmap=frozenset(charmap))
