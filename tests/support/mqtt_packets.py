"""MQTT 3.1.1 PUBLISH packets as a broker sends them: for the tests and benchmarks that feed paho's
read (``drivers/mqtt_client.py``) bytes straight, without a broker."""

from __future__ import annotations


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length integer: seven bits a byte, the high bit says another follows."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (128 if n else 0))
        if not n:
            return bytes(out)


def publish_packet(
    topic: bytes, payload: bytes, qos: int = 0, mid: int = 1, retain: bool = False, dup: bool = False
) -> bytes:
    """One PUBLISH: fixed header, topic, the message id if QoS > 0, the payload."""
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + payload
    return bytes([0x30 | dup << 3 | qos << 1 | retain]) + remaining_length(len(body)) + body
