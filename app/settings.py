"""Server configuration from environment variables (or a .env file), e.g. MODEL_DIR=artifacts/hongloumeng."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob of the service; each field is read from the upper-case environment variable of its name."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    model_dir: Path = Field(
        Path("artifacts/hongloumeng"), description="model directory written by `make train`"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_prompt_chars: int = Field(1000, ge=1, description="longest prompt accepted, in characters")
    max_new_tokens: int = Field(512, ge=1, description="upper limit for parameters.max_new_tokens")
    top_k_limit: int = Field(1000, ge=1, description="upper limit for top_k in /generate and /predict")
    max_stop_sequences: int = Field(8, ge=0, description="how many stop sequences one request may send")
    max_top_n_tokens: int = Field(
        5, ge=0, description="upper limit for top_n_tokens (TGI) and logprobs (OpenAI completions)"
    )
    max_stop_chars: int = Field(100, ge=1, description="longest stop sequence accepted, in characters")
    max_best_of: int = Field(
        4,
        ge=1,
        description="upper limit for best_of (TGI) and n (OpenAI): candidates one request decodes together",
    )
    continuous_cache: bool = Field(
        True,
        description="mix the model's continuous cache (its weights are in the model directory) into every "
        "next-token distribution: the prompt and the text generated so far make their words likelier; "
        "false serves the model without it",
    )
    chat_grounding: bool = Field(
        True,
        description="chat recalls the novel's exchanges for the turn (the model's memory.json) and ranks a "
        "pool of sampled candidates; false: one candidate, no recalled lines (the plain turn)",
    )
    max_batch_size: int = Field(
        64,
        ge=1,
        description="sequences one worker decodes together per tick (continuous batching; 1 turns it off)",
    )
    max_waiting: int = Field(
        256, ge=0, description="requests that may wait for a batch slot per worker; beyond it, 429 overloaded"
    )
    max_topn: int = Field(100, ge=1, description="upper limit for topn in /similar")
    max_similar_words: int = Field(
        20, ge=1, description="how many words /similar accepts in positive and in negative (each)"
    )
    max_word_chars: int = Field(50, ge=1, description="longest word accepted by /similar, in characters")
    max_body_bytes: int = Field(
        262_144, ge=1024, description="largest request body accepted, in bytes (413 beyond)"
    )
    body_read_timeout: float = Field(
        30.0, gt=0, description="seconds a request body may take to arrive in full before 408"
    )
    header_read_timeout: float = Field(
        10.0, gt=0, description="seconds a request's line and headers may take to arrive before 408"
    )
    drain_timeout: float = Field(
        30.0,
        ge=0,
        description="seconds a stopping worker (SIGTERM) gives running generations before ending them",
    )
    # Comma-separated in the environment (CORS_ORIGINS=http://a.example,http://b.example); empty = no CORS.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value
