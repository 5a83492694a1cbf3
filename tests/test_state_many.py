"""The state table takes a chunk of batches at once (``apply_many``, the MQTT driver's road) exactly as
it would take them one by one: same values, qualities, times, last good sample and said-state, whatever
the mix of good and bad batches and of assets sent twice."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from monitord.core.model import HealthChange, Quality, SampleBatch
from monitord.ingest.state import AssetSlot, StateTable

POINTS = ("a", "b", "c")
ASSETS = ("L1", "L2", "L3", "X9")  # X9: not in the table, left out either way


def table() -> StateTable:
    slots = [AssetSlot(a, "elevator", POINTS, 3.0) for a in ASSETS[:3]]
    state = StateTable(slots, started=0.0, columns={"elevator": POINTS})
    state.apply_health(HealthChange(0.0, "L2", False, "status topic", said=True))  # L2 said: offline
    return state


batch = st.builds(
    lambda asset, ts, values, bad: SampleBatch(
        float(ts),
        asset,
        POINTS,
        np.array(values, dtype=np.float64),
        np.array([int(Quality.COMM_ERROR) if b else int(Quality.GOOD) for b in bad], dtype=np.int8),
    ),
    st.sampled_from(ASSETS),
    st.integers(1, 100),
    st.lists(st.floats(-1e6, 1e6), min_size=3, max_size=3),
    st.lists(st.booleans(), min_size=3, max_size=3),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(batch, max_size=12))
def test_a_chunk_lands_as_the_batches_one_by_one(batches: list[SampleBatch]) -> None:
    one_by_one, together = table(), table()
    for b in batches:
        one_by_one.apply(b)
    together.apply_many(batches)
    want, got = one_by_one.tables["elevator"], together.tables["elevator"]
    for name in ("value", "quality", "ts", "last_good", "said"):
        w, g = getattr(want, name), getattr(got, name)
        assert np.array_equal(w, g, equal_nan=w.dtype.kind == "f"), name
