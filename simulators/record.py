"""Recorded data without sockets: step the models and keep what the devices would report.

For replay tests and benchmarks: a site's models stepped on a simulated clock
with a scenario's faults, each asset sampled every ``step`` seconds into
``SampleBatch`` objects, the way the drivers would have delivered them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from monitord.config.site import SiteConfig
from monitord.core.model import Frame, Quality, SampleBatch

from .models import Equipment, site_models
from .scenario import Scenario


def record(
    config: SiteConfig,
    start: float,
    seconds: float,
    step: float = 1.0,
    scenario: Scenario | None = None,
    models: dict[str, Equipment] | None = None,
) -> Iterator[SampleBatch]:
    models = models or site_models(config.domain_assets().values())
    points = {a.id: tuple(config.profile(a.profile).points) for a in config.assets}
    timeline = sorted(scenario.timeline, key=lambda s: s.at) if scenario else []
    good = {a: np.zeros(len(p), dtype=np.int8) for a, p in points.items()}
    failed = {a: np.full(len(p), int(Quality.COMM_ERROR), dtype=np.int8) for a, p in points.items()}
    t = 0.0
    while t < seconds:
        while timeline and timeline[0].at <= t:
            s = timeline.pop(0)
            if s.fault:
                models[s.asset].faults.add(s.fault)
            elif s.clear:
                models[s.asset].faults.discard(s.clear)
        for asset, model in models.items():
            model.step(start + t, step)
            names = points[asset]
            if model.faults & {"offline", "silent"}:
                yield SampleBatch(start + t, asset, names, np.full(len(names), np.nan), failed[asset])
                continue
            values = np.array([model.values.get(n, 0.0) for n in names], dtype=np.float64)
            yield SampleBatch(start + t, asset, names, values, good[asset])
        t += step


def record_frames(
    config: SiteConfig, start: float, seconds: float, step: float = 1.0, scenario: Scenario | None = None
) -> Iterator[Frame]:
    """The same, one frame per read plan and step: what the store would hold."""
    current: dict[tuple[str, ...], list[SampleBatch]] = {}
    now = start
    for b in record(config, start, seconds, step, scenario):
        if b.ts != now:
            yield from (Frame.of(group) for group in current.values())
            current, now = {}, b.ts
        current.setdefault(b.points, []).append(b)
    yield from (Frame.of(group) for group in current.values())
