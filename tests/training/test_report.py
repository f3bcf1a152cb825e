"""report.png for a novel with a Chinese name: every glyph drawn (or cleanly replaced), no overlaps."""

from __future__ import annotations

import io
import json
import logging
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import pytest
from matplotlib.figure import Figure

from training.corpus import load_corpus
from training.fonts import LATIN_FAMILY, report_fonts
from training.report import draw_report, write_report

NAME = "测试小说.txt"
NO_CJK_FONT = report_fonts().cjk is None


@pytest.fixture(scope="module")
def manifest(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A real model's manifest, with the corpus section of a novel named 测试小说.txt."""
    novel = tmp_path_factory.mktemp("novel") / NAME
    novel.write_text("第一回　河边\n\n老渔夫坐在河边。\n\n第二回　归家\n\n他回到家里。\n", encoding="utf-8")
    manifest = json.loads((tiny_model_dir / "manifest.json").read_text(encoding="utf-8"))
    return {**manifest, "corpus": {**load_corpus(str(novel)).manifest(), "tokens": 20}}


def _render(figure: Figure, caplog: pytest.LogCaptureFixture) -> list[str]:
    """Draw the figure into a PNG; every warning or matplotlib log line it caused."""
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.INFO, logger="matplotlib"):
        warnings.simplefilter("always")
        figure.savefig(io.BytesIO(), format="png")
    plt.close(figure)
    return [str(w.message) for w in caught] + [record.getMessage() for record in caplog.records]


def test_the_capture_sees_a_missing_glyph(caplog: pytest.LogCaptureFixture) -> None:
    # Control: Chinese drawn with matplotlib's default font alone is reported as missing glyphs.
    figure = plt.figure()
    figure.suptitle("测试", fontfamily=LATIN_FAMILY)
    assert any("missing from font" in message for message in _render(figure, caplog))


@pytest.mark.skipif(NO_CJK_FONT, reason="no CJK font: install fonts-wqy-microhei (.ci/run and make fonts do)")
def test_a_chinese_named_novel_is_drawn_with_a_cjk_font(
    manifest: dict, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    figure = draw_report(manifest)
    assert figure.get_suptitle() == f"{NAME}: training and held-out evaluation"
    assert _render(figure, caplog) == []
    write_report(tmp_path / "report.png", manifest)
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_a_cjk_font_chinese_becomes_question_marks_without_warnings(
    manifest: dict, caplog: pytest.LogCaptureFixture
) -> None:
    figure = draw_report(manifest, cjk_families=())
    assert figure.get_suptitle() == "????.txt: training and held-out evaluation"
    details = figure.axes[-1].texts[0].get_text()
    assert "install fonts-wqy-microhei" in details
    assert _render(figure, caplog) == []


def test_title_table_and_notes_do_not_overlap(manifest: dict) -> None:
    figure = draw_report(manifest)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    curve, table_axis, details_axis = figure.axes
    boxes = {
        "title": figure._suptitle.get_window_extent(renderer),
        "curve": curve.get_tightbbox(renderer),
        "table title": table_axis.title.get_window_extent(renderer),
        "table": table_axis.tables[0].get_window_extent(renderer),
        "notes": details_axis.texts[0].get_window_extent(renderer),
    }
    plt.close(figure)
    page = figure.bbox
    for name, box in boxes.items():
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, name
    names = list(boxes)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            assert not boxes[first].overlaps(boxes[second]), (first, second)
    # Readable: the table's text is at least 12 points, like the rest of the report's body text.
    assert min(cell.get_text().get_fontsize() for cell in table_axis.tables[0].get_celld().values()) >= 12
