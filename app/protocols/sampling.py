"""The sampling controls every generation protocol takes (TGI's parameters, OpenAI completions and chat),
declared once with their ranges, and their part of the mapping to `models.sampling.SamplingParams`.

Each protocol's model inherits these fields (and `TopK`, except OpenAI completions) and adds its own: TGI's
`do_sample`, `temperature` (> 0) and `typical_p`; OpenAI's `temperature` (0 = greedy) and `presence_penalty`
(app/protocols/openai.py). `null` means "off" for every one of them, as in TGI. A new control that all
protocols share is one field here, one entry in `shared_params`, and its step in models/sampling.py
(docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from app.protocols.strict import IgnoresUnknown


class TopK(IgnoresUnknown):
    """top_k, for TGI and chat (an extension there); OpenAI completions ignores it, as OpenAI does."""

    top_k: int | None = Field(None, ge=1, description="sample only among the k most probable words")


class SamplingFields(IgnoresUnknown):
    top_p: float | None = Field(
        None,
        gt=0,
        le=1,
        allow_inf_nan=False,
        description="nucleus sampling: the smallest set of words with this much mass (1 or null: off)",
    )
    min_p: float | None = Field(
        None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="when sampling, keep only the words at least this many times as probable as the most "
        "probable one (0 or null: off)",
    )
    repetition_penalty: float | None = Field(
        None,
        gt=0,
        allow_inf_nan=False,
        description="> 1 discourages words already in the prompt or output (1 or null: off)",
    )
    frequency_penalty: float | None = Field(
        None,
        ge=-2,
        le=2,
        allow_inf_nan=False,
        description="as in TGI: subtracts this times a word's share of the tokens so far (prompt and output) "
        "from its logit; > 0 discourages repeats, < 0 encourages them (0 or null: off)",
    )
    seed: int | None = Field(
        None, ge=0, le=2**64 - 1, description="same seed and parameters give the same text; drawn if absent"
    )

    def shared_params(self) -> dict[str, Any]:
        """These fields as SamplingParams' keyword arguments."""
        return {
            "top_k": getattr(self, "top_k", None),
            "top_p": self.top_p,
            "min_p": self.min_p,
            "repetition_penalty": self.repetition_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": self.seed,
        }
