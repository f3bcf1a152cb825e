"""Stop sequences over a stream of generated tokens: text ends before the stop, nothing sent is taken back.

The decoder ends a generation at the token that completes a stop sequence, with the stop inside the generated
text (TGI's rule, models/decoding.py). OpenAI's completions and the chat reply (which stops at the novel's
closing quote) return the text *before* the stop instead, and a stream must never send text it would later
have to take back. `StopCutter` is that one rule for both (app/routes/openai.py, models/chat.py and the chat
route):

* A token is released whole, with its index, once no stop sequence can still begin in it: the pending text's
  longest end that is a proper beginning of a stop is held back, and so is every token that reaches into it.
  Whole tokens, because an OpenAI client pairs each released piece with that token's logprob.
* The token that completes a stop is released cut at the stop (nothing when the stop begins with it), and
  `stopped` is set; nothing after it is released.
* `finish()` releases what was held when the generation ended without a stop (it never became one).
"""

from __future__ import annotations

from collections.abc import Iterable


class StopCutter:
    """Cut a stream of token texts at the first of `stops` (see the module docstring). `push` each token's
    text in order, then `finish()`; both return the (token index, text) pieces now safe to send. `text` is
    everything released so far."""

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(dict.fromkeys(stop for stop in stops if stop))
        self.stopped = False
        self.text = ""
        self._pending: list[str] = []  # texts of the tokens not released yet, oldest first
        self._next_index = 0  # index of the oldest pending token

    def push(self, token: str) -> list[tuple[int, str]]:
        if self.stopped:
            return []
        self._pending.append(token)
        pending = "".join(self._pending)
        found = [at for at in (pending.find(stop) for stop in self.stops) if at >= 0]
        if found:
            self.stopped = True
            released = self._release(min(found), cut=True)
            self._pending = []
            return released
        hold = max((_overlap(pending, stop) for stop in self.stops), default=0)
        return self._release(len(pending) - hold, cut=False)

    def finish(self) -> list[tuple[int, str]]:
        if self.stopped:
            return []
        released = [(self._next_index + offset, token) for offset, token in enumerate(self._pending)]
        self._next_index += len(self._pending)
        self._pending = []
        self.text += "".join(token for _, token in released)
        return released

    def _release(self, end: int, cut: bool) -> list[tuple[int, str]]:
        """The pending tokens that lie before character `end` of the pending text; with `cut`, also the part
        before `end` of the token it falls in."""
        released: list[tuple[int, str]] = []
        position = 0
        while self._pending and position < end:
            token = self._pending[0]
            if position + len(token) > end:
                if not cut:
                    break
                token = token[: end - position]
            released.append((self._next_index, token))
            position += len(self._pending.pop(0))
            self._next_index += 1
        self.text += "".join(text for _, text in released)
        return released


def _overlap(text: str, stop: str) -> int:
    """Length of the longest end of `text` that is a proper beginning of `stop`."""
    for length in range(min(len(stop) - 1, len(text)), 0, -1):
        if text.endswith(stop[:length]):
            return length
    return 0
