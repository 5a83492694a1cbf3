"""Text columns for the terminal that stay aligned in Chinese: a CJK character takes two columns.

Tools layer, shared by ``report``'s tables (``kpi``) and the desk commands' lists (``cli.desk``).
"""

from __future__ import annotations

import unicodedata


def width(text: str) -> int:
    """Terminal columns ``text`` takes (wide and full-width characters count two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def left(text: str, columns: int) -> str:
    """``text`` padded on the right to ``columns`` (never cut)."""
    return text + " " * max(0, columns - width(text))


def right(text: str, columns: int) -> str:
    """``text`` right-aligned in ``columns``."""
    return " " * max(0, columns - width(text)) + text
