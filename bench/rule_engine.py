"""Benchmark: every built-in rule pack over 10,000 assets, evaluated once per second.

Fills a state table with 10,000 assets (elevators, pumps, AHUs, chillers,
meters) from the simulators' models, then times ``RuleEngine.evaluate`` over
simulated seconds with fresh samples each second. Baseline in the same run: a
plain-Python per-asset loop evaluating the same expressions (those without
windowed functions) with ``eval`` over a dict per asset. Prints medians, the
share of one core needed for one evaluation per second, and the memory the
windowed functions' history takes.
"""

from __future__ import annotations

import contextlib
import math
import statistics
import time

import numpy as np

from monitord.config.site import CONFIG_DIR
from monitord.config.yamlio import load_yaml
from monitord.core.assets import Asset
from monitord.core.model import SampleBatch
from monitord.ingest.profiles import DeviceProfile
from monitord.ingest.state import AssetSlot, StateTable
from monitord.rules import PACKS_DIR
from monitord.rules.engine import RuleEngine
from monitord.rules.spec import RuleSpec
from monitord.simulators.models import MODELS

MIX = [
    ("elevator", "elevator-gbt24476", 3000),
    ("pump", "pump-set", 2500),
    ("ahu", "ahu", 1500),
    ("chiller", "chiller", 500),
    ("power_meter", "eastron-sdm630", 2000),
    ("power_meter", "fire-monitor", 500),
]
SECONDS = 20


def profiles() -> dict[str, DeviceProfile]:
    return {
        p: DeviceProfile.model_validate(load_yaml(CONFIG_DIR / "profiles" / f"{p}.yaml")) for _t, p, _n in MIX
    }


def main() -> None:
    specs = [RuleSpec.model_validate(r) for pack in sorted(PACKS_DIR.glob("*.yaml")) for r in load_yaml(pack)]
    profs = profiles()
    slots, facts, base = [], [], {}
    columns: dict[str, tuple[str, ...]] = {}
    for t, p, n in MIX:
        model = MODELS[t](f"{p}-model")
        model.step(1_795_000_000.0, 1.0)
        points = tuple(profs[p].points)
        columns[t] = columns.get(t, ()) + points
        base[p] = np.array([float(model.values.get(x, 0.0)) for x in points])
        for i in range(n):
            slots.append(AssetSlot(f"{p}-{i}", p, points, 30.0))
            facts.append(Asset(f"{p}-{i}", t, params=dict(profs[p].params)))
    slots = [
        AssetSlot(s.id, next(t for t, p, _ in MIX if p == s.type), s.points, s.stale_after) for s in slots
    ]
    profile_of = {f.id: next(p for _t, p, _n in MIX if f.id.startswith(p + "-")) for f in facts}
    now = 1_795_000_000.0
    state = StateTable(slots, started=now, columns=columns)
    engine = RuleEngine(specs, state, facts)
    rng = np.random.default_rng(1)
    quality = {p: np.zeros(len(b), dtype=np.int8) for p, b in base.items()}
    evaluations = sum(len(r.assets) for r in engine.rules)
    times = []
    for _ in range(SECONDS):
        now += 1.0
        for s in slots:  # fresh samples every second for every asset
            p = profile_of[s.id]
            b = base[p]
            state.apply(SampleBatch(now, s.id, s.points, b + rng.normal(0, 0.001, len(b)) * b, quality[p]))
        t0 = time.process_time()
        engine.evaluate(now)
        times.append(time.process_time() - t0)
    per_eval = statistics.median(times)
    history = sum(r.history_bytes for r in engine.rules)

    # Baseline: the same expressions, asset by asset, in plain Python.
    plain = [
        r
        for r in engine.rules
        if not (r.when.windows or (r.clear and r.clear.windows))
        and "offline" not in r.spec.when
        and "stale_points" not in r.spec.when
    ]
    codes = [(r, compile(r.spec.when.replace("param.", "param_"), r.spec.id, "eval")) for r in plain]
    env_base = {
        "abs": abs,
        "min": min,
        "max": max,
        "between": lambda x, lo, hi: lo <= x <= hi,
        "imbalance": lambda *v: max(abs(x - sum(v) / len(v)) for x in v) / (sum(v) / len(v)),
        "in_hours": lambda _h: False,
        "__builtins__": {},
    }
    rows = {}
    for r, _c in codes:
        t = r.table
        rows[r.key] = [{c: float(t.value[row, j]) for j, c in enumerate(t.columns)} for row in r.rows]
    base_times = []
    for _ in range(3):
        t0 = time.process_time()
        for r, code in codes:
            params = {f"param_{k}": v for k, v in r.spec.params.items()}
            for values in rows[r.key]:
                env = {**env_base, **params, **values}
                with contextlib.suppress(ZeroDivisionError, TypeError):
                    eval(code, env)
        base_times.append(time.process_time() - t0)
    base_eval = statistics.median(base_times)
    base_n = sum(len(r.assets) for r, _ in codes)
    ours_subset = sum(len(r.assets) for r in plain)

    print(
        f"== {len(slots):,} assets, {len(specs)} rules in {len(list(PACKS_DIR.glob('*.yaml')))} packs, "
        f"{len(engine.rules)} rule x type bindings =="
    )
    print(f"one evaluation of every rule      {per_eval * 1000:8.1f} ms CPU (median of {SECONDS})")
    print(f"  asset-rule evaluations          {evaluations / per_eval:12,.0f} per CPU-second")
    print(f"  share of one core at 1 Hz       {per_eval * 100:8.1f} %")
    print(
        f"plain-Python per-asset loop       {base_eval * 1000:8.1f} ms CPU for {base_n:,} asset-rule pairs "
        f"({len(codes)} rules without windows)"
    )
    print(f"  asset-rule evaluations          {base_n / base_eval:12,.0f} per CPU-second")
    print(
        f"  monitord / plain Python         {(evaluations / per_eval) / (base_n / base_eval):8.1f}x "
        f"(per evaluation, all rules vs the {ours_subset:,} pairs the baseline can do)"
    )
    print(f"history buffers (windowed funcs)  {history / 2**20:8.1f} MiB")
    assert not math.isnan(per_eval)


if __name__ == "__main__":
    main()
