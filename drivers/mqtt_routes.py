"""MQTT routing and payloads: which asset a topic (and a gateway's device key) feeds, and the parse.

Pure logic under the MQTT client (``drivers/mqtt.py``), with no socket. Routes
are built once from the config (``monitord/config/mqtt.py``): topic filters may
hold ``+`` and ``#``; an exact topic is one dict lookup per message, and a topic
that only a wildcard filter matches is resolved once and remembered, so no
message is matched against every filter. Field paths are split once
(``values.floor``, ``data.values[0].temp``).

Three envelopes: a JSON document per asset, a plain number per point, and the
ThingsBoard IoT Gateway's ``{"Lift-7": [{"ts": <ms>, "values": {...}}, ...]}``
(many devices on one topic, routed by the device key). Availability: a status
topic's word (``online``/``offline``, Homie ``$state``) or the gateway's
``connect``/``disconnect`` messages.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import numpy as np
import orjson

from monitord.core.model import Quality
from monitord.ingest.topics import topic_matches

Path = tuple[str | int, ...]
_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
CACHE_MAX = 65_536  # topics remembered from wildcard matches; past this the memory starts over

# What a status topic's payload means (case-insensitive). Homie's init/sleeping/alert say nothing
# about reachability: the silence rule judges those, as for a device without a status topic.
ONLINE_WORDS = frozenset({"online", "ready", "connected", "true", "1", "up"})
OFFLINE_WORDS = frozenset({"offline", "lost", "disconnected", "false", "0", "down"})


def field_path(text: str) -> Path:
    """``data.values[0].temp`` → ``("data", "values", 0, "temp")``; raises ValueError on bad syntax."""
    steps: list[str | int] = []
    pos = 0
    for part in text.split("."):
        matches = list(_STEP.finditer(part))
        if not matches or matches[0].group(1) is None or "".join(m.group(0) for m in matches) != part:
            raise ValueError(f"bad field path {text!r} at {pos}: expected name[index]... between dots")
        steps.extend(m.group(1) if m.group(1) is not None else int(m.group(2)) for m in matches)
        pos += len(part) + 1
    return tuple(steps)


@dataclass(frozen=True)
class TopicRoute:
    """What one topic (or one gateway device key) carries: an asset's JSON document, or one plain point."""

    asset: str
    points: tuple[str, ...]
    fields: tuple[Path, ...]  # JSON path per point; empty for plain payloads
    ts_field: Path = ()
    seq_field: Path = ()
    changes: bool = False  # the device reports what changed: a message without a mapped field is no error

    @functools.cached_property
    def shape(self) -> tuple[tuple[Group, ...], tuple[Path, Extract] | None]:
        """The fields by holding object, and the getter of all at once where they share one: worked
        out once per route (a cache keyed by the field paths hashed them per message, ~1 µs)."""
        return _by_parent(self.fields), _one_object(self.fields)

    @functools.cached_property
    def field_names(self) -> tuple[str, ...]:
        """Each field path as the profile writes it (``values.floor``), for what is logged."""
        return tuple(".".join(map(str, path)) for path in self.fields)

    @functools.cached_property
    def stamp_getters(
        self,
    ) -> tuple[Callable[[dict[str, Any]], Any] | None, Callable[[dict[str, Any]], Any] | None]:
        """``lookup`` of the time and the sequence field in an entry (a dict), None where unmapped:
        a one-key path is one C call (``dict.get``), not ``lookup``'s loop per gateway entry."""
        return _entry_getter(self.ts_field), _entry_getter(self.seq_field)

    @functools.cached_property
    def entry_shape(self) -> EntryShape | None:
        """The gateway entry's common shape, for ``gateway_fast``: the fields all names in one object
        that is one key of the entry, the time one key, the sequence one key or unmapped. Shared by
        every route that maps them alike (so one identity test per device tells them apart)."""
        one = self.shape[1]
        if one is None or len(one[0]) != 1 or len(self.ts_field) != 1 or len(self.seq_field) > 1:
            return None
        return _entry_shape(self.points, self.fields, self.ts_field, self.seq_field)


class EntryShape(NamedTuple):
    """One ``itemgetter`` of an entry's (fields' object, time[, sequence]), and one of the fields."""

    entry: Callable[[Any], tuple[Any, ...]]
    fields: Extract
    width: int
    with_seq: bool


@functools.cache
def _entry_shape(points: tuple[str, ...], fields: tuple[Path, ...], ts: Path, seq: Path) -> EntryShape:
    one = _one_object(fields)
    assert one is not None
    return EntryShape(operator.itemgetter(one[0][0], *ts, *seq), one[1], len(points), bool(seq))


