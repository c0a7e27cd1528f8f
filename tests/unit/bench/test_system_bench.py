"""The whole-system benchmark's pure parts: the step judgement, percentiles, CPU accounting,
the generator's lifecycles as case API requests, its flags, and its report (no server)."""

from __future__ import annotations

import argparse
import io
import itertools
import json
import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from bench.system import (
    ROUTES,
    VISIBLE_PROBE_INTERVAL,
    Driver,
    Judgement,
    References,
    StepRun,
    _caused,
    all_parts,
    case_lives,
    cpu_per_command,
    highest_sustained,
    judge_step,
    lag_slope,
    parse_args,
    percentile,
    print_report,
    summary,
    without_nan,
)

STEADY = [(float(t), 40 + (t % 3) * 20) for t in range(40)]  # a batch consumer's zigzag, not growing
GROWING = [(float(t), 30 * t) for t in range(40)]  # 30 messages/s more than it applies


def test_percentiles_rank_the_nearest_and_nothing_ranks_as_nan() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert math.isnan(percentile([], 0.5))


def test_the_lag_slope_is_the_least_squares_growth_per_second() -> None:
    assert lag_slope(GROWING) == pytest.approx(30.0)
    assert lag_slope(STEADY) == pytest.approx(0.0, abs=1.0)
    assert lag_slope([(0.0, 5)]) == 0.0


def test_a_step_at_its_rate_with_consumers_keeping_up_is_sustained() -> None:
    judged = judge_step(200, 40, 7_960, 0, {"projector/projections": STEADY}, drain_seconds=0.4)
    assert judged == Judgement(True, 199.0, ())


@pytest.mark.parametrize(
    ("accepted", "errors", "lags", "drain", "reason"),
    [
        (7_000, 0, {"a/b": STEADY}, 0.5, "accepted 175.0/s, under 95% of 200/s"),
        (8_000, 3, {"a/b": STEADY}, 0.5, "3 server error(s)"),
        (8_000, 0, {"meetings/meetings": GROWING}, 0.5, "meetings/meetings: lag grew 30.0 msgs/s to 1170"),
        (8_000, 0, {"a/b": STEADY}, None, "consumers did not catch up after the step"),
        (8_000, 0, {"sharing/sharing": []}, 0.5, "sharing/sharing: lag never read"),
    ],
)
def test_a_step_is_not_sustained_for_each_broken_condition(
    accepted: int, errors: int, lags: dict[str, list[tuple[float, int]]], drain: float | None, reason: str
) -> None:
    judged = judge_step(200, 40, accepted, errors, lags, drain)
    assert not judged.sustained
    assert [r for r in judged.reasons if r.startswith(reason)] != [], judged.reasons


def test_a_backlog_under_two_seconds_of_events_is_still_keeping_up() -> None:
    # Growing 20 msgs/s (over 2 % of 200 events/s) up to 700 messages: behind at one event per
    # command (over 400, two seconds' worth), not at two (800).
    creeping = [(float(t), 20 * t - 80) for t in range(4, 40)]
    assert not judge_step(200, 40, 8_000, 0, {"a/b": creeping}, 0.3).sustained
    assert judge_step(200, 40, 8_000, 0, {"a/b": creeping}, 0.3, events_per_command=2.0).sustained


def test_the_sustained_rate_is_the_last_step_before_the_first_failure() -> None:
    ok, no = Judgement(True, 0, ()), Judgement(False, 0, ("x",))
    assert highest_sustained([(50, ok), (100, ok), (150, no), (200, ok)]) == 100
    assert highest_sustained([(50, no)]) is None


def test_cpu_per_command_is_the_difference_per_command_and_a_restarted_part_unknown() -> None:
    before = {"case": (10, 2.0), "relay": (11, 1.0), "query": (12, 0.5)}
    after = {"case": (10, 6.0), "relay": (99, 1.2), "query": (12, 0.5)}
    per = cpu_per_command(before, after, 1000)
    assert per["case"] == pytest.approx(4.0)
    assert per["query"] == 0.0
    assert math.isnan(per["relay"])  # restarted: another pid
    assert math.isnan(cpu_per_command({"case": (1, 1.0)}, {}, 10)["case"])  # gone
    assert all_parts({"case": 4.0, "query": 1.0, "this driver": 3.0}) == 5.0


