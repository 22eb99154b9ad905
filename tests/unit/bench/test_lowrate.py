"""The low-rate section's arithmetic: Kafka request rates from two readings, librdkafka's
statistics read per API, and the same-run ratios the targets are stated in."""

from __future__ import annotations

import json

import pytest

from bench import kafka_requests_internals as requests
from bench.lowrate import compare


def test_request_rates_are_the_difference_of_two_readings_over_their_time_for_both_kinds_of_client():
    before = {"at": 100.0, "librdkafka": {"Produce": 10, "Metadata": 2}, "aiokafka": {"Fetch": 50}}
    after = {
        "at": 110.0,
        "librdkafka": {"Produce": 110, "Metadata": 2},
        "aiokafka": {"Fetch": 150, "OffsetCommit": 10, "Produce": 5},
    }
    assert requests.per_second(before, after) == {"Fetch": 10.0, "OffsetCommit": 1.0, "Produce": 10.5}
    assert requests.per_second({}, {}) == {}


def test_librdkafka_statistics_are_read_per_api_over_every_broker_connection():
    statistics = {
        "brokers": {
            "127.0.0.1:9092/bootstrap": {"req": {"Metadata": 1, "ApiVersion": 1}},
            "127.0.0.1:9092/1": {"req": {"Produce": 40, "Metadata": 3}},
            "GroupCoordinator": {},
        }
    }
    requests.librdkafka_counts(1, json.dumps(statistics))
    requests.librdkafka_counts(2, json.dumps({"brokers": {"b/1": {"req": {"Produce": 2}}}}))
    snapshot = requests.snapshot()
    assert snapshot["librdkafka"] == {"Metadata": 4, "ApiVersion": 1, "Produce": 42}


def _result(eventfed_100: float, drain: float, ceilometer: float | None, p99: float) -> dict:
    return {
        "rates": [
            {
                "rate": 100,
                "eventfed_cpu_us_per_notification": eventfed_100,
                "cpu_us_per_notification": {"listener": eventfed_100 / 2, "stream": eventfed_100 / 2},
                "latency_ms": {"p99": p99},
                "kafka_requests_per_second": {"all": 300.0},
            }
        ],
        "drain": {
            "eventfed_cpu_us_per_notification": drain,
            "cpu_us_per_notification": {"listener": drain / 2, "stream": drain / 2},
        },
        "ceilometer": {"steady": {"cpu_us_per_notification": ceilometer}} if ceilometer else {},
    }


def test_the_targets_are_ratios_within_one_run():
    met = compare(_result(900.0, 300.0, 2000.0, 40.0))
    assert met["ratio_100_to_drain"] == pytest.approx(3.0) and met["meets_ratio_to_drain"]
    assert met["share_of_ceilometer_at_100"] == pytest.approx(0.45) and met["meets_share_of_ceilometer"]
    assert met["meets_p99_at_100"]
    missed = compare(_result(2700.0, 300.0, 1200.0, 60.0))
    assert not missed["meets_ratio_to_drain"] and not missed["meets_share_of_ceilometer"]
    assert not missed["meets_p99_at_100"]
    # Without the peer (its venv missing) the comparison says nothing about it.
    assert "meets_share_of_ceilometer" not in compare(_result(900.0, 300.0, None, 40.0))


def test_the_frameworks_floor_is_set_against_what_the_targets_allow():
    result = _result(2000.0, 300.0, 1400.0, 40.0)
    result["floors"] = {
        "cpu_us_per_notification": {
            "oslo": 1300.0,
            "oslo-driven": 700.0,
            "faust": 1100.0,
            "faust-driven": 800.0,
        }
    }
    figures = compare(result)
    assert figures["framework_floor_us_at_100"] == pytest.approx(2400.0)
    assert figures["framework_floor_driven_us_at_100"] == pytest.approx(1500.0)
    assert figures["eventfed_own_us_at_100"] == pytest.approx(500.0)
    assert figures["allowed_us_by_ratio_to_drain"] == pytest.approx(900.0)
    assert figures["allowed_us_by_share_of_ceilometer"] == pytest.approx(700.0)
    # A floor run that lost a consumer says nothing about the floor.
    del result["floors"]["cpu_us_per_notification"]["faust"]
    assert "framework_floor_us_at_100" not in compare(result)
