"""Core values every stage shares: samples and quality, the injected clock, errors, units, metrics."""
