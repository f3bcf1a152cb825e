"""Text generation from a trained network: stateful decoding with the sampling controls of HF/TGI servers.

The prompt runs through the LSTM once; after that every new token costs one `Network.step` (O(1) in the length
of the text so far), unlike the reference scripts that re-feed the whole window for every word.

Choosing each token from the logits (penalties, temperature, top-k, top-p, the seeded draw) is the job of
the sequence's own `models.sampling.Sampler`; this module runs the network and the stop/length bookkeeping.

`DecodingBatch` advances many sequences together (one batched `Network.step` and one batched
`Network.scores` per tick, then `models.sampling.choose_batch`, which applies every sequence's own Sampler
with one NumPy call per step for the whole batch): the server's scheduler (app/engine/scheduler.py) keeps one
per worker process. `Decoder.generate` is the in-process API and runs the same code as a batch of one.

`GeneratedToken.similarity` is the cosine between the network's predicted vector and the chosen word's output
vector (the vector it was scored against), which is what `Network.similarity` computes for every word; the
one-hot ("softmax") head predicts no vector, so it is None there.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from models.cache import CacheHistory, ContinuousCache, unit_rows
from models.ngram import Mixture
from models.sampling import Sampler, SamplingParams, choose_batch, softmax_with_temperature, top_k_indices
from models.vocabulary import UNKNOWN_TOKEN, spell

__all__ = [
    "Candidate",
    "Decoder",
    "DecodingBatch",
    "EmptyPromptError",
    "GeneratedToken",
    "Generation",
    "Piece",
    "Prompt",
    "PromptState",
    "SamplingParams",
    "candidate_seed",
    "candidates",
]

# Seeds drawn for requests that did not send one stay below 2**53 so JavaScript clients can echo them exactly.
_MAX_DRAWN_SEED = 2**53


def candidate_seed(seed: int, index: int) -> int:
    """The seed of candidate `index` of a request seeded with `seed` (candidate 0 keeps the request's): the
    server's `n`/`best_of` candidates and chat's reranked pool draw with these, in process and served alike.
    Derived seeds stay below 2**53 as drawn ones do: JavaScript echoes them exactly."""
    if index == 0:
        return seed
    return int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint64)[0]) % _MAX_DRAWN_SEED


def candidates(first: Generation, count: int) -> list[Generation]:
    """`first` and count - 1 more generations of its prompt (cut once: the same Prompt object, so a
    DecodingBatch reads it once for all of them), each with its own seed (`candidate_seed`)."""
    more = []
    for index in range(1, count):
        seed = candidate_seed(first.seed, index)
        params = replace(first.params, seed=seed)
        more.append(Generation(first.prompt, params, seed, model_logprob_tokens=first.model_logprob_tokens))
    return [first, *more]


class NetworkLike(Protocol):
    """What decoding needs from models.network.Network (a duck type the tests' small networks satisfy too)."""

    def forward_sequence(
        self, ids: np.ndarray, state: Any = None, lengths: np.ndarray | None = None
    ) -> tuple[np.ndarray, Any]: ...
    def step(self, ids: np.ndarray, state: Any) -> tuple[np.ndarray, Any]: ...
    def scores(self, output: np.ndarray) -> np.ndarray: ...
    def similarity(self, output: np.ndarray) -> np.ndarray | None: ...
    def output_unit_vectors(self) -> np.ndarray: ...


class VectorsLike(Protocol):
    words: list[str]
    index: dict[str, int]
    unit: np.ndarray

    def suggest(self, word: str, k: int = 5) -> list[str]: ...


class TokenizerLike(Protocol):
    def cut(self, text: str) -> list[str]: ...


class EmptyPromptError(ValueError):
    """The prompt holds no tokens at all (empty, or only whitespace): the only prompt the model cannot read,
    since every other character maps to a word, a character or <unk> (models/vocabulary.py)."""


@dataclass(frozen=True)
class Prompt:
    """A prompt as the model sees it: the tokenizer's tokens, the model's ids for all of them (rare words
    spelled with their characters: models/vocabulary.py), and the words that had to be spelled."""

    text: str
    tokens: list[str]
    ids: list[int]
    unknown: list[str]  # tokenizer tokens not in the vocabulary as a whole: read through their characters


@dataclass(frozen=True)
class Piece:
    """One token of a text as the model reads it, with its place in the text (character offsets)."""

    text: str
    start: int
    stop: int
    id: int  # the vocabulary id the model reads (<unk>'s for a character it never learnt)
    spelled: bool  # a character of a word outside the vocabulary, read through its characters


@dataclass(frozen=True)
class GeneratedToken:
    id: int
    text: str
    logprob: float
    similarity: float | None
    # (id, logprob) of the most probable words it was drawn among, best first (params.top_n_tokens > 0).
    top: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class Candidate:
    id: int
    word: str
    probability: float
    similarity: float | None


@dataclass(frozen=True)
class ModelRows:
    """Some rows of a tick's model distribution (Decoder.served_and_model), as log-probabilities or as
    probabilities: whichever the tick had, so that only the chosen token's entry is turned into a log."""

    values: np.ndarray
    log: bool

    def logprob(self, row: int, token: int) -> float:
        value = float(self.values[row, token])
        return value if self.log else (math.log(value) if value > 0 else -math.inf)


@dataclass(frozen=True)
class PromptState:
    """Where the network stands after reading a prompt: the head output after its last token (1, .) and the
    network's state there. Candidates of one prompt share it, and chat's ranking continues from it instead of
    reading the prompt again (models/rerank.py)."""

    output: np.ndarray
    state: Any


@dataclass
class Generation:
    """One generation in progress. Iterate it to get tokens as they are decoded (for streaming); afterwards
    `tokens`, `text` and `finish_reason` ("length" | "stop_sequence") describe the result."""

    prompt: Prompt
    params: SamplingParams
    seed: int
    tokens: list[GeneratedToken] = field(default_factory=list)
    finish_reason: str | None = None
    # params.prefill_logprobs: log P(prompt token | the ones before it); None for the first (nothing before).
    prefill_logprobs: list[float | None] | None = None
    # Seconds between submission and joining a batch, set by the scheduler that queued it.
    queue_seconds: float | None = None
    # Set by the prefill (DecodingBatch.add): the network after the prompt, shared by its candidates.
    prompt_state: PromptState | None = field(default=None, repr=False)
    # The first `model_logprob_tokens` tokens also get their natural-log probability under the model's own
    # next-word distribution (temperature 1, no penalties, without the continuous cache) in
    # `model_logprobs`: what chat's ranking scores the start of a reply by (models/rerank.py), read off the
    # tick that drew it instead of a second pass. Chat's pruned pools ask for it.
    model_logprob_tokens: int = 0
    model_logprobs: list[float] = field(default_factory=list)
    _iterator: Iterator[GeneratedToken] | None = field(default=None, repr=False)

    @property
    def text(self) -> str:
        # Chinese is written without spaces, and jieba cut the novel without inserting any.
        return "".join(token.text for token in self.tokens)

    def __iter__(self) -> Iterator[GeneratedToken]:
        if self._iterator is None:
            raise RuntimeError("a Generation can be iterated once")
        iterator, self._iterator = self._iterator, None
        return iterator

    def run(self) -> Generation:
        """Decode to the end (non-streaming use) and return self."""
        for _ in self:
            pass
        return self


class Decoder:
    """Generation and next-word prediction for one loaded model. Holds no per-request state, so one Decoder
    serves concurrent requests (each request's LSTM state lives in its own Generation)."""

    def __init__(
        self,
        network: NetworkLike,
        vectors: VectorsLike,
        tokenizer: TokenizerLike,
        mixture: Mixture | None = None,
        cache: ContinuousCache | None = None,
    ) -> None:
        self.network = network
        self.mixture = mixture  # with one, every next-token distribution is λ·LSTM + (1 − λ)·n-gram
        # With one, (1 − μ)·that + μ·a continuous cache over the prompt, never the sampled text
        # (models/cache.py says why).
        self.cache = cache
        self.context = mixture.context if mixture is not None else 0  # ids of history the n-gram reads
        if cache is not None and cache.settings.counts_used:  # the cache's token n-gram reads the last two
            self.context = max(self.context, 2)
        self.vectors = vectors
        self.tokenizer = tokenizer
        self.vocab_size = len(vectors.words)
        self.unknown_id: int | None = vectors.index.get(UNKNOWN_TOKEN)

    # ----------------------------------------------------------------------------------------------------
    # prompt

    def encode(self, text: str) -> Prompt:
        """Cut the prompt exactly as the novel was cut and map it with the training rule: every token gets
        ids (a word outside the vocabulary through its characters, a rare character as <unk>)."""
        tokens = self.tokenizer.cut(text)
        index = self.vectors.index
        ids = [index[token] for token in spell(tokens, index)]
        unknown = list(dict.fromkeys(token for token in tokens if token not in index))
        return Prompt(text=text, tokens=tokens, ids=ids, unknown=unknown)

    def pieces(self, text: str) -> list[Piece]:
        """The tokens of `text` exactly as `encode` reads them (the same `spell` rule), each with its
        character offsets in `text`: jieba keeps every character and drops only whitespace tokens, so each
        tokenizer token is found in order; a spelled-out word gives one piece per character."""
        index = self.vectors.index
        pieces, position = [], 0
        for token in self.tokenizer.cut(text):
            found = text.find(token, position)
            start = found if found >= 0 else position
            position = start + len(token)
            spelled = spell([token], index)
            if spelled == [token]:
                pieces.append(Piece(text=token, start=start, stop=position, id=index[token], spelled=False))
                continue
            chars = [(start + offset, char) for offset, char in enumerate(token) if not char.isspace()]
            for (where, char), model_token in zip(chars, spelled, strict=True):
                pieces.append(
                    Piece(text=char, start=where, stop=where + 1, id=index[model_token], spelled=True)
                )
        return pieces

    def _require_known(self, prompt: Prompt) -> None:
        if not prompt.ids:
            raise EmptyPromptError("the prompt is empty; send at least one word, e.g. 宝玉笑道")

    def next_logits(
        self, outputs: np.ndarray, recent: Sequence[Sequence[int]], history: CacheHistory | None = None
    ) -> np.ndarray:
        """(B, V) logits of the next token after head outputs (B, .): the network's scores, or with a mixture
        log(λ·softmax(scores) + (1 − λ)·P_ngram(· | the last ids of each row's `recent`)), and with a cache
        and each row's `history` the log of (1 − μ)·that + μ·p_cache: the distribution the held-out bits per
        character measure; <unk> at -inf."""
        return self.served_and_model(outputs, recent, history)[0]

    def served_and_model(
        self,
        outputs: np.ndarray,
        recent: Sequence[Sequence[int]],
        history: CacheHistory | None = None,
        model_rows: Sequence[int] = (),
    ) -> tuple[np.ndarray, ModelRows | None]:
        """`next_logits`, and for `model_rows` the model's distribution before the continuous cache (the
        LSTM's softmax, or the n-gram mixture's): the distribution chat's ranking scores replies by, kept
        before the cache is mixed in (None without rows)."""
        keep = np.asarray(model_rows, dtype=np.int64)
        model = None
        if self.cache is None or history is None:
            logits = self.network.scores(outputs)
            if self.mixture is not None:
                logits = self.mixture.log_probs(logits, self.mixture.histories(recent), np.float32)
                model = ModelRows(logits[keep], log=True) if len(keep) else None  # before <unk> is masked
            elif len(keep):  # the network's own scores, normalised as models/rerank.py does
                rows = logits[keep].astype(np.float64)
                top = rows.max(axis=1, keepdims=True)
                model = ModelRows(
                    rows - np.log(np.exp(rows - top).sum(axis=1, keepdims=True)) - top, log=True
                )
            return self.mask_unknown(logits), model
        probabilities = self._model_probabilities(outputs, recent)
        if len(keep):
            model = ModelRows(probabilities[keep], log=False)  # a copy: the cache is mixed in in place
        probabilities = self.cache.mix(probabilities, outputs, history, recent)
        return self._log(probabilities), model

    def _model_probabilities(self, outputs: np.ndarray, recent: Sequence[Sequence[int]]) -> np.ndarray:
        """(B, V) float32 next-token probabilities before the cache: softmax(scores), or the mixture's."""
        logits = self.network.scores(outputs)
        if self.mixture is not None:
            return self.mixture.probabilities(logits, self.mixture.histories(recent), np.float32)
        probabilities = np.array(logits, dtype=np.float32)
        probabilities -= probabilities.max(axis=-1, keepdims=True)
        np.exp(probabilities, out=probabilities)
        probabilities /= probabilities.sum(axis=-1, keepdims=True)
        return probabilities

    def _log(self, probabilities: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return self.mask_unknown(np.log(probabilities, out=probabilities))

    def mask_unknown(self, logits: np.ndarray) -> np.ndarray:
        """<unk> names no character, so it is never predicted or generated: its logit becomes -inf (in place;
        the last axis is the vocabulary)."""
        if self.unknown_id is not None:
            logits[..., self.unknown_id] = -np.inf
        return logits

    def _run_prompt(self, prompt: Prompt) -> tuple[np.ndarray, Any]:
        """One pass over the prompt: the head output after its last token (1, .) and the LSTM state."""
        output, state, _, _ = self._prefill(prompt, logprobs=False)
        return output, state

    def _prefill(
        self, prompt: Prompt, logprobs: bool
    ) -> tuple[np.ndarray, Any, list[float | None] | None, CacheHistory | None]:
        """`_run_prompt`, plus (when asked) every prompt token's log-probability given the tokens before it,
        and (with a cache) the prompt's pairs of head output and following token, which the cache starts
        from. `_prefill_many` of one prompt."""
        return self._prefill_many([(prompt, logprobs)])[0]

    def _prefill_many(
        self, prompts: Sequence[tuple[Prompt, bool]]
    ) -> list[tuple[np.ndarray, Any, list[float | None] | None, CacheHistory | None]]:
        """`_prefill` of several prompts (with whether each wants its log-probabilities), their LSTM passes
        batched: prompts of similar length run as one right-padded (B, T) pass (`prefill_groups`).

        Why batched: a step of the LSTM over one prompt is a vector-matrix product that reads all the
        recurrent weights for one row, so B prompts of ~160 tokens (grounded chat turns joining a batch in
        the same tick) cost about half of B passes. Right padding needs no mask: the LSTM reads left to
        right, so a row's outputs up to its length are what its own pass gives, and its state is taken after
        its own last token (`Network.forward_sequence`'s lengths); the padded steps are never read. The
        numbers equal one pass per prompt up to BLAS rounding (a product of B rows may round differently in
        the last bit than one of a single row), as everywhere in a batch.

        The log-probabilities reuse the head output the same pass computed at each position, so they cost
        one more (T-1, V) scoring and no second LSTM pass. The model's next-word distribution as /predict
        gives it (temperature 1, no penalties, <unk> never predicted), as TGI's prefill details; None where
        there is nothing to score: the first token, and a prompt character read as <unk>."""
        results: list[Any] = [None] * len(prompts)
        for group in prefill_groups([len(prompt.ids) for prompt, _ in prompts]):
            if len(group) == 1:
                ids = np.asarray(prompts[group[0]][0].ids, dtype=np.int64)[None, :]
                outputs, state = self.network.forward_sequence(ids)
                passes = [(outputs[0], state)]
            else:
                lengths = np.asarray([len(prompts[i][0].ids) for i in group], dtype=np.int64)
                ids = np.zeros((len(group), int(lengths.max())), dtype=np.int64)
                for row, i in enumerate(group):
                    ids[row, : lengths[row]] = prompts[i][0].ids
                outputs, state = self.network.forward_sequence(ids, lengths=lengths)
                passes = [
                    (
                        outputs[row, : lengths[row]],
                        [tuple(part[row : row + 1] for part in layer) for layer in state],
                    )
                    for row in range(len(group))
                ]
            for i, (outputs, state) in zip(group, passes, strict=True):
                prompt, logprobs = prompts[i]
                results[i] = (outputs[-1:], state, *self._prompt_details(prompt, outputs, logprobs))
        return results

    def _prompt_details(
        self, prompt: Prompt, outputs: np.ndarray, logprobs: bool
    ) -> tuple[list[float | None] | None, CacheHistory | None]:
        """The prompt's log-probabilities (when asked) and its cache history, from its head outputs (T, .)."""
        ids = np.asarray(prompt.ids, dtype=np.int64)
        history = None
        if self.cache is not None:
            settings = self.cache.settings
            history = CacheHistory.of_text(outputs[:-1], ids[1:], settings.window, settings.ids_window)
        prefill: list[float | None] | None = None
        if logprobs:
            prefill = [None]
            if len(ids) > 1:
                # With a mixture the n-gram reads the ids before each position, as in decoding; with a cache,
                # position t remembers the prompt's pairs before t.
                before = [prompt.ids[: i + 1] for i in range(len(ids) - 1)]
                if self.cache is None:
                    logits = self.next_logits(outputs[:-1], before).astype(np.float64)
                else:
                    probabilities = self._model_probabilities(outputs[:-1], before)
                    unit = unit_rows(outputs[:-1])
                    self.cache.mix_stream(probabilities, unit, ids[1:], start=0)
                    logits = self._log(probabilities).astype(np.float64)
                logits -= logits.max(axis=1, keepdims=True)
                log_norm = np.log(np.exp(logits).sum(axis=1))
                following = ids[1:]
                values = logits[np.arange(following.shape[0]), following] - log_norm
                prefill += [
                    None if token == self.unknown_id else float(value)
                    for token, value in zip(following.tolist(), values.tolist(), strict=True)
                ]
        return prefill, history

    # ----------------------------------------------------------------------------------------------------
    # next-word prediction

    def predict_next(
        self, text: str, top_k: int = 10, temperature: float = 1.0
    ) -> tuple[Prompt, list[Candidate]]:
        """The top_k most probable next words after `text`, with probability and cosine similarity."""
        prompt = self.encode(text)
        self._require_known(prompt)
        output, _, _, history = self._prefill(prompt, logprobs=False)
        logits = self.next_logits(output, [prompt.ids], history)[0].astype(np.float64)
        probabilities = softmax_with_temperature(logits, temperature)  # finite for any temperature > 0
        k = min(top_k, self.vocab_size)
        best = top_k_indices(probabilities, k)
        best = best[np.argsort(-probabilities[best], kind="stable")]
        similarity = self.network.similarity(output)
        candidates = [
            Candidate(
                id=int(i),
                word=self.vectors.words[i],
                probability=float(probabilities[i]),
                similarity=None if similarity is None else float(similarity[0, i]),
            )
            for i in best
        ]
        return prompt, candidates

    # ----------------------------------------------------------------------------------------------------
    # generation

    def generate(self, text: str, params: SamplingParams | None = None) -> Generation:
        """Prepare a generation: validates, encodes and checks the prompt now (so errors surface before any
        streaming starts); the prompt pass and the decoding happen while the Generation is iterated.

        Iterating it decodes this one generation as a batch of one (`DecodingBatch`), the same code the
        server's scheduler runs for many; a server hands the Generation to its scheduler instead."""
        (params or SamplingParams()).validate()  # a bad parameter is named before the prompt is cut
        return self.start(self.encode(text), params)

    def start(self, prompt: Prompt, params: SamplingParams | None = None) -> Generation:
        """`generate` for a prompt already encoded (by `encode`, or in pieces that cut as the whole does:
        chat's recalled lines, models/chat.py)."""
        params = params or SamplingParams()
        params.validate()
        self._require_known(prompt)
        if params.truncate is not None and len(prompt.ids) > params.truncate:
            # TGI's truncate: only the last N tokens are read (the end of a prompt is what it continues).
            prompt = replace(prompt, ids=prompt.ids[-params.truncate :])
        seed = params.seed if params.seed is not None else secrets.randbelow(_MAX_DRAWN_SEED)
        generation = Generation(prompt=prompt, params=params, seed=seed)
        generation._iterator = self._decode_alone(generation)
        return generation

    def _decode_alone(self, generation: Generation) -> Iterator[GeneratedToken]:
        batch = DecodingBatch(self)
        batch.add(generation)
        while batch:
            for _, token in batch.tick():
                yield token


class _Sequence:
    """One generation's place in a DecodingBatch: its sampler and its stop/length bookkeeping. Its LSTM state
    and head output are rows of the batch's stacked arrays, at the same index as the sequence itself."""

    __slots__ = ("context", "generation", "longest_stop", "recent", "sampler", "stops", "text")

    def __init__(self, generation: Generation, vocab_size: int, context: int = 0) -> None:
        self.generation = generation
        self.context = context
        # The last `context` ids (prompt, then generated): what the decoder's n-gram conditions on.
        self.recent = list(generation.prompt.ids[len(generation.prompt.ids) - context :]) if context else []
        self.sampler = Sampler(generation.params, generation.seed, vocab_size, seen=generation.prompt.ids)
        self.stops = generation.params.stop
        self.longest_stop = max((len(stop) for stop in self.stops), default=0)
        self.text = ""  # only the tail a stop sequence can still end in is kept

    def record(self, token: GeneratedToken) -> bool:
        """Append the token; True (and finish_reason set) when this sequence is done."""
        generation = self.generation
        generation.tokens.append(token)
        if self.context:
            self.recent.append(token.id)
            del self.recent[: len(self.recent) - self.context]
        if self.stops:
            self.text = (self.text + token.text)[-(self.longest_stop + len(token.text)) :]
            if any(stop in self.text for stop in self.stops):
                generation.finish_reason = "stop_sequence"
                return True
            # Keep only what a later token could complete a stop sequence with.
            self.text = self.text[-self.longest_stop :]
        if len(generation.tokens) >= generation.params.max_new_tokens:
            generation.finish_reason = "length"
            return True
        return False


class DecodingBatch:
    """Many generations advanced together: one `Network.step` and one `Network.scores` per tick for all.

    The sequences' LSTM states are stacked (layer by layer, one row per sequence) next to their last head
    outputs. A tick scores every row at once (a (B, D) x (D, V) matrix product instead of B matrix-vector
    products: the output matrix is read once per tick, not once per sequence), lets each sequence's own
    Sampler choose from its row (all rows at once, `choose_batch`), drops the sequences that finished, and
    steps the rest with one batched `Network.step`. Sequences join with `add` (their prompt is run through
    the LSTM on its own, since prompts differ in length; the candidates of one request share one prompt
    and one pass, and each starts from a copy of its state) and leave with `remove` or by finishing.

    Nothing is shared between rows except the matrix products, so a seeded sequence draws the same numbers
    alone or in a batch. The products themselves may round differently in the last bit when the batch shape
    changes (BLAS picks kernels by shape), so logits can differ by ~1e-6; the same token is drawn unless a
    draw falls that close to the boundary between two tokens (see the README's Speed section).

    Not thread-safe: one thread (the server's scheduler, or `Decoder.generate`'s iterator) owns a batch.
    """

    def __init__(self, decoder: Decoder) -> None:
        self.decoder = decoder
        self.network = decoder.network
        self.words = decoder.vectors.words
        self.sequences: list[_Sequence] = []
        self._outputs: np.ndarray | None = None  # (B, .) head output after each sequence's last token
        self._state: Any = None  # Network state with B rows
        self._history: CacheHistory | None = None  # with a cache: each row's remembered pairs
        self._has_vector: bool | None = None  # the one-hot head predicts no vector: no similarity

    def __len__(self) -> int:
        return len(self.sequences)

    @property
    def generations(self) -> list[Generation]:
        return [sequence.generation for sequence in self.sequences]

    def add(self, *generations: Generation) -> None:
        """Prefill: run each prompt through the LSTM and append the sequences; they decode from the next tick.

        Generations of one Prompt object (a request's candidates, `candidates`) are read once: the pass, the
        prompt's log-probabilities and its cache pairs are computed for the first and copied into a row per
        candidate. A candidate's numbers are the ones its own pass would give (the same arithmetic on the
        same ids), so nothing a seed draws changes; a prompt of 150 tokens costs one pass instead of four.
        Different prompts joining together (the requests a scheduler admits in one tick) are read in batched
        passes (`Decoder._prefill_many`)."""
        # Every pass first (one batched prefill): a failing prefill appends nothing.
        reads: dict[tuple[int, bool], Prompt] = {}
        for generation in generations:
            reads.setdefault((id(generation.prompt), generation.params.prefill_logprobs), generation.prompt)
        passes = self.decoder._prefill_many([(prompt, logprobs) for (_, logprobs), prompt in reads.items()])
        prefilled = {
            key: (PromptState(output, state), prefill, history)
            for key, (output, state, prefill, history) in zip(reads, passes, strict=True)
        }
        joining = []
        for generation in generations:
            read, prefill, history = prefilled[id(generation.prompt), generation.params.prefill_logprobs]
            generation.prefill_logprobs = None if prefill is None else list(prefill)
            generation.prompt_state = read
            joining.append((read, history))
        self._append(generations, joining)

    def add_requests(self, requests: Sequence[Sequence[Generation]]) -> list[Exception | None]:
        """`add` for the generations of several requests (a scheduler's tick), in one batched prefill; if
        that fails, each request is added on its own, so only a request whose prefill fails stays out.
        Returns each request's error (None for those that joined)."""
        try:
            self.add(*(generation for generations in requests for generation in generations))
            return [None] * len(requests)
        except Exception:  # nothing was appended: every pass runs before any row joins
            errors: list[Exception | None] = []
            for generations in requests:
                try:
                    self.add(*generations)
                    errors.append(None)
                except Exception as error:
                    errors.append(error)
            return errors

    def _append(
        self, generations: Sequence[Generation], rows: Sequence[tuple[PromptState, CacheHistory | None]]
    ) -> None:
        """The sequences and their rows, stacked onto the batch's arrays at once (one copy of the batch per
        `add`, however many join)."""
        if not generations:
            return
        if self._has_vector is None:
            self._has_vector = self.network.similarity(rows[0][0].output) is not None
        for generation in generations:
            self.sequences.append(_Sequence(generation, self.decoder.vocab_size, self.decoder.context))
        # np.concatenate copies: the generations' PromptState keeps the prefill's arrays for ranking.
        outputs = [read.output for read, _ in rows]
        states = [read.state for read, _ in rows]
        if self._outputs is not None:
            outputs.insert(0, self._outputs)
            states.insert(0, self._state)
        self._outputs = np.concatenate(outputs)
        self._state = [
            tuple(np.concatenate([state[layer][part] for state in states]) for part in range(2))
            for layer in range(len(states[0]))
        ]
        histories = [history for _, history in rows]
        if self.decoder.cache is not None and all(h is not None for h in histories):
            if self._history is not None:
                histories.insert(0, self._history)
            self._history = CacheHistory.concatenate(histories)

    def remove(self, generations: Iterable[Generation]) -> None:
        """Drop these generations now (cancelled: their client went away); their rows are freed."""
        leaving = {id(generation) for generation in generations}
        self._keep([row for row, s in enumerate(self.sequences) if id(s.generation) not in leaving])

    def tick(self) -> list[tuple[Generation, GeneratedToken]]:
        """Advance every sequence by one token; returns (generation, token) per sequence, in batch order.
        A generation whose finish_reason is set after this tick has left the batch."""
        if not self.sequences:
            return []
        outputs = self._outputs
        # (B, V): rows are scratch space for each sampler; <unk> is never drawn.
        logits, model = self._next_logits()
        choices = choose_batch([sequence.sampler for sequence in self.sequences], logits)
        similarities: list[float | None] = [None] * len(choices)
        if self._has_vector:
            # cos(predicted, chosen word's output vector) for every row at once.
            unit = self.network.output_unit_vectors()
            chosen = np.fromiter((choice.id for choice in choices), dtype=np.int64, count=len(choices))
            norms = np.sqrt(np.einsum("ij,ij->i", outputs, outputs))
            dots = np.einsum("ij,ij->i", outputs, unit[chosen])
            similarities = np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0).tolist()
        events: list[tuple[Generation, GeneratedToken]] = []
        continuing: list[int] = []
        next_ids: list[int] = []
        for row, (sequence, choice) in enumerate(zip(self.sequences, choices, strict=True)):
            token = GeneratedToken(
                id=choice.id,
                text=self.words[choice.id],
                logprob=choice.logprob,
                similarity=similarities[row],
                top=choice.top,
            )
            if row in model:
                rows, at = model[row]
                sequence.generation.model_logprobs.append(rows.logprob(at, choice.id))
            if not sequence.record(token):
                continuing.append(row)
                next_ids.append(choice.id)
            events.append((sequence.generation, token))
        self._keep(continuing)
        if continuing:
            chosen_ids = np.asarray(next_ids, dtype=np.int64)
            self._outputs, self._state = self.network.step(chosen_ids, self._state)
        return events

    def _next_logits(self) -> tuple[np.ndarray, dict[int, tuple[ModelRows, int]]]:
        """(B, V) next-token logits of every row, each row its own copy (the samplers write into them), and
        for each row that records its token's probability under the model (`Generation.model_logprobs`)
        where that row's model distribution is (rows kept by `Decoder.served_and_model`, and which).

        A request's candidates that have not drawn yet stand at the same place: the prompt's head output,
        its state, its recent ids and its cache (one PromptState, `add`). Their distribution is computed
        once and copied to each of their rows, so a pool of four pays for one row at its first tick (the
        penalties, temperature and draw that make them differ are each sampler's, in `choose_batch`)."""
        sequences = self.sequences
        source = np.arange(len(sequences))  # the row whose distribution each row takes
        first_of: dict[int, int] = {}
        for row, sequence in enumerate(sequences):
            generation = sequence.generation
            if not generation.tokens and generation.prompt_state is not None:
                source[row] = first_of.setdefault(id(generation.prompt_state), row)
        recording = [
            row
            for row, sequence in enumerate(sequences)
            if len(sequence.generation.tokens) < sequence.generation.model_logprob_tokens
        ]
        recent = [sequence.recent for sequence in sequences]
        if len(first_of) == sum(not s.generation.tokens for s in sequences):  # nothing shared
            logits, model = self.decoder.served_and_model(self._outputs, recent, self._history, recording)
            return logits, {row: (model, i) for i, row in enumerate(recording)} if model is not None else {}
        rows, where = np.unique(source, return_inverse=True)
        kept, kept_of = np.unique(where[recording], return_inverse=True)  # computed rows to keep
        history = self._history.select(rows) if self._history is not None else None
        logits, model = self.decoder.served_and_model(
            self._outputs[rows], [recent[row] for row in rows], history, kept.tolist()
        )
        found = {row: (model, kept_of[i]) for i, row in enumerate(recording)} if model is not None else {}
        return logits[where], found

    def _keep(self, rows: list[int]) -> None:
        if len(rows) == len(self.sequences):
            return
        self.sequences = [self.sequences[row] for row in rows]
        if not rows:
            self._outputs = self._state = self._history = None
            return
        index = np.asarray(rows, dtype=np.int64)
        self._outputs = self._outputs[index]
        self._state = _select_states(self._state, index)
        if self._history is not None:
            self._history = self._history.select(index)


# Prompts joining together are read in one padded pass when the shortest is at least this share of the
# longest: padding a row costs its share of every step, so a 17-token plain prompt padded to a 160-token
# grounded one would cost more than its own pass.
PREFILL_GROUP_SHARE = 0.75


def prefill_groups(lengths: Sequence[int]) -> list[list[int]]:
    """Indices of prompts (by their lengths) read together: longest first, a new group whenever a prompt is
    shorter than PREFILL_GROUP_SHARE of its group's longest."""
    groups: list[list[int]] = []
    longest = 0
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if not groups or lengths[index] < PREFILL_GROUP_SHARE * longest:
            groups.append([])
            longest = lengths[index]
        groups[-1].append(index)
    return groups


def _select_states(state: Any, index: np.ndarray) -> Any:
    return [tuple(part[index] for part in layer) for layer in state]
