"""Daemon: the evaluation pipeline, the application wiring and the HTTP API."""
