"""The base of every validated value type: strict pydantic models and readable range errors.

Config files, device profiles and the stages' own value types (SLA terms,
matchers, roster entries) all derive from ``Strict``, so an unknown key is an
error everywhere and every value is immutable once loaded.
"""

from __future__ import annotations

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def in_range(lo: int, hi: int) -> AfterValidator:
    """Bounds whose error reads ``must be 1..65535, got 70000``."""

    def check(v: int) -> int:
        if not lo <= v <= hi:
            raise PydanticCustomError("range", "must be {lo}..{hi}, got {v}", {"lo": lo, "hi": hi, "v": v})
        return v

    return AfterValidator(check)
