"""models/stops.py: text ends before the first stop, whole tokens are released, nothing is taken back."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from models.stops import StopCutter


def _texts(pieces: list[tuple[int, str]]) -> str:
    return "".join(text for _, text in pieces)


def _text_before_first_stop(tokens: list[str], stops: list[str]) -> str:
    """What a generation streams: it ends with the first token after which some stop appears in the text,
    and the text is cut where the earliest stop in it begins. A stop that begins earlier but would only be
    completed by later tokens never is: the generation has ended (stops "b" and "ab。" on the tokens a, b, 。
    give "a")."""
    text = ""
    for token in tokens:
        text += token
        starts = [text.find(stop) for stop in stops if stop and stop in text]
        if starts:
            return text[: min(starts)]
    return text


def test_a_token_is_held_while_a_stop_could_begin_in_it() -> None:
    cutter = StopCutter(["。”", "道"])
    released = []
    for token in ["宝玉", "笑", "说", "：好。"]:
        released += cutter.push(token)
        # Nothing that could still start a stop sequence ("。" could begin "。”") is out yet.
        assert "宝玉笑说：好".startswith(_texts(released))
    assert released == [(0, "宝玉"), (1, "笑"), (2, "说")] and not cutter.stopped
    released += cutter.push("”")  # completes "。”": its token is cut at the stop (to nothing here)
    assert cutter.stopped and released[-1] == (3, "：好")
    assert _texts(released) == cutter.text == "宝玉笑说：好"
    assert cutter.push("更多") == [] and cutter.finish() == []


def test_the_token_completing_a_stop_is_cut_and_a_held_rest_is_released_at_the_end() -> None:
    single = StopCutter(["道"])  # a one-character stop holds nothing back
    assert single.push("宝玉") == [(0, "宝玉")]
    assert single.push("笑道") == [(1, "笑")] and single.stopped
    open_end = StopCutter(["再见"])
    assert open_end.push("好再") == [] and open_end.finish() == [(0, "好再")] and open_end.text == "好再"
    plain = StopCutter([])
    assert plain.push("宝玉") == [(0, "宝玉")] and plain.finish() == []


def test_a_stop_spanning_tokens_ends_the_text_where_it_begins() -> None:
    cutter = StopCutter(["”", "再见"])
    released = [cutter.push(token) for token in ["你好", "，再", "来", "。再", "见了"]]
    assert released == [[(0, "你好")], [], [(1, "，再"), (2, "来")], [], [(3, "。")]]
    assert cutter.stopped and cutter.text == "你好，再来。"


# No per-example deadline: the property is about text, and a loaded test machine can pause any example.
@settings(deadline=None)
# Overlapping stops: "b" ends the generation before "ab。", which began earlier, can be completed.
@example(tokens=["a", "b", "。"], stops=["b", "ab。"])
@given(
    tokens=st.lists(st.text(alphabet="ab。”", min_size=1, max_size=3), max_size=12),
    stops=st.lists(st.text(alphabet="ab。”", min_size=1, max_size=3), max_size=3),
)
def test_streamed_pieces_are_the_text_before_the_first_stop(tokens: list[str], stops: list[str]) -> None:
    cutter = StopCutter(stops)
    pieces = [piece for token in tokens for piece in cutter.push(token)] + cutter.finish()
    assert _texts(pieces) == _text_before_first_stop(tokens, stops)
    # Every piece is its own token, in order, and whole except for the one cut at the stop.
    assert [index for index, _ in pieces] == list(range(len(pieces)))
    assert all(piece == tokens[index] for index, piece in pieces[:-1])
    assert cutter.stopped == any(stop and stop in "".join(tokens) for stop in stops)