def test_the_generators_lifecycles_become_case_api_requests() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    lives = list(itertools.islice(case_lives(7, 300, now), 30))
    commands = [c for life in lives for c in life]
    assert all(life[0].kind == "open_case" and life[0].path == "/v1/cases" for life in lives)
    assert all(c.case_id == life[0].case_id for life in lives for c in life)
    kinds = Counter(c.kind for c in commands)
    assert {"complete_worksheet", "give_consent", "summarise_mapping", "decide_sip"} <= set(kinds)
    assert set(kinds) - {"open_case"} <= set(ROUTES)
    for c in commands:
        assert c.path.startswith("/v1/cases")
        assert "{" not in c.path  # every id filled in
        if c.kind == "confirm_sip":  # the client's own dates are today
            assert c.actor.principal.value == "client"
            assert c.body["confirmed_on"] == "2026-12-07"
        if c.kind == "complete_action":
            assert c.path.endswith("/completion")
    happened = [
        value
        for c in commands
        for key, value in c.body.items()
        if key.endswith("_on") and "follow_up" not in key and "due" not in key
    ]
    assert max(happened) <= "2026-12-07"  # nothing that happens after now is sent


@pytest.mark.parametrize(
    "argv",
    [
        ["--rates", "100,50"],
        ["--rates", "100,100"],
        ["--rates", "2"],
        ["--rates", "fast"],
        ["--seconds", "4"],
        ["--concurrency", "0"],
        ["--span-days", "365"],
        ["--rates", "20,40", "--latency-rate", "200"],
        ["--setting", "BACKGROUND_NICE=0"],
        ["--setting", "VSS_BACKGROUND_NICE"],
        ["--setting", "VSS_CASE_PORT=8000"],
    ],
)
def test_bad_flags_are_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("system.py: argument --")


def test_settings_of_the_system_under_test_are_named_pairs() -> None:
    args = parse_args(["--setting", "VSS_BACKGROUND_NICE=0", "--setting", "VSS_SMTP_CONNECTIONS=2"])
    assert dict(args.setting) == {"VSS_BACKGROUND_NICE": "0", "VSS_SMTP_CONNECTIONS": "2"}
    assert parse_args([]).setting == []


def test_the_latency_rate_defaults_to_200_or_the_nearest_listed() -> None:
    assert parse_args([]).latency_rate == 200
    assert parse_args(["--rates", "20,40"]).latency_rate == 40


def test_the_mail_sink_is_a_row_of_its_own_and_counted_in_all_of_vss_up() -> None:
    # Its own process in up.json's parts (tests/e2e/test_mail_sink_part.py), so its own CPU.
    step = _step(100, 4_000, sustained=True)
    step.cpu_ms = {"notifications": 2.0, "mail-sink": 0.5, "this driver": 1.0}
    args = parse_args(["--rates", "100"])
    refs = References(save_per_s=2_000, save_cpu_ms=0.5, publish_per_s=20_000, smtp_per_s=250)
    out = io.StringIO()
    print_report(summary([step], refs, args, {"python": "3.11", "cpus": 2, "commit": "abc1234"}), out)
    rows = [line.split() for line in out.getvalue().splitlines()]
    assert ["mail-sink", "0.5"] in rows
    assert ["notifications", "2.0"] in rows
    assert ["all", "of", "vss", "up", "2.5"] in rows  # the driver's own not among them


def _step(target: float, accepted: int, *, sustained: bool) -> StepRun:
    step = StepRun(target, 40)
    step.sent = accepted
    step.statuses = Counter({200: accepted, 503: 0 if sustained else 2})
    step.latencies = [float(ms) for ms in range(1, 101)]
    step.events = accepted * 2
    step.lags = {"projector/projections": STEADY}
    step.drain_seconds = 0.5
    step.cpu_ms = {"case": 2.0, "relay": 0.5, "this driver": 1.0}
    step.machine_busy = 0.5
    step.probes.visible = [30.0, 40.0]
    step.probes.mailed = [120.0]
    return step


