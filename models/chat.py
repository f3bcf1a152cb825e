"""Chat with the novel's characters: a conversation -> the novel's dialogue form -> a reply.

The LSTM only continues text, so a chat turn is a continuation in the form the novel itself writes dialogue:

    那人道：“林妹妹好。”黛玉道：“你好。”那人道：“今日做什么？”黛玉道：“

The model continues after the last opening quote; generation stops at the closing quote (a stop sequence of
the ordinary decoder, so the server's batching scheduler runs chat like any other generation) or at
max_tokens, and the reply is only the words inside the quotes.

This module is the one place that renders, sets up the generation and cuts the reply; the HTTP route
(`/v1/chat/completions`, which the playground's chat tab calls) and the chat evaluation
(training/chat_evaluation.py) both go through it.

Who speaks: the bot plays `character` (a name or alias from characters.json), else a character named in a
system message (`你是林黛玉`), else the novel's most frequent speaker. The user's side is `user_character`
(any short name; a known alias becomes the character's name), else a name after `我是` in a system message,
else a neutral addressee (那人). A novel without characters uses a narrator form (`有人问道：“…”答道：“`).
System messages are not rendered: the model cannot follow instructions, only continue the novel.

Words the model does not know are handled by the decoder exactly as in every other prompt (Decoder.encode
spells them with their characters, a rare character is <unk>); chat adds no rule of its own, so modern
Chinese never blocks a reply.

Long histories keep the most recent turns that fit in `max_prompt_chars` (the last message is kept, cut to
its end if it alone is too long): a conversation never fails for being long.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from models.characters import Character, CharacterList
from models.decoding import Decoder, Generation, SamplingParams
from models.stops import StopCutter

ROLES = ("system", "developer", "user", "assistant")
NEUTRAL_USER = "那人"  # "that person": the novel's own way to name someone it does not name
SPEECH = "道"
NARRATOR_USER = "有人问"  # no characters at all: "someone asked" ... "answered"
NARRATOR_BOT = "答"
MAX_USER_CHARACTER_CHARS = 10
# A user_character: no whitespace and no quotation marks (either pair), which would break the dialogue form.
USER_CHARACTER_PATTERN = r"^[^\s“”「」]+$"
DEFAULT_MAX_TOKENS = 60
# "你是林黛玉", "你扮演王熙凤", "you are 黛玉": the bot's character; "我是宝玉": the user's.
_BOT_CUE = re.compile(r"(?:你是|你扮演|扮演|你叫|你就是|你现在是|you are|play)\s*", re.IGNORECASE)
_USER_CUE = re.compile(r"(?:我是|我叫|我扮演|i am|i'm)\s*", re.IGNORECASE)


class ChatError(ValueError):
    """A conversation that cannot be rendered; `param` names the offending request field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True)
class ChatPrompt:
    """A conversation rendered in the novel's dialogue form, ready for the decoder."""

    text: str
    character: str | None  # the bot's speaker (None: narrator form)
    user_character: str
    messages_kept: int  # user/assistant messages rendered (the most recent ones)
    messages_total: int


@dataclass(frozen=True)
class ChatReply:
    text: str
    finish_reason: str  # "stop" (the quote closed, or a stop string) | "length" (max_tokens)
    generation: Generation
    prompt: ChatPrompt


