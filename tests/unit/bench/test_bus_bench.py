"""The bus bench's report: two readings of the server and the parts, per command (no server)."""

from __future__ import annotations

from typing import Any

from bench.bus import report


def _reading(msgs: int, cpu: float, stored: int, consumer_in: int) -> dict[str, Any]:
    return {
        "cpu": {"nats": (cpu, cpu / 2)},
        "varz": {"in_msgs": msgs, "out_msgs": msgs // 2, "in_bytes": 100 * msgs, "out_bytes": 50 * msgs},
        "connz": {
            "connections": [{"cid": 7, "name": "consumer-projections", "in_msgs": consumer_in, "out_msgs": 0}]
        },
        "jsz": {
            "account_details": [{"stream_detail": [{"name": "VSS_CASE", "state": {"messages": stored}}]}]
        },
    }


def test_the_report_divides_each_difference_by_the_commands() -> None:
    lines = report(_reading(100, 1.0, 10, 5), _reading(300, 1.2, 30, 45), commands=100)
    text = " ".join(" ".join(lines).split())  # the columns' widths aside
    assert "100 commands scheduled, 0.20 case events stored each" in text
    assert "server in_msgs 2.0" in text
    assert "nats 2.00 + 1.00 = 3.00" in text  # 0.2 s and 0.1 s over 100 commands
    assert "VSS_CASE 0.20" in text
    assert "consumer-projections 0.40 0.00" in text