def test_the_report_gives_the_sustained_rate_latencies_cpu_and_ratios() -> None:
    args = parse_args(["--rates", "100,200,300"])
    steps = [
        _step(100, 4_000, sustained=True),
        _step(200, 8_000, sustained=True),
        _step(300, 9_000, sustained=False),
    ]
    refs = References(
        save_per_s=2_000, save_cpu_ms=0.5, publish_per_s=20_000, publish_round_trip_ms=[0.5], smtp_per_s=250
    )
    report = summary(steps, refs, args, {"python": "3.11", "cpus": 2, "commit": "abc1234"})
    assert report["sustained_rate"] == 200
    assert report["latency"]["command"] == {"n": 100, "p50": 50.0, "p99": 99.0}
    assert report["ratios"]["sustained_rate / library saves per s"] == pytest.approx(0.1)
    assert report["ratios"]["command p50 / library save"] == pytest.approx(100.0)  # 50 ms / 0.5 ms
    assert report["ratios"]["CPU per command (all parts) / library save's CPU"] == pytest.approx(5.0)
    assert report["ratios"]["e-mail accepted p50 / raw SMTP per message"] == pytest.approx(30.0)
    assert math.isnan(report["ratios"]["meeting booked p50 / publish round trip p50"])  # none measured
    document = json.loads(json.dumps(without_nan(report), allow_nan=False, default=str))
    assert document["ratios"]["meeting booked p50 / publish round trip p50"] is None
    assert document["steps"][2]["reasons"] == [
        "accepted 225.0/s, under 95% of 300/s",
        "2 server error(s) (5xx or no answer)",
    ]
    out = io.StringIO()
    print_report(report, out)
    text = out.getvalue()
    assert "highest sustained rate: 200 commands/s" in text
    assert "no: accepted 225.0/s, under 95% of 300/s; 2 server error(s)" in text
    assert "all of vss up" in text


def test_an_e_mail_is_the_early_warnings_by_its_event_id_or_by_type_and_time() -> None:
    at = datetime(2026, 12, 7, 9, 0, tzinfo=UTC).timestamp()
    mine = {"cause_event_id": "e1", "cause_event_type": "x", "created_at": "2026-12-07T08:00:00+00:00"}
    later = {
        "cause_event_id": "other",
        "cause_event_type": "se.vss.case.EarlyWarningTriggered.v1",
        "created_at": "2026-12-07T09:00:02+00:00",
    }
    earlier = {**later, "created_at": "2026-12-07T08:58:00+00:00"}
    meeting = {**later, "cause_event_type": "se.vss.meetings.MeetingScheduled.v1"}
    assert _caused(mine, {"e1"}, at)
    assert _caused(later, {"e1"}, at)
    assert not _caused(earlier, {"e1"}, at)  # an earlier warning of the same case
    assert not _caused(meeting, {"e1"}, at)


def test_visible_probes_are_a_sample_of_at_most_ten_a_second() -> None:
    """The probes' cost (the driver's and the query API's) must not grow with the rate measured."""
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    lives = itertools.islice(case_lives(7, 300, now), 30)
    worksheet = next(c for life in lives for c in life if c.kind == "complete_worksheet")
    args = argparse.Namespace(concurrency=8)
    driver = Driver(None, None, None, args)  # type: ignore[arg-type]  # probes only: no system
    spawned: list[float] = []

    def spawn(probe: Any) -> None:
        probe.close()  # not run: only counted
        spawned.append(answered)

    driver._spawn = spawn  # type: ignore[method-assign]
    step = StepRun(400, 1)
    for i in range(400):  # 400 commands/s for one second
        answered = 1000.0 + i / 400
        driver._probe(step, worksheet, {"position": i, "events": []}, answered, answered)
    assert len(spawned) == 10
    assert all(b - a >= VISIBLE_PROBE_INTERVAL for a, b in itertools.pairwise(spawned))
