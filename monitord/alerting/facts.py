"""What one shard of a sharded site tells the others about an asset it owns, for topology inference.

Alerting layer, beside ``inference``: a ``Fact`` is the part of an asset's state
the rules of inference read (offline, last good sample, offline limit, earliest
firing alert), plus what the owner decided (root-cause rules firing, the active
ticket that explains what depends on the asset). ``Topology`` reads a remote
asset's fact where it would read the state table and tracker for a local one.
The daemon carries facts between shards (``daemon.shardfacts``); the codec here
refuses a payload that is not a fact rather than guess a value.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

QUIET_POLLS = 1.5  # an owner says an asset is quiet after this many polls without a good sample
FACT_DELAY = 1.0  # seconds for a changed fact to reach another shard: one evaluation and the broker


class BadFact(ValueError):
    """A payload that is not a fact (wrong JSON, a missing or mistyped field)."""


@dataclass(frozen=True)
class Fact:
    asset: str
    shard: int  # the owner
    offline: bool  # as the owner's state table judges it
    quiet: bool  # no good sample for 1.5 polls: may be on its way offline
    last_good: float  # receive time of the last good sample (owner's clock)
    stale_after: float  # the asset's offline limit, seconds
    poll: float  # its poll interval, seconds
    fault_since: float | None = None  # when the earliest alert firing on it began
    causes: tuple[str, ...] = ()  # root-cause rules firing on it
    ticket: str | None = None  # the owner's active ticket explaining what depends on it

    def seen(self) -> float:
        """Its last good sample as a peer's wait judges it: while it reports, 'just now' (infinity)."""
        return self.last_good if self.quiet or self.offline else math.inf

    def may_go_quiet(self, waited: float) -> bool:
        """Reporting, as far as the owner said, but a silence that began ``waited`` seconds ago would
        not have been said yet (quiet after ``QUIET_POLLS`` polls, plus the way here)."""
        return not (self.quiet or self.offline) and waited < QUIET_POLLS * self.poll + FACT_DELAY

    def decided(self) -> bool:
        """Whether the owner has said all it will: no cause pending there without a ticket yet."""
        return self.ticket is not None or not (self.offline or self.causes)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, payload: bytes) -> Fact:
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise BadFact(f"not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise BadFact("not a JSON object")
        try:
            fact = cls(
                asset=_typed(doc, "asset", str),
                shard=_typed(doc, "shard", int),
                offline=_typed(doc, "offline", bool),
                quiet=_typed(doc, "quiet", bool),
                last_good=float(_typed(doc, "last_good", (int, float))),
                stale_after=float(_typed(doc, "stale_after", (int, float))),
                poll=float(_typed(doc, "poll", (int, float))),
                fault_since=_optional_time(doc.get("fault_since")),
                causes=tuple(_typed({"c": c}, "c", str) for c in _typed(doc, "causes", list)),
                ticket=None if doc.get("ticket") is None else _typed(doc, "ticket", str),
            )
        except KeyError as exc:
            raise BadFact(f"missing field {exc}") from None
        if not all(math.isfinite(x) and x >= 0 for x in (fact.last_good, fact.stale_after, fact.poll)):
            raise BadFact("times must be finite and not negative")
        return fact


def _typed(doc: dict[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = doc[key]
    # bool is an int in Python: a flag is never a number here, nor a number a flag
    if isinstance(value, bool) != (kind is bool) or not isinstance(value, kind):
        raise BadFact(f"{key}: unexpected {type(value).__name__}")
    return value


def _optional_time(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadFact(f"fault_since: unexpected {value!r}")
    return float(value)
