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
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from models.characters import Character, CharacterList
from models.decoding import Decoder, DecodingBatch, Generation, Prompt, SamplingParams, candidates
from models.memory import ExchangeMemory, Recalled
from models.rerank import Candidates, Evidence, RerankConfig, evidence, rank
from models.stops import StopCutter

ROLES = ("system", "developer", "user", "assistant")
PRUNED = "pruned"  # the finish_reason of a candidate its pool stopped early (RerankConfig.prune_after)
NEUTRAL_USER = "那人"  # "that person": the novel's own way to name someone it does not name
NARRATOR_USER = "有人问"  # no characters at all: "someone asked" ... "answered"
NARRATOR_BOT = "答"
MAX_USER_CHARACTER_CHARS = 10
# A user_character: no whitespace and no quotation marks (either pair), which would break the dialogue form.
USER_CHARACTER_PATTERN = r"^[^\s“”「」]+$"
DEFAULT_MAX_TOKENS = 60
RECALLED_LINE_CUTS = 1024  # recalled lines whose cut is kept (Chat.encode): ~5.5 KB each on base-hlm
# "你是林黛玉", "你扮演王熙凤", "you are 黛玉": the bot's character; "我是宝玉": the user's.
_BOT_CUE = re.compile(r"(?:你是|你扮演|扮演|你叫|你就是|你现在是|you are|play)\s*", re.IGNORECASE)
_USER_CUE = re.compile(r"(?:我是|我叫|我扮演|i am|i'm)\s*", re.IGNORECASE)


_QUESTION_END = re.compile(r"[？?][”」’』]*\s*$|[吗呢么][。！!]?\s*$")


@dataclass(frozen=True)
class GroundingConfig:
    """How many of the novel's exchanges are recalled for a turn and how much of the prompt they may take.
    `own_weight` multiplies the retrieval score of exchanges the bot's character answered itself."""

    exchanges: int = 3
    own_weight: float = 2.0
    max_exchange_chars: int = 160
    max_chars: int = 480


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
    grounding: tuple[Recalled, ...] = ()  # the novel's exchanges rendered before the conversation
    prior: str = ""  # the character's opening alone: the context of p(reply) when ranking candidates
    turn: str = ""  # the last user message, as rendered: what a candidate reply is relevant to


@dataclass(frozen=True)
class ChatReply:
    text: str
    finish_reason: str  # "stop" (the quote closed, or a stop string) | "length" (max_tokens)
    generation: Generation
    prompt: ChatPrompt
    score: float | None = None  # relevance to the turn when the reply was chosen among candidates


