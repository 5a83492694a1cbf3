"""Hostile JSON for fuzz tests (hypothesis): any leaf a parser may meet, nested under chosen keys."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

#: null, booleans, integers past 64 bits, NaN and infinities, text
json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)


def json_docs(keys: Sequence[str], max_leaves: int = 20) -> st.SearchStrategy[Any]:
    """Leaves, lists and objects whose keys are drawn from ``keys`` (the names a parser looks up)."""
    return st.recursive(
        json_leaf,
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(list(keys)), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )
