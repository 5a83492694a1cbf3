"""Compatibility name for bench/store.py, which imports the InfluxDB helpers from here; they live in
tests.support.influx (tests use tests.support). Remove once bench/store.py imports tests.support."""

from tests.support.influx import InfluxServer, V2WriteProxy

__all__ = ["InfluxServer", "V2WriteProxy"]