def _entry_getter(path: Path) -> Callable[[dict[str, Any]], Any] | None:
    if not path:
        return None
    if len(path) == 1:
        return operator.methodcaller("get", path[0])
    return functools.partial(lookup, path=path)


@dataclass(frozen=True)
class StatusRoute:
    """A topic that says whether a device is reachable: a word, or the gateway's connect/disconnect."""

    kind: Literal["word", "connect", "disconnect"]
    asset: str = ""  # a word's device; empty for the gateway's messages, which name theirs
    devices: dict[str, str] = field(default_factory=dict)  # gateway device key → asset


class Parsed(NamedTuple):
    values: np.ndarray
    quality: np.ndarray
    ts: float | None  # the payload's own time, if it says
    seq: int | None  # the payload's sequence number, if it carries a whole one
    any_good: bool = True  # False: not one mapped field held a number (a mapping mistake, often)
    complete: bool = True  # False: some mapped field is not in the message (its quality is ABSENT)


#: A parse's quality for a mapped field the message does not carry: not a reading, so the point is
#: left as it was (the driver leaves it out of the batch); never stored, never in a state table.
ABSENT = -1


def lookup(doc: Any, path: Path) -> Any:
    """The value at ``path``, or None where the document has none (per message: kept lean)."""
    for key in path:
        if type(doc) is dict:
            doc = doc.get(key)  # an index into an object: None (JSON keys are strings)
        elif type(doc) is list and type(key) is int and key < len(doc):
            doc = doc[key]
        else:
            return None
    return doc


def parse_payload(route: TopicRoute, payload: bytes) -> Parsed:
    """Values, qualities and (if the payload says) the sample time and sequence; raises ValueError."""
    if not route.fields:
        values = np.full(1, math.nan)
        quality = np.full(1, int(Quality.DECODE_ERROR), dtype=np.int8)
        values[0] = float(payload.decode("utf-8").strip())  # ValueError on garbage
        if math.isfinite(values[0]):
            quality[0] = int(Quality.GOOD)
        return Parsed(values, quality, None, None)
    doc = loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("JSON payload is not an object")
    return parse_document(route, doc)


def loads(payload: bytes) -> Any:
    """A JSON document: orjson (~1 µs for a lift's, against ~6 µs), and what orjson refuses but the
    standard parser reads (``NaN``, ``1e999``, UTF-16) the way it always was read; raises ValueError."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return json.loads(payload)


_GOOD, _DECODE_ERROR = int(Quality.GOOD), int(Quality.DECODE_ERROR)  # enum access is slow per field
_NUMBER = (int, float, bool)
_NUMBERS = frozenset(_NUMBER)
Extract = Callable[[Any], tuple[Any, ...]]


Group = tuple[Path, tuple[tuple[int, str | int], ...]]


def _by_parent(fields: tuple[Path, ...]) -> tuple[Group, ...]:
    """A route's field paths grouped by the object that holds them: ``values.a``, ``values.b``, ...
    resolve ``values`` once per message, not once per field."""
    groups: dict[Path, list[tuple[int, str | int]]] = {}
    for i, path in enumerate(fields):
        groups.setdefault(path[:-1], []).append((i, path[-1]))
    return tuple((parent, tuple(items)) for parent, items in groups.items())


def _one_object(fields: tuple[Path, ...]) -> tuple[Path, Extract] | None:
    """For a route whose fields are all names in one object, in order (``values.a``, ``values.b``,
    ... — most devices), that object's path and a getter of all its fields at once; else None."""
    groups = _by_parent(fields)
    if len(groups) != 1:
        return None
    parent, items = groups[0]
    keys = [key for _i, key in items if type(key) is str]
    if len(keys) != len(items):
        return None
    if len(keys) == 1:  # itemgetter of one key gives the value, not a tuple
        return parent, lambda holder: (holder[keys[0]],)
    return parent, operator.itemgetter(*keys)


