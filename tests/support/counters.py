"""The MQTT driver's counters as one comparable dict: what tests that drain one stream two ways
(worker and in process, fast and careful parse) hold equal."""

from __future__ import annotations

import numpy as np

from monitord.core.metrics import Metrics


def driver_counts(metrics: Metrics) -> dict[str, float]:
    """Every sample of the MQTT, clock-skew and driver-error families, by name and labels."""
    return {
        s.name + str(sorted(s.labels.items())): s.value
        for family in metrics.registry.collect()
        if family.name.startswith(("monitord_mqtt", "monitord_clock", "monitord_driver"))
        for s in family.samples
        if not s.name.endswith("_created") and not np.isnan(s.value)  # a gauge never set
    }
