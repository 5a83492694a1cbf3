"""The UDP socket of a simulated BACnet device or SNMP agent, bound before the library sees it.

Both libraries bind in a task of their own: bacpypes3 retries a taken port
forever without a word (and binds with SO_REUSEPORT, sharing it), pysnmp
logs from a background task. A simulator that cannot listen must say so and
stop, as the Modbus simulator does.
"""

from __future__ import annotations

import socket


def udp_socket(host: str, port: int, what: str) -> socket.socket:
    """A UDP socket bound to host:port for a simulated device; ``OSError`` naming it if it cannot be."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"{what} simulator cannot listen on {host}:{port}: {exc.strerror}") from None
    return sock
