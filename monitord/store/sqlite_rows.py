"""One SQLite write round as rows, and as the bytes the spool keeps while the file cannot be written.

Store layer, used by ``sqlite.SqliteStore``: a round (samples, alert events,
ticket events, and audit rows the file refused at once) becomes ``Rows`` — one
frame row per read plan, one row per event — which the store inserts in one
transaction or, when the file refuses it, spools (a JSON head, then the frames'
blobs as stored) to insert later. A spooled round carries an id the store
records in the same transaction, so a round written and then tried again after
a crash lands once.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import struct
import uuid
from dataclasses import dataclass, field
from typing import Any

from monitord.alerting.tracker import AlertEvent
from monitord.core.model import Frame, SampleBatch
from monitord.tickets.desk import TicketEvent

#: a spool file's format tag (where InfluxDB's say their time precision)
KIND = "rows"
#: the first bytes of a spooled round (format 1)
MAGIC = b"monitord-rows-1\n"

FrameRow = tuple[tuple[str, ...], float, float, int, str, bytes, bytes, bytes]
AlertRow = tuple[float, str, str, str, str, float, str]
TicketRow = tuple[float, str, str, str]
AuditRow = tuple[float, str, str, str, str]


@dataclass
class Rows:
    """``frames``: (points, ts_first, ts_last, rows, assets, ts, vals, quality); the point set's id is
    the database's, looked up as the frame is inserted."""

    frames: list[FrameRow] = field(default_factory=list)
    alerts: list[AlertRow] = field(default_factory=list)
    tickets: list[TicketRow] = field(default_factory=list)
    audits: list[AuditRow] = field(default_factory=list)  # a person's actions the file refused at once
    round_id: str = ""  # set on a spooled round: inserted at most once

    @classmethod
    def of(
        cls,
        samples: list[SampleBatch],
        alerts: list[AlertEvent],
        tickets: list[TicketEvent],
        audits: list[AuditRow] | None = None,
    ) -> Rows:
        by_plan: dict[tuple[str, ...], list[SampleBatch]] = {}
        for b in samples:
            by_plan.setdefault(b.points, []).append(b)
        frames = [Frame.of(group) for group in by_plan.values()]
        return cls(
            [
                (
                    f.points,
                    float(f.ts[0]),
                    float(f.ts[-1]),
                    len(f),
                    "\n".join(f.assets),
                    f.ts.astype("<f8").tobytes(),
                    f.values.astype("<f8").tobytes(),
                    f.quality.tobytes(),
                )
                for f in frames
            ],
            [(a.ts, a.rule, a.asset, a.state, a.severity, a.since, a.summary) for a in alerts],
            [(t.ts, t.ticket, t.event, json.dumps(dataclasses.asdict(t))) for t in tickets],
            audits or [],
        )

    def __bool__(self) -> bool:
        return bool(self.frames or self.alerts or self.tickets or self.audits)

    @property
    def lines(self) -> int:
        """What a loss of this round would cost: sample points, plus one per event."""
        events = len(self.alerts) + len(self.tickets) + len(self.audits)
        return sum(f[3] * len(f[0]) for f in self.frames) + events

    def encode(self) -> bytes:
        """The spool's bytes, with a fresh round id: ``MAGIC``, the JSON head's length (8 bytes, little
        endian), the head, then every frame's ts, vals and quality blobs as they are stored (no
        base64, no compression: random floats hardly compress, and gzip cost more than the insert)."""
        blobs = [blob for f in self.frames for blob in f[5:]]
        head = {
            "id": uuid.uuid4().hex,
            "frames": [
                [list(points), first, last, n, assets] for points, first, last, n, assets, *_ in self.frames
            ],
            "blobs": [len(b) for b in blobs],
            "alerts": self.alerts,
            "tickets": self.tickets,
            "audits": self.audits,
        }
        text = json.dumps(head).encode()
        return b"".join([MAGIC, struct.pack("<Q", len(text)), text, *blobs])

    @classmethod
    def decode(cls, payload: bytes) -> Rows:
        """Raises ``ValueError`` on bytes that are not a whole round."""
        if not payload.startswith(MAGIC) or len(payload) < len(MAGIC) + 8:
            raise ValueError("not a spooled SQLite round")
        at = len(MAGIC) + 8
        (size,) = struct.unpack_from("<Q", payload, len(MAGIC))
        try:
            head: dict[str, Any] = json.loads(payload[at : at + size])
            at += size
            sizes = [int(n) for n in head["blobs"]]
            if at + sum(sizes) != len(payload) or len(sizes) != 3 * len(head["frames"]):
                raise ValueError("a spooled SQLite round cut short or padded")
            cuts = list(itertools.accumulate(sizes, initial=at))
            blobs = [payload[a:b] for a, b in itertools.pairwise(cuts)]
            frames: list[FrameRow] = [
                (tuple(points), float(first), float(last), int(n), str(assets), *_three(blobs, k))
                for k, (points, first, last, n, assets) in enumerate(head["frames"])
            ]
            alerts: list[AlertRow] = [
                (float(ts), str(r), str(a), str(st), str(sev), float(since), str(s))
                for ts, r, a, st, sev, since, s in head["alerts"]
            ]
            tickets: list[TicketRow] = [
                (float(ts), str(t), str(e), str(b)) for ts, t, e, b in head["tickets"]
            ]
            audits: list[AuditRow] = [
                (float(ts), str(who), str(what), str(target), str(body))
                for ts, who, what, target, body in head.get("audits", [])
            ]
            return cls(frames, alerts, tickets, audits, str(head["id"]))
        except (KeyError, TypeError, UnicodeDecodeError) as exc:
            raise ValueError(f"not a spooled SQLite round: {exc}") from exc


def _three(blobs: list[bytes], k: int) -> tuple[bytes, bytes, bytes]:
    """Frame ``k``'s ts, vals and quality blobs."""
    ts, vals, quality = blobs[3 * k : 3 * k + 3]
    return ts, vals, quality
