"""The worker's read of PUBLISH packets straight from the buffer (``BufferedClient.on_incoming``)
against paho's own read of the same bytes (``on_message``): the same messages in the same order
(topic, payload, QoS, message id) and the same bytes sent back to the broker, for generated streams
of QoS 0, 1 and 2 messages, retained and duplicate flags, long topics and payloads (remaining
lengths of one to three bytes), topics that are not UTF-8, other packets between them, split across
reads anywhere; and ``ack_all`` against ``ack`` one by one.
"""

from __future__ import annotations

from typing import Any

import paho.mqtt.client as paho
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from monitord.drivers.mqtt_client import BufferedClient, BufferedSocket
from tests.support.mqtt_packets import publish_packet

Message = tuple[str, bytes, int, int]


class Wire:
    """A non-blocking socket's stand-in: what has arrived is read in pieces up to the size asked,
    then ``BlockingIOError``; what paho sends is kept."""

    def __init__(self) -> None:
        self.arrived = b""
        self.sent = b""

    def recv(self, size: int) -> bytes:
        if not self.arrived:
            raise BlockingIOError
        data, self.arrived = self.arrived[:size], self.arrived[size:]
        return data

    def send(self, data: bytes) -> int:
        self.sent += bytes(data)
        return len(data)

    def close(self) -> None:
        """paho closes its socket when the connection is lost, and when the client is collected."""


def client(fast: bool, manual_ack: bool) -> tuple[BufferedClient, Wire, list[Message]]:
    """A client as connected, over a ``Wire``; what it hands over is listed."""
    got: list[Message] = []
    c = BufferedClient(CallbackAPIVersion.VERSION2, client_id="t")
    c.suppress_exceptions = True  # a topic that is not UTF-8 raises when read: logged, as paho does
    c.manual_ack_set(manual_ack)

    def on_message(_c: Any, _u: Any, msg: paho.MQTTMessage) -> None:
        got.append((msg.topic, bytes(msg.payload), msg.qos, msg.mid))

    c.on_message = on_message
    if fast:
        c.on_incoming = lambda topic, payload, qos, mid: got.append((topic, payload, qos, mid))
    wire = Wire()
    c._sock = BufferedSocket(wire)
    return c, wire, got


def read(stream: bytes, cuts: list[int], fast: bool, manual_ack: bool) -> tuple[list[Message], bytes]:
    """``stream`` arriving in pieces at ``cuts``, each piece followed by ``loop_read`` until read."""
    c, wire, got = client(fast, manual_ack)
    at = 0
    for cut in [*sorted(cuts), len(stream)]:
        wire.arrived += stream[at:cut]
        at = max(at, cut)
        c.loop_read()
        while wire.arrived:  # paho's select would see the rest and read again
            c.loop_read()
    return got, wire.sent


topics = st.one_of(
    st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=300).map(
        str.encode
    ),
    st.binary(min_size=1, max_size=40),  # often not UTF-8
)
payloads = st.one_of(
    st.binary(max_size=200),
    st.integers(0, 20_000).map(lambda n: bytes(n % 251 for n in range(n))),  # 2- and 3-byte lengths
)
publishes = st.builds(
    publish_packet,
    topics,
    payloads,
    qos=st.sampled_from([0, 1, 1, 2]),
    mid=st.integers(0, 65_535),
    retain=st.booleans(),
    dup=st.booleans(),
)
others = st.sampled_from(
    [
        b"\xd0\x00",  # PINGRESP
        b"\x40\x02\x00\x07",  # PUBACK of message 7 (none in flight: paho ignores it)
        b"\x90\x03\x00\x01\x00",  # SUBACK
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(publishes, publishes, others), min_size=1, max_size=12)
    .map(b"".join)
    .flatmap(lambda stream: st.tuples(st.just(stream), st.lists(st.integers(0, len(stream)), max_size=6))),
    st.booleans(),
)
def test_the_fast_read_hands_over_what_pahos_read_does(
    stream_cuts: tuple[bytes, list[int]], manual: bool
) -> None:
    stream, cuts = stream_cuts
    assert read(stream, cuts, fast=True, manual_ack=manual) == read(
        stream, cuts, fast=False, manual_ack=manual
    )


@pytest.mark.parametrize("length", [8, 126, 127, 128, 129, 16_383, 16_384, 16_385, 70_000])
@pytest.mark.parametrize("qos", [0, 1])
def test_remaining_lengths_at_the_edges_of_their_bytes(length: int, qos: int) -> None:
    """A packet whose remaining length is ``length`` (one to three bytes of it), whole in one read,
    and split after each of its first bytes."""
    topic = b"t/x"
    packet = publish_packet(topic, bytes(length - 2 - len(topic) - 2 * qos), qos, mid=258)
    assert len(packet) - length in (2, 3, 4)
    stream = packet * 2
    for cuts in ([], [1], [2], [3], [4], [len(packet) - 1], [len(packet) + 2]):
        fast = read(stream, cuts, fast=True, manual_ack=True)
        assert fast == read(stream, cuts, fast=False, manual_ack=True)
        assert len(fast[0]) == 2


def test_the_fast_read_takes_a_whole_read_of_messages_itself() -> None:
    """Not vacuous: whole QoS 0 and 1 packets go to ``on_incoming``, QoS 2 to paho's ``on_message``."""
    c, wire, got = client(fast=True, manual_ack=True)
    by_paho: list[str] = []
    c.on_message = lambda _c, _u, msg: by_paho.append(msg.topic)
    wire.arrived = b"".join(
        [
            publish_packet(b"a/b", b"{}", 0),
            publish_packet(b"c", b"x" * 300, 1, mid=9, retain=True, dup=True),
            publish_packet(b"q2", b"y", 2, mid=3),
        ]
    )
    c.loop_read()
    assert got == [("a/b", b"{}", 0, 0), ("c", b"x" * 300, 1, 9)]
    assert by_paho == []  # QoS 2 waits for the broker's PUBREL, in paho's hands
    assert c._in_messages.keys() == {3}
    assert wire.sent == b"\x50\x02\x00\x03"  # PUBREC; no PUBACK before the daemon says so


def test_a_read_error_met_while_filling_reaches_paho_as_from_the_socket() -> None:
    class Broken(Wire):
        def recv(self, size: int) -> bytes:
            if not self.arrived:
                raise ConnectionResetError
            return super().recv(size)

    c, _wire, got = client(fast=True, manual_ack=True)
    wire = Broken()
    wire.arrived = publish_packet(b"t", b"1")[:4]  # part of a packet, then the connection is reset
    c._sock = BufferedSocket(wire)
    assert c.loop_read() == paho.MQTT_ERR_CONN_LOST
    assert got == []


@given(st.lists(st.tuples(st.integers(0, 65_535), st.sampled_from([1, 1, 1, 2])), max_size=30), st.booleans())
def test_ack_all_sends_what_ack_one_by_one_sends(messages: list[tuple[int, int]], manual: bool) -> None:
    one, one_wire, _ = client(fast=True, manual_ack=manual)
    for mid, qos in messages:
        one.ack(mid, qos)
    every, every_wire, _ = client(fast=True, manual_ack=manual)
    every.ack_all(messages)
    assert every_wire.sent == one_wire.sent
