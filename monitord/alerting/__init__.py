"""Alerting: the alert lifecycle per (rule, asset) and muting (maintenance windows, silences)."""
