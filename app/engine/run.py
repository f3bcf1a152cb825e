"""What a protocol hands the engine and gets back: one `GenerationRequest` type for every API, its candidates,
and the token stream of a running request.

A request may ask for several candidates (OpenAI's `n`, TGI's `best_of`, a chat reranker's pool): they are
separate generations of the same prompt, decoded side by side in the scheduler's batch, each with its own
seed. Candidate 0 uses the request's seed itself, so a request for one candidate is exactly the request it
always was; candidate i > 0 uses a seed derived from the request's seed and i (`candidate_seed`), so a
seeded request gives the same candidates every time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from app.engine.scheduler import Ticket, TokenEvent
from models.decoding import Generation, SamplingParams, candidate_seed, candidates

__all__ = ["GenerationRequest", "Score", "TokenStream", "candidate_seed", "candidates", "cumulative_logprob"]

# A candidate's score (higher is better): how `ModelService.complete` ranks a request's candidates.
Score = Callable[[Generation], float]


@dataclass(frozen=True)
class GenerationRequest:
    """A generation request as every protocol validates it into.

    `text` is the prompt as the client sent it and `field` its name in the request, for the 422 of an
    empty prompt. `start` turns the parameters into a Generation; by default the decoder cuts `text`
    (`Decoder.generate`), chat passes `Chat.prepare` for its rendered conversation. How many characters
    `start` still has to cut with jieba decides where it runs (`ModelService.prepare`): all of `text`, or
    `uncut_chars` when `start` has some of its cuts already (chat's recalled lines). `route` labels the
    generated tokens in /metrics."""

    text: str
    params: SamplingParams
    route: str
    field: str = "inputs"
    candidates: int = 1
    start: Callable[[SamplingParams], Generation] | None = None
    uncut_chars: int | None = None


def cumulative_logprob(generation: Generation) -> float:
    """TGI's best_of score: the sum of the chosen tokens' log-probabilities."""
    return float(sum(token.logprob for token in generation.tokens))


class TokenStream:
    """The token events of one submitted request, every candidate's interleaved, for `async for`. Leaving the
    loop early (a disconnect cancels the task iterating it) cancels every candidate."""

    def __init__(self, ticket: Ticket, count_token: Callable[[], None]) -> None:
        self._ticket = ticket
        self._count_token = count_token
        self.generations = ticket.generations

    async def __aiter__(self) -> AsyncIterator[TokenEvent]:
        async for event in self._ticket.events():
            self._count_token()
            yield event

    def cancel(self) -> None:
        self._ticket.cancel()