def parse_document(route: TopicRoute, doc: dict[str, Any]) -> Parsed:
    """One decoded JSON object (a whole payload, or one entry of a gateway's list).

    Per message, so kept lean. Where every mapped field is present, a number, in one object, all
    are fetched by one getter and made one array (``_one_object``: ~4 µs for a lift, against ~9 µs
    field by field); anything else walks field by field (``walk_fields``)."""
    one = route.shape[1]
    if one is not None:
        parent_path, fetch = one
        parent = lookup(doc, parent_path) if parent_path else doc
        got: tuple[Any, ...] = ()
        if type(parent) is dict:
            try:  # not contextlib.suppress: its object costs ~0.3 µs a message
                got = fetch(parent)
            except KeyError:  # a field missing: walked field by field below
                got = ()
        if got and set(map(type, got)) <= _NUMBERS:
            values = np.array(got, dtype=np.float64)  # OverflowError for an int past float's range
            try:
                finite_sum = math.isfinite(sum(got))  # all finite, without two numpy calls per message
            except OverflowError:  # ints each within float's range, their sum not
                finite_sum = False
            if finite_sum:
                quality = np.zeros(len(values), dtype=np.int8)  # Quality.GOOD is 0
                return Parsed(values, quality, *_ts_seq(route, doc), True)
            finite = np.isfinite(values)  # an inf or NaN (or a sum past float's range)
            values[~finite] = math.nan
            quality = np.where(finite, _GOOD, _DECODE_ERROR).astype(np.int8)
            return Parsed(values, quality, *_ts_seq(route, doc), bool(finite.any()))
    return walk_fields(route, doc)


def walk_fields(route: TopicRoute, doc: dict[str, Any]) -> Parsed:
    """``parse_document`` field by field: each holding object is resolved once (``_by_parent``),
    values are gathered in lists and made arrays once (item assignment into an array costs more).

    A field the message does not carry (its key, its index or its holding object missing) is
    ``ABSENT``: a device that reports what changed leaves the rest out, and even one that sends
    everything has said nothing new of it. A field that is there but not a finite number (null, a
    string, NaN) is a ``decode_error``: the device said something that is not a reading."""
    n = len(route.fields)
    values = [math.nan] * n
    quality = [ABSENT] * n
    for parent_path, items in route.shape[0]:
        parent: Any = lookup(doc, parent_path) if parent_path else doc
        kind = type(parent)
        if kind is not dict and kind is not list:
            if parent is not None:  # there, but holds no fields: the device's shape is not the profile's
                for i, _key in items:
                    quality[i] = _DECODE_ERROR
            continue
        for i, key in items:
            v: Any
            if kind is dict:
                if key not in parent:
                    continue
                v = parent[key]
            elif type(key) is int:
                if key >= len(parent):
                    continue
                v = parent[key]
            else:  # a name looked up in a list
                quality[i] = _DECODE_ERROR
                continue
            if type(v) in _NUMBER:
                f = float(v)
                if math.isfinite(f):
                    values[i] = f
                    quality[i] = _GOOD
                    continue
            quality[i] = _DECODE_ERROR
    ts, seq = _ts_seq(route, doc)
    return Parsed(
        np.array(values, dtype=np.float64),
        np.array(quality, dtype=np.int8),
        ts,
        seq,
        _GOOD in quality,
        ABSENT not in quality,
    )


def _ts_seq(route: TopicRoute, doc: dict[str, Any]) -> tuple[float | None, int | None]:
    """The document's own time (milliseconds or seconds) and sequence number, where the route maps them."""
    ts = _time(lookup(doc, route.ts_field)) if route.ts_field else None
    seq = _whole(lookup(doc, route.seq_field)) if route.seq_field else None
    return ts, seq


def _time(raw: Any) -> float | None:
    """A payload's time field in seconds (it may say milliseconds), or None if it is not a number."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw) / 1000.0 if raw > 1e11 else float(raw)
    return None


def _whole(raw: Any) -> int | None:
    """A sequence number: a whole number, or None."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    return None


class Block(NamedTuple):
    """A gateway message's entries as one matrix: row i is ``routes[i]``'s, every value good."""

    routes: list[TopicRoute]
    values: np.ndarray
    ts: list[float | None]
    seqs: list[int | None]


