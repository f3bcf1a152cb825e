"""The strict request models every protocol builds on.

Values are strict: a string where a number belongs is an error, not silently converted, and NaN/Infinity are
refused (each float field says `allow_inf_nan=False`). Fields a model does not know are ignored and logged, as
TGI does (serde's default) and OpenAI clients expect, since clients send fields of newer API versions.
"""

from __future__ import annotations

import logging
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, model_validator

logger = logging.getLogger("app")


def unknown_fields(model: type[BaseModel], data: Any) -> list[str]:
    """Keys of a JSON object that `model` does not declare (they are ignored, as TGI ignores them)."""
    if not isinstance(data, dict):
        return []
    known = set(model.model_fields)
    return [key for key in data if key not in known]


def _is_int_field(annotation: Any) -> bool:
    return annotation is int or (get_origin(annotation) in (Union, UnionType) and int in get_args(annotation))


class JsonIntegers(BaseModel):
    """Strict models, except that an integer field takes 18.0 as 18: JSON Schema's "integer" is any number
    with a zero fractional part, so the schema promises 18.0 is accepted (Schemathesis sent it). Strings
    and booleans stay refused. Done before validation so the fields keep plain `int` types, whose bounds
    the JSON schema prints as integer minimum/maximum."""

    @model_validator(mode="before")
    @classmethod
    def _integral_floats(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        return {
            key: int(value)
            if isinstance(value, float)
            and value.is_integer()
            and key in fields
            and _is_int_field(fields[key].annotation)
            else value
            for key, value in data.items()
        }


class IgnoresUnknown(JsonIntegers):
    """Ignores undeclared fields like TGI (serde's default) and logs their names: a typo shows in the log."""

    model_config = ConfigDict(extra="ignore", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _log_unknown(cls, data: Any) -> Any:
        unknown = unknown_fields(cls, data)
        if unknown:
            logger.info("%s: ignoring unknown fields %s", cls.__name__, ", ".join(map(repr, unknown[:10])))
        return data
