"""The server's limits on a request (MAX_PROMPT_CHARS, MAX_NEW_TOKENS, TOP_K_LIMIT, ...), checked once for
every protocol. Each check names the field as the request spelled it (TGI's `parameters.max_new_tokens`,
OpenAI's `max_tokens`), so the 422 points at what the client sent. The same numbers are written into the
OpenAPI document (app/http/openapi.py) and GET /info."""

from __future__ import annotations

from app.engine.errors import APIError
from app.settings import Settings


class Limits:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def check_prompt(self, text: str, field: str = "inputs") -> None:
        if not text.strip():
            raise APIError(
                422,
                "validation",
                f"{field} is empty; send a few words of the novel to continue, e.g. 宝玉笑道",
                param=field,
            )
        limit = self.settings.max_prompt_chars
        if len(text) > limit:
            raise APIError(
                422,
                "validation",
                f"{field} is {len(text)} characters long, the limit is {limit}; shorten the prompt (only its "
                "last words matter most) or raise MAX_PROMPT_CHARS on the server",
                param=field,
            )

    def check_top_k(self, top_k: int | None, field: str) -> None:
        limit = self.settings.top_k_limit
        if top_k is not None and top_k > limit:
            raise APIError(422, "validation", f"{field} is {top_k}, the limit is {limit}; ask for fewer")

    @property
    def max_input_tokens(self) -> int:
        """TGI's max_input_tokens: every token is at least one character, so the prompt limit in characters
        bounds the tokens too."""
        return self.settings.max_prompt_chars

    def check_generation(
        self,
        max_new_tokens: int,
        stop: list[str],
        top_n_tokens: int = 0,
        truncate: int | None = None,
        prefix: str = "parameters.",
        names: dict[str, str] | None = None,
    ) -> None:
        """The server limits of /info, for TGI's parameters (prefix "parameters.") and OpenAI's (names maps
        TGI's names to the route's, e.g. max_new_tokens -> max_tokens)."""
        names = names or {}

        def field(name: str) -> str:
            return prefix + names.get(name, name)

        limit = self.settings.max_new_tokens
        if max_new_tokens > limit:
            raise APIError(
                422,
                "validation",
                f"{field('max_new_tokens')} is {max_new_tokens}, the limit is {limit}; "
                "ask for fewer (or raise MAX_NEW_TOKENS on the server)",
                param=field("max_new_tokens"),
            )
        if len(stop) > self.settings.max_stop_sequences:
            raise APIError(
                422,
                "validation",
                f"{field('stop')} has {len(stop)} sequences, the limit is {self.settings.max_stop_sequences}",
                param=field("stop"),
            )
        longest = max(stop, key=len, default="")
        if len(longest) > self.settings.max_stop_chars:
            raise APIError(
                422,
                "validation",
                f"{field('stop')} has a sequence of {len(longest)} characters, the limit is "
                f"{self.settings.max_stop_chars}; a stop sequence is a few characters such as 」",
                param=field("stop"),
            )
        top_n_limit = self.settings.max_top_n_tokens
        if top_n_tokens > top_n_limit:
            raise APIError(
                422,
                "validation",
                f"{field('top_n_tokens')} is {top_n_tokens}, the limit is {top_n_limit} (MAX_TOP_N_TOKENS); "
                "ask for fewer, or use POST /predict for a longer list of candidates",
                param=field("top_n_tokens"),
            )
        if truncate is not None and truncate > self.max_input_tokens:
            raise APIError(
                422,
                "validation",
                f"{field('truncate')} is {truncate}, it must be at most max_input_tokens = "
                f"{self.max_input_tokens} (GET /info)",
                param=field("truncate"),
            )

    def check_candidates(self, count: int, field: str) -> None:
        """OpenAI's n and TGI's best_of: how many candidates one request may ask for (MAX_BEST_OF)."""
        limit = self.settings.max_best_of
        if count > limit:
            raise APIError(
                422,
                "validation",
                f"{field} is {count}, the limit is {limit} (MAX_BEST_OF); ask for fewer",
                param=field,
            )