def gateway_block(devices: dict[str, TopicRoute], doc: Any) -> Block | None:
    """The common gateway message at once: every device mapped, every entry an object holding all its
    route's fields as numbers in one object (``TopicRoute.shape``), all routes of one point list, all
    values finite. None for anything else, which ``gateway_entries`` then reads entry by entry (it
    says what is wrong with which); so what this takes, that would have taken the same way."""
    if type(doc) is not dict:
        return None
    routes: list[TopicRoute] = []
    rows: list[tuple[Any, ...]] = []
    stamps: list[float | None] = []
    seqs: list[int | None] = []
    points = None
    for key, entries in doc.items():
        route = devices.get(key)
        if route is None:
            return None
        one = route.shape[1]
        if one is None or (points is not None and route.points != points):
            return None
        points = route.points
        parent_path, fetch = one
        ts_of, seq_of = route.stamp_getters
        for entry in entries if type(entries) is list else (entries,):
            if type(entry) is not dict:
                return None
            holder = entry.get(parent_path[0]) if len(parent_path) == 1 else lookup(entry, parent_path)
            if type(holder) is not dict:
                return None
            try:
                rows.append(fetch(holder))
            except KeyError:
                return None
            routes.append(route)
            # _time's and _whole's common case inline (milliseconds, a whole int): 12 % of this function
            t = ts_of(entry) if ts_of is not None else None
            stamps.append(t / 1000.0 if type(t) is int and t > 1e11 else None if t is None else _time(t))
            n = seq_of(entry) if seq_of is not None else None
            seqs.append(n if type(n) is int or n is None else _whole(n))
    try:
        # Numbers only (a string, None, a list or an object raises TypeError: never "1.5" made 1.5 by
        # numpy), all finite (an inf or NaN anywhere makes the sum so; so may a sum past float's range,
        # which the entry-by-entry read then takes apart).
        if not rows or not math.isfinite(sum(itertools.chain.from_iterable(rows))):
            return None
        values = np.array(rows, dtype=np.float64)
    except (TypeError, OverflowError):
        return None
    if not all(t is None or math.isfinite(t) for t in stamps):
        return None
    return Block(routes, values, stamps, seqs)


class FlatBlock(NamedTuple):
    """``Block`` with its values not yet an array: row after row in one list (``gateway_fast``)."""

    routes: list[TopicRoute]
    values: list[Any]  # numbers, len(routes) × width
    width: int
    ts: list[float]
    seqs: list[int | None]


_INT64 = 2**63
_DICTS, _INTS = frozenset({dict}), frozenset({int})


def gateway_fast(devices: dict[str, TopicRoute], doc: Any) -> FlatBlock | None:
    """``gateway_block`` for the common message (``doc`` as ``loads`` gives it), with no Python work
    per entry but C calls over all of them: every device's route of one ``entry_shape``, every entry
    an object holding its fields' object, its time in milliseconds (an int past 1e11) and its
    sequence number an int of 64 bits if mapped; all values finite numbers. None for anything else,
    which ``gateway_block`` then reads: what this takes it gives exactly as that would
    (``tests/test_mqtt_gateway_fast.py``)."""
    if type(doc) is not dict or not doc:
        return None
    routes: list[TopicRoute] = []
    got: list[tuple[Any, ...]] = []
    shape: EntryShape | None = None
    try:
        for key, entries in doc.items():
            route = devices[key]
            same = route.entry_shape
            if same is None or (same is not shape and shape is not None):
                return None
            shape = same
            if type(entries) is not list:
                entries = (entries,)
            got += map(same.entry, entries)  # TypeError for an entry that is no object
            routes += [route] * len(entries)
        if shape is None or not got:
            return None
        columns = tuple(zip(*got, strict=True))
        if set(map(type, columns[0])) != _DICTS:
            return None
        values = list(itertools.chain.from_iterable(map(shape.fields, columns[0])))
        # Numbers only (a string, None, a list or an object raises TypeError), all finite (an inf or
        # NaN makes the sum so, as may a sum past float's range: gateway_block's own test), and no
        # int past float's range, which a sum of ints can hide (10**400 - 10**400) but fsum, which
        # makes each a float, cannot (OverflowError): so the array made of them later (one per chunk,
        # not per message) cannot fail. Both sums together cost less than one of absolute values.
        if not math.isfinite(sum(values)) or not math.isfinite(math.fsum(values)):
            return None
        stamps = columns[1]
        if set(map(type, stamps)) != _INTS or min(stamps) <= 1e11:  # seconds, floats: gateway_block
            return None
        ts = [t / 1000.0 for t in stamps]  # OverflowError past float's range, as gateway_block's
        seqs: list[int | None]
        if shape.with_seq:
            numbers = columns[2]
            if set(map(type, numbers)) != _INTS or min(numbers) < -_INT64 or max(numbers) >= _INT64:
                return None  # past 64 bits the message travels raw: gateway_block, then the daemon
            seqs = list(numbers)
        else:
            seqs = [None] * len(routes)
    except (KeyError, TypeError, OverflowError):
        return None
    return FlatBlock(routes, values, shape.width, ts, seqs)


