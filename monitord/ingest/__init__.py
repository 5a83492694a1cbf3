"""Ingest: the sample bus, the state table, the Modbus register codec and device profiles."""
