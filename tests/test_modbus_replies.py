"""Modbus replies that are not the answer asked for (issue 10, item 12): a reply under another
function code is a protocol error, its values are never taken, and the poller goes on.
"""

from __future__ import annotations

import numpy as np

from monitord.core.metrics import Metrics
from monitord.core.model import Quality
from tests.support.modbus_raw import poll_raw, registers


def errors(metrics: Metrics, kind: str) -> float:
    value = metrics.registry.get_sample_value(
        "monitord_driver_errors_total", {"driver": "modbus", "kind": kind}
    )
    return value or 0.0


def test_a_reply_under_the_right_function_code_is_taken() -> None:
    [batch], metrics = poll_raw(lambda req: registers(req))
    assert (batch.quality != Quality.COMM_ERROR).all()
    assert errors(metrics, "protocol") == 0


def test_an_fc04_answer_to_an_fc03_request_is_a_protocol_error_every_time() -> None:
    def wrong(request: bytes) -> bytes:
        fc = request[7]
        return registers(request, function=0x04 if fc == 0x03 else 0x03)

    batches, metrics = poll_raw(wrong, polls=33)
    assert len(batches) == 33
    taken = sum(int((b.quality == Quality.GOOD).sum()) for b in batches)
    assert taken == 0, "no value from a reply to another question"
    assert all(np.isnan(b.values).all() for b in batches)
    assert errors(metrics, "protocol") >= 33
