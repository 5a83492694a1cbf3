"""A single paho publisher sending one payload as fast as it can (QoS 0), as its own process so the
daemon under test does not share its interpreter: ``python -m tests.support.flood HOST PORT TOPIC
SECONDS PAYLOAD``. Prints how many messages it handed to the socket.
"""

from __future__ import annotations

import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


def flood(host: str, port: int, topic: str, seconds: float, payload: bytes) -> int:
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="")
    client.connect(host, port)
    client.loop_start()
    sent = 0
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            for _ in range(100):  # check the clock once per hundred
                client.publish(topic, payload, qos=0)
            sent += 100
    finally:
        client.disconnect()
        client.loop_stop()
    return sent


if __name__ == "__main__":
    host, port, topic, seconds, payload = sys.argv[1:6]
    print(flood(host, int(port), topic, float(seconds), payload.encode()))