class Chat:
    """Render conversations for one model and cut its replies. Stateless: one per loaded model."""

    def __init__(self, decoder: Decoder, characters: CharacterList, max_prompt_chars: int = 1000) -> None:
        self.decoder = decoder
        self.characters = characters
        self.max_prompt_chars = max_prompt_chars
        self.open, self.close = characters.quotes
        words = decoder.vectors.words
        # Tokens holding the closing quote may not be the first one generated: an empty reply says nothing.
        self._closing_ids = tuple(i for i, word in enumerate(words) if self.close in word)
        # A reply is inside the quotation its opening mark began, so it cannot open another one: in the novel
        # that is where another speaker's words start (a quote inside a quote uses other marks, ‘ ’). Only
        # when the marks differ (a novel quoting with one symbol for both, like ", would never close).
        self._opening_ids = (
            tuple(i for i, word in enumerate(words) if self.open in word) if self.open != self.close else ()
        )

    # ------------------------------------------------------------------------------------------ speakers
    def known_names(self, limit: int = 20) -> str:
        names = [c.name for c in self.characters.characters[:limit]]
        more = len(self.characters) - len(names)
        return "、".join(names) + (f" and {more} more (GET /characters)" if more > 0 else "")

    def character(self, name: str | None, messages: Sequence[Message]) -> Character | None:
        """The bot's character: `name`, else one named in a system message, else the most frequent speaker."""
        if name is not None:
            if not name.strip():
                raise ChatError(
                    "character is empty; leave it out or name one of the novel's speakers", "character"
                )
            if not self.characters.characters:
                raise ChatError(
                    f"character {name!r}: this model's novel has no attributed dialogue, so it has no "
                    "characters; leave character out (the reply uses a narrator form)",
                    "character",
                )
            found = self.characters.find(name)
            if found is None:
                raise ChatError(
                    f"character {name!r} is not one of this novel's speakers; known: {self.known_names()}",
                    "character",
                )
            return found
        named = self._named_in_system(messages, _BOT_CUE)
        return named or self.characters.most_frequent

    def user_character(self, name: str | None, messages: Sequence[Message], bot: Character | None) -> str:
        if name is not None:
            if not re.fullmatch(USER_CHARACTER_PATTERN, name) or len(name) > MAX_USER_CHARACTER_CHARS:
                raise ChatError(
                    f"user_character must be a name of 1 to {MAX_USER_CHARACTER_CHARS} characters without "
                    f"spaces or quotation marks, got {name!r}",
                    "user_character",
                )
            found = self.characters.find(name)
            return found.name if found is not None else name
        named = self._named_in_system(messages, _USER_CUE)
        if named is not None and named != bot:
            return named.name
        return NEUTRAL_USER if bot is not None else NARRATOR_USER

    def _named_in_system(self, messages: Sequence[Message], cue: re.Pattern[str]) -> Character | None:
        system = "\n".join(m.content for m in messages if m.role in ("system", "developer"))
        if not system or not self.characters.characters:
            return None
        for match in cue.finditer(system):
            mentioned = self.characters.mentioned(system[match.end() : match.end() + 12])
            if mentioned:
                return mentioned[0]
        return None

    # ------------------------------------------------------------------------------------------- render
    def render(
        self,
        messages: Sequence[Message],
        character: str | None = None,
        user_character: str | None = None,
    ) -> ChatPrompt:
        """The conversation in the novel's dialogue form, ending with the bot's opening quote."""
        if not messages:
            raise ChatError("messages is empty; send at least one user message", "messages")
        for index, message in enumerate(messages):
            if message.role not in ROLES:
                raise ChatError(
                    f"messages[{index}].role {message.role!r} is not supported; use one of "
                    f"{', '.join(ROLES)}",
                    f"messages[{index}].role",
                )
            if not message.content.strip():
                raise ChatError(
                    f"messages[{index}].content is empty; every message needs some text",
                    f"messages[{index}].content",
                )
        # Only system messages: the character speaks first (the prompt is just its opening quote).
        turns = [m for m in messages if m.role in ("user", "assistant")]
        bot = self.character(character, messages)
        user = self.user_character(user_character, messages, bot)
        bot_speaker = bot.name if bot is not None else NARRATOR_BOT
        opening = self.opening(bot)
        budget = self.max_prompt_chars - len(opening)
        lines: list[str] = []
        for message in reversed(turns):
            speaker = bot_speaker if message.role == "assistant" else user
            head = f"{speaker}{SPEECH}：{self.open}"
            words = self._clean(message.content)
            line = f"{head}{words}{self.close}"
            if len(line) > budget:
                if not lines:  # the last message alone is too long: its end is what the reply answers
                    keep = max(1, budget - len(head) - len(self.close))
                    lines.append(f"{head}{words[-keep:]}{self.close}")
                break
            lines.append(line)
            budget -= len(line)
        text = "".join(reversed(lines)) + opening
        return ChatPrompt(
            text=text,
            character=bot.name if bot is not None else None,
            user_character=user,
            messages_kept=len(lines),
            messages_total=len(turns),
        )

    def opening(self, bot: Character | None) -> str:
        """What the bot's turn starts with: `黛玉道：“` (narrator form `答道：“`)."""
        return f"{bot.name if bot is not None else NARRATOR_BOT}{SPEECH}：{self.open}"

    def _clean(self, content: str) -> str:
        # One line, and no quotation marks of the dialogue form inside it (they would end the turn early).
        text = " ".join(content.split())
        for mark in (self.open, self.close):
            text = text.replace(mark, "")
        return text or " "

    # --------------------------------------------------------------------------------------- generation
    def sampling(self, params: SamplingParams) -> SamplingParams:
        """The request's sampling parameters plus the chat's: stop at the closing quote, the closing quote
        is not allowed as the very first token (an empty reply), and the opening quote never (a new
        quotation inside the reply)."""
        return replace(
            params,
            stop=(self.close, *(s for s in params.stop if s != self.close)),
            min_new_tokens=max(params.min_new_tokens, 1),
            suppress_ids=tuple(dict.fromkeys((*params.suppress_ids, *self._closing_ids))),
            banned_ids=tuple(dict.fromkeys((*params.banned_ids, *self._opening_ids))),
        )

    def cutter(self, params: SamplingParams) -> StopCutter:
        """The reply ends before the closing quote or any of the request's stop strings."""
        return StopCutter((self.close, *params.stop))

    def prepare(self, prompt: ChatPrompt, params: SamplingParams) -> Generation:
        """The Generation for a rendered prompt (not decoded yet: iterate it, or hand it to a scheduler)."""
        return self.decoder.generate(prompt.text, self.sampling(params))

    def reply(self, prompt: ChatPrompt, generation: Generation) -> ChatReply:
        """Cut a finished generation into the reply."""
        cutter = self.cutter(generation.params)
        for token in generation.tokens:
            cutter.push(token.text)
        cutter.finish()
        return ChatReply(
            text=cutter.text.strip(),
            finish_reason="stop" if cutter.stopped else "length",
            generation=generation,
            prompt=prompt,
        )

    def respond(
        self,
        messages: Iterable[Message],
        params: SamplingParams | None = None,
        character: str | None = None,
        user_character: str | None = None,
    ) -> ChatReply:
        """Render, generate and cut in this process (the evaluation, tests, scripts)."""
        prompt = self.render(list(messages), character, user_character)
        generation = self.prepare(prompt, params or SamplingParams(max_new_tokens=DEFAULT_MAX_TOKENS)).run()
        return self.reply(prompt, generation)