class Chat:
    """Render conversations for one model and cut its replies. Stateless: one per loaded model."""

    def __init__(
        self,
        decoder: Decoder,
        characters: CharacterList,
        max_prompt_chars: int = 1000,
        memory: ExchangeMemory | None = None,
        grounding: GroundingConfig | None = None,
        rerank: RerankConfig | None = None,
    ) -> None:
        self.decoder = decoder
        self.characters = characters
        self.max_prompt_chars = max_prompt_chars
        self.memory = memory
        self.grounding = grounding or GroundingConfig()
        self.rerank = rerank or (memory.rerank if memory is not None else RerankConfig())
        # The lexical half of the ranking's relevance (models/relevance.py), read with this model's words.
        self.relevance = (
            memory.lexical_relevance(decoder.vectors, decoder.tokenizer.cut) if memory is not None else None
        )
        self.open, self.close = characters.quotes
        self._line_cuts: dict[str, Prompt] = {}  # recalled line -> its cut, oldest first (Chat.encode)
        self._line_cuts_lock = threading.Lock()  # prompts are cut on the event loop and in worker threads
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
        grounded: bool = True,
    ) -> ChatPrompt:
        """The conversation in the novel's dialogue form, ending with the bot's opening quote; with a
        memory (and `grounded`), the novel's exchanges most like the last user turn come first."""
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
        grounding = self.recall(turns, bot) if grounded else ()
        memory_lines = [self.render_exchange(recalled) for recalled in grounding]
        # Lines recalled for the turn go first, best last (nearest the conversation); the conversation's
        # own last turn always keeps its room.
        budget = self.max_prompt_chars - len(opening)
        lines: list[str] = []
        for message in reversed(turns):
            speaker = bot_speaker if message.role == "assistant" else user
            words = self._clean(message.content)
            head = f"{speaker}{self.characters.speech(question=bool(_QUESTION_END.search(words)))}{self.open}"
            line = f"{head}{words}{self.close}"
            if len(line) > budget:
                if not lines:  # the last message alone is too long: its end is what the reply answers
                    keep = max(1, budget - len(head) - len(self.close))
                    lines.append(f"{head}{words[-keep:]}{self.close}")
                break
            lines.append(line)
            budget -= len(line)
        kept: list[Recalled] = []
        recalled_text: list[str] = []
        for recalled, line in zip(grounding, memory_lines, strict=True):
            if len(line) <= budget:
                kept.append(recalled)
                recalled_text.append(line)
                budget -= len(line)
        text = "".join(reversed(recalled_text)) + "".join(reversed(lines)) + opening
        return ChatPrompt(
            text=text,
            character=bot.name if bot is not None else None,
            user_character=user,
            messages_kept=len(lines),
            messages_total=len(turns),
            grounding=tuple(kept),
            prior=opening,
            turn=next((self._clean(m.content) for m in reversed(turns) if m.role == "user"), ""),
        )

    def opening(self, bot: Character | None) -> str:
        """What the bot's turn starts with, in the novel's speech form: `黛玉道：“` (`芮小丹说：“` in a
        novel that writes speech so; narrator form `答道：“`)."""
        return f"{bot.name if bot is not None else NARRATOR_BOT}{self.characters.speech()}{self.open}"

    # ----------------------------------------------------------------------------------------- grounding
    def recall(self, turns: Sequence[Message], bot: Character | None) -> tuple[Recalled, ...]:
        """The novel's exchanges most like the last user turn (best first), those the bot's character
        answered preferred; none without a memory or a user turn."""
        if self.memory is None or not len(self.memory) or self.grounding.exchanges <= 0:
            return ()
        last_user = next((m.content for m in reversed(turns) if m.role == "user"), None)
        if last_user is None:
            return ()
        config = self.grounding
        found = self.memory.recall(
            self.decoder.tokenizer.cut(last_user),
            k=config.exchanges * 3,
            character=bot.name if bot is not None else None,
            own_weight=config.own_weight,
        )
        chosen: list[Recalled] = []
        used = 0
        for recalled in found:
            line = self.render_exchange(recalled)
            if len(line) > config.max_exchange_chars or used + len(line) > config.max_chars:
                continue
            chosen.append(recalled)
            used += len(line)
            if len(chosen) == config.exchanges:
                break
        return tuple(chosen)

    def render_exchange(self, recalled: Recalled) -> str:
        """An exchange as the novel wrote it: `宝玉道：“…”黛玉冷笑道：“…”` (the answer's own narration when
        it is a plain attribution, else the novel's speech form)."""
        exchange = recalled.exchange
        how = "".join(exchange.how.split())  # one line, as every turn of the prompt
        if not how or self.open in how or self.close in how or how[-1] not in "：:，,":
            how = f"{exchange.answerer}{self.characters.speech()}"
        said = self.characters.speech(question=bool(_QUESTION_END.search(exchange.said)))
        return (
            f"{exchange.asker}{said}{self.open}{exchange.said}{self.close}"
            f"{how}{self.open}{exchange.answer}{self.close}"
        )

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
        return self._start(prompt, self.sampling(params))

    def _start(self, prompt: ChatPrompt, params: SamplingParams) -> Generation:
        """The Generation of a rendered prompt with the chat's sampling parameters already applied; a pool
        that prunes records its first tokens' model probabilities, which the pruning ranks them by."""
        generation = self.decoder.start(self.encode(prompt), params)
        generation.model_logprob_tokens = self.rerank.prune_after or 0
        return generation

    def encode(self, prompt: ChatPrompt) -> Prompt:
        """The rendered prompt as the decoder reads it: `Decoder.encode(prompt.text)`, with each recalled
        line's cut kept across turns (the novel's lines recalled for one turn come back for others, and
        cutting them was most of a grounded turn's jieba time). Exact: jieba cuts runs of Chinese
        characters apart from punctuation, so no token spans the closing quote that ends every recalled
        line, and the pieces' cuts are the whole's."""
        lines = self._recalled_lines(prompt)
        if not lines:
            return self.decoder.encode(prompt.text)
        head = sum(map(len, lines))
        parts = [*map(self._line_cut, lines), self.decoder.encode(prompt.text[head:])]
        return Prompt(
            text=prompt.text,
            tokens=[token for part in parts for token in part.tokens],
            ids=[i for part in parts for i in part.ids],
            unknown=list(dict.fromkeys(word for part in parts for word in part.unknown)),
        )

    def uncut_chars(self, prompt: ChatPrompt) -> int:
        """How many characters of the prompt `encode` would still cut with jieba now (the recalled lines
        whose cut is kept cost nothing): a server cuts a short remainder without a hop to a thread."""
        lines = self._recalled_lines(prompt)
        with self._line_cuts_lock:
            kept = sum(len(line) for line in lines if line in self._line_cuts)
        return len(prompt.text) - kept

    def _recalled_lines(self, prompt: ChatPrompt) -> list[str]:
        """The recalled lines the prompt's text starts with, as rendered (none when it does not)."""
        lines = [self.render_exchange(recalled) for recalled in reversed(prompt.grounding)]
        return lines if prompt.text.startswith("".join(lines)) else []

    def _line_cut(self, line: str) -> Prompt:
        with self._line_cuts_lock:
            cut = self._line_cuts.get(line)
        if cut is None:
            cut = self.decoder.encode(line)
            with self._line_cuts_lock:
                self._line_cuts[line] = cut
                if len(self._line_cuts) > RECALLED_LINE_CUTS:
                    del self._line_cuts[next(iter(self._line_cuts))]
        return cut

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

    # ------------------------------------------------------------------------------------------- ranking
    def candidate_ids(self, generation: Generation) -> list[int]:
        """The tokens a candidate reply is scored by: up to and including the one holding the closing
        quote (what came after it was never part of the reply)."""
        ids = []
        for token in generation.tokens:
            ids.append(token.id)
            if self.close in token.text:
                break
        return ids

    def evidence(
        self, prompt: ChatPrompt, candidates: Sequence[Sequence[int]], read: Generation | None = None
    ) -> Evidence:
        """What the relevance of candidate replies (token ids) to the prompt's turn is computed from
        (models/rerank.py): the prompt against the character's opening alone, and the turn's words. `read`:
        a generation of this prompt already prefilled, whose pass over the prompt is reused."""
        return self.evidence_of([self.pool(prompt, candidates, read)])[0]

    def pool(
        self,
        prompt: ChatPrompt,
        replies: Sequence[Sequence[int]],
        read: Generation | None = None,
        reply_log_probs: Sequence[Sequence[float]] | None = None,
        texts: Sequence[str] | None = None,
    ) -> Candidates:
        """Candidate replies (token ids) of a rendered prompt, as the ranking reads them (`reply_log_probs`:
        their tokens' model log-probabilities after the prompt, when the decoding recorded them; `texts`:
        the replies' own texts, when they are not the tokens' (a real reply with characters read as <unk>),
        else the tokens' text, which a generated reply is: decoding never draws <unk>)."""
        words = self.decoder.vectors.words
        state = read.prompt_state if read is not None else None
        if texts is None:
            texts = ["".join(words[i] for i in ids) for ids in replies]
        return Candidates(
            prompt_ids=read.prompt.ids if state is not None else self.decoder.encode(prompt.text).ids,
            prior_ids=self.decoder.encode(prompt.prior or prompt.text).ids,
            replies=replies,
            texts=[text.replace(self.close, "") for text in texts],
            turn=prompt.turn,
            prompt_state=state,
            reply_log_probs=reply_log_probs,
        )

    def evidence_of(self, pools: Sequence[Candidates], prior: bool = True) -> list[Evidence]:
        """`evidence` of many prompts' candidates, scored together (the chat evaluation's thousands);
        `prior` False leaves log p(reply) out (see `_ranking_reads_prior`)."""
        return evidence(self.decoder, pools, self.relevance, prior)

    @property
    def _ranking_reads_prior(self) -> bool:
        """Whether this model's ranking reads log p(reply) after the opening alone: not with β 0 (chosen
        where the model's terms add nothing to the lexical relevance, training/chat_evaluation.py), and
        then a served pool skips that pass, the only one over the network its ranking makes when the
        decoding recorded the candidates' log-probabilities after the prompt."""
        return self.rerank.beta != 0.0

    def score(
        self, prompt: ChatPrompt, candidates: Sequence[Sequence[int]], read: Generation | None = None
    ) -> list[float]:
        """The relevance of each candidate reply (token ids) to the prompt's turn, as this model ranks."""
        if not candidates:
            return []
        found = self.evidence_of([self.pool(prompt, candidates, read)], self._ranking_reads_prior)[0]
        return found.scores(self.rerank.beta, self.rerank.lexical).tolist()

    def rank_replies(self, prompt: ChatPrompt, generations: Sequence[Generation]) -> list[ChatReply]:
        """Cut every finished candidate and return them best first (closed before unclosed, then by
        score); distinct texts only, so `n` choices are `n` different replies when the draws allow. The
        candidates are one prompt's (its decoding read it once; the ranking starts from that state)."""
        return self.rank_many([prompt], [generations])[0]

    def rank_many(
        self, prompts: Sequence[ChatPrompt], pools: Sequence[Sequence[Generation]]
    ) -> list[list[ChatReply]]:
        """`rank_replies` of many prompts' pools, their evidence computed together."""
        pools = [[g for g in pool if g.finish_reason != PRUNED] for pool in pools]
        found = self.evidence_of(
            [
                self.pool(prompt, [self.candidate_ids(g) for g in pool], pool[0])
                for prompt, pool in zip(prompts, pools, strict=True)
            ],
            self._ranking_reads_prior,
        )
        ranked_pools = []
        for prompt, pool, evidence_ in zip(prompts, pools, found, strict=True):
            replies = [self.reply(prompt, generation) for generation in pool]
            scores = evidence_.scores(self.rerank.beta, self.rerank.lexical).tolist()
            ranked, seen = [], set()
            for index in rank(scores, [r.finish_reason == "stop" for r in replies]):
                if replies[index].text not in seen:
                    seen.add(replies[index].text)
                    ranked.append(replace(replies[index], score=scores[index]))
            ranked_pools.append(ranked)
        return ranked_pools

    def respond(
        self,
        messages: Iterable[Message],
        params: SamplingParams | None = None,
        character: str | None = None,
        user_character: str | None = None,
        grounded: bool = True,
        candidates: int | None = None,
    ) -> ChatReply:
        """Render, generate and cut in this process (the evaluation, tests, scripts). With more than one
        candidate (the default RerankConfig's, when sampling), they are drawn in one batch with seeds
        seed, seed+1, ... and the best by `score` is returned."""
        prompt = self.render(list(messages), character, user_character, grounded=grounded)
        params = self.sampling(params or SamplingParams(max_new_tokens=DEFAULT_MAX_TOKENS))
        count = self.rerank.candidates if candidates is None else candidates
        if count <= 1 or not params.do_sample:
            generation = self._start(prompt, params).run()
            return self.reply(prompt, generation)
        generations = self.draw(prompt, params, count)
        return self.rank_replies(prompt, generations)[0]

    def draw(self, prompt: ChatPrompt, params: SamplingParams, count: int) -> list[Generation]:
        """`count` candidates of one prompt decoded together as one batch, seeded as the server seeds a
        request's candidates (`candidate_seed`)."""
        return self.draw_many([prompt], [params], count)[0]

    def draw_many(
        self, prompts: Sequence[ChatPrompt], params: Sequence[SamplingParams], count: int, rows: int = 64
    ) -> list[list[Generation]]:
        """`draw` for many prompts (each with its own parameters, already `sampling`'s), decoded in batches
        of about `rows` sequences as the server's scheduler would: a sequence draws the same alone or in a
        batch."""
        pools = [candidates(self._start(prompt, p), count) for prompt, p in zip(prompts, params, strict=True)]
        batch = DecodingBatch(self.decoder)
        waiting = list(zip(prompts, pools, strict=True))
        unpruned: list[tuple[ChatPrompt, list[Generation]]] = []
        while waiting or batch:
            while waiting and len(batch) + count <= max(rows, count):
                prompt, pool = waiting.pop(0)
                batch.add(*pool)
                unpruned.append((prompt, pool))
            batch.tick()
            ready = [(prompt, pool, 1) for prompt, pool in unpruned if self.ready_to_prune(pool)]
            if ready:
                unpruned = [(prompt, pool) for prompt, pool in unpruned if not self.ready_to_prune(pool)]
                batch.remove(g for dropped in self.prune_many(ready) for g in dropped)
        return pools

    def ready_to_prune(self, pool: Sequence[Generation]) -> bool:
        """Whether a pool has drawn what `prune` ranks: `prune_after` tokens of every candidate still
        running (never for a pool of one or without prune_after)."""
        after = self.rerank.prune_after
        return (
            after is not None
            and len(pool) > 1
            and all(g.finish_reason is not None or len(g.tokens) >= after for g in pool)
        )

    def pruner(self, prompt: ChatPrompt, keep: int) -> PoolPruning | None:
        """How a scheduler stops a served pool early (app/engine/scheduler.py, Prune); None without
        prune_after."""
        return PoolPruning(self, prompt, keep) if self.rerank.prune_after is not None else None

    def prune(self, prompt: ChatPrompt, pool: Sequence[Generation], keep: int) -> list[Generation]:
        """Stop all but the `keep` best candidates of a pool by the relevance of what each has said so far
        (the ranking's score over its first tokens, with γ = prune_lexical; one that already closed counts as
        it stands); their finish_reason becomes PRUNED and they are returned (the caller takes them out of its
        batch)."""
        return self.prune_many([(prompt, pool, keep)])[0]

    def prune_many(
        self, pools: Sequence[tuple[ChatPrompt, Sequence[Generation], int]]
    ) -> list[list[Generation]]:
        """`prune` for many pools at once: their starts are scored in one pass."""
        config = self.rerank
        lexical = config.lexical if config.prune_lexical is None else config.prune_lexical
        found = self.evidence_of(
            [self._started_pool(prompt, pool) for prompt, pool, _ in pools], self._ranking_reads_prior
        )
        stopped = []
        for (_, pool, keep), evidence_ in zip(pools, found, strict=True):
            order = rank(evidence_.scores(config.beta, lexical).tolist(), [True] * len(pool))
            dropped = [pool[i] for i in order[keep:]]
            for generation in dropped:
                generation.finish_reason = PRUNED
            stopped.append(dropped)
        return stopped

    def _started_pool(self, prompt: ChatPrompt, pool: Sequence[Generation]) -> Candidates:
        """A pool's starts as the ranking reads them, with the model log-probabilities their decoding
        recorded when it recorded all of them (`_start`)."""
        replies = [self.candidate_ids(generation) for generation in pool]
        recorded = all(len(g.model_logprobs) >= len(ids) for g, ids in zip(pool, replies, strict=True))
        known = (
            [g.model_logprobs[: len(ids)] for g, ids in zip(pool, replies, strict=True)] if recorded else None
        )
        return self.pool(prompt, replies, pool[0], known)


@dataclass(frozen=True)
class PoolPruning:
    """A served pool's pruning, as the scheduler asks it (app/engine/scheduler.py, Prune): whether every
    candidate has said enough, and which to stop; the ready pools of one tick are scored together."""

    chat: Chat
    prompt: ChatPrompt
    keep: int

    def ready(self, generations: list[Generation]) -> bool:
        return self.chat.ready_to_prune(generations)

    def stop(self, requests: list[tuple[PoolPruning, list[Generation]]]) -> list[list[Generation]]:
        return self.chat.prune_many([(pruning.prompt, pool, pruning.keep) for pruning, pool in requests])
