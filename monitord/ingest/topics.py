"""MQTT topic filters: which topics a filter matches, shared by both ends of the wire.

Ingest, like the register codec: the embedded demo broker (simulators/broker.py)
routes by it and the MQTT driver's routes (drivers/mqtt_routes.py) resolve by
it, and the two may not import each other.
"""

from __future__ import annotations


def topic_matches(pattern: str, topic: str) -> bool:
    """MQTT matching: ``+`` one level, ``#`` the rest (including none); ``$`` topics only by name."""
    if topic.startswith("$") and not pattern.startswith("$"):
        return False
    p_parts, t_parts = pattern.split("/"), topic.split("/")
    for i, p in enumerate(p_parts):
        if p == "#":
            return True
        if i >= len(t_parts) or (p != "+" and p != t_parts[i]):
            return False
    return len(p_parts) == len(t_parts)