def gateway_entries(
    devices: dict[str, TopicRoute], payload: bytes
) -> Iterator[tuple[str, TopicRoute | None, Parsed | Exception]]:
    """Each (device key, its route or None if unmapped, its parse or why not) of a gateway message.

    ``{"Lift-7": [{"ts": 1700000000000, "values": {...}}, ...], "Lift-8": ...}``: one parse per
    entry. A device's value may also be a single object. Raises ValueError if the payload is not an
    object at all; a bad entry costs only itself.
    """
    doc = loads(payload)
    if not isinstance(doc, dict):
        raise ValueError("gateway payload is not an object of devices")
    for key, entries in doc.items():
        route = devices.get(key)
        if route is None:
            yield key, None, ValueError(f"device {key!r} is mapped to no asset")
            continue
        for entry in entries if isinstance(entries, list) else [entries]:
            if not isinstance(entry, dict):
                yield key, route, ValueError(f"device {key!r}: an entry is not an object")
                continue
            try:
                yield key, route, parse_document(route, entry)
            except (ValueError, TypeError, OverflowError) as exc:
                yield key, route, exc


def status_word(payload: bytes) -> bool | None:
    """True (online), False (offline) or None (says nothing about reachability); raises ValueError.

    A word (``online``, Tasmota's ``Online``, Homie's ``ready``/``lost``), or a JSON object that
    holds one under ``state`` or ``status`` (Zigbee2MQTT's availability: ``{"state": "online"}``).
    """
    text = payload.decode("utf-8").strip()
    if text.startswith("{"):
        doc = json.loads(text)
        text = str(doc.get("state", doc.get("status", "")))
    word = text.strip('"').lower()
    if word in ONLINE_WORDS:
        return True
    if word in OFFLINE_WORDS:
        return False
    if word in ("init", "sleeping", "alert", ""):
        return None
    raise ValueError(f"unknown status {word[:40]!r} (expected online/offline or a Homie $state)")


def gateway_device(payload: bytes) -> str:
    """The device a gateway's connect/disconnect message names; raises ValueError."""
    doc = json.loads(payload)
    name = doc.get("device") if isinstance(doc, dict) else None
    if not isinstance(name, str):
        raise ValueError('expected {"device": "<name>"}')
    return name


def has_wildcard(topic: str) -> bool:
    return "+" in topic or "#" in topic


def overlap(a: str, b: str) -> bool:
    """Whether some topic matches both filters (two assets claiming it would be ambiguous)."""
    x, y = a.split("/"), b.split("/")
    for i in range(max(len(x), len(y))):
        p = x[i] if i < len(x) else None
        q = y[i] if i < len(y) else None
        if p == "#" or q == "#":
            return True
        if p is None or q is None:
            return False
        if p != q and "+" not in (p, q):
            return False
    return True


class Router:
    """Topic → what it carries, for three kinds of subscription; wildcard matches are remembered.

    ``assets``: filter → one asset's route. ``gateways``: filter → device key → route.
    ``status``: filter → status route.
    """

    def __init__(
        self,
        assets: dict[str, TopicRoute] | None = None,
        gateways: dict[str, dict[str, TopicRoute]] | None = None,
        status: dict[str, StatusRoute] | None = None,
    ) -> None:
        self.assets, self.gateways, self.status = assets or {}, gateways or {}, status or {}
        self._exact: dict[str, TopicRoute | dict[str, TopicRoute] | StatusRoute] = {}
        self._wild: list[tuple[str, TopicRoute | dict[str, TopicRoute] | StatusRoute]] = []
        for table in (self.status, self.gateways, self.assets):
            for topic, route in table.items():
                if has_wildcard(topic):
                    self._wild.append((topic, route))
                else:
                    self._exact.setdefault(topic, route)
        self._seen: dict[str, TopicRoute | dict[str, TopicRoute] | StatusRoute | None] = {}

    def __bool__(self) -> bool:
        return bool(self.assets or self.gateways)

    @property
    def filters(self) -> list[str]:
        """Every filter to subscribe to."""
        return [*self.status, *self.gateways, *self.assets]

    def routes(self) -> Iterator[TopicRoute]:
        """Every asset route (each gateway device's too)."""
        yield from self.assets.values()
        for devices in self.gateways.values():
            yield from devices.values()

    def resolve(self, topic: str) -> TopicRoute | dict[str, TopicRoute] | StatusRoute | None:
        route = self._exact.get(topic)
        if route is not None:
            return route
        try:
            return self._seen[topic]
        except KeyError:
            pass
        found = next((r for f, r in self._wild if topic_matches(f, topic)), None)
        if len(self._seen) >= CACHE_MAX:
            self._seen.clear()
        self._seen[topic] = found
        return found
