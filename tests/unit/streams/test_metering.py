"""Ceilometer samples per VM per interval: parsing, counting, closing, rates (streams.metering)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.raw import samples_of
from streams import metering
from streams.metering import (
    COUNTED,
    DUPLICATE,
    LATE,
    InvalidSample,
    add_samples,
    close,
    due,
    interval_start,
    parse_sample,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "ceilometer"
INSTANCE = "c91edb31-de52-4ec3-9d0d-cc98c81a0a11"
T0 = 1_800_000_000  # a multiple of 300: an interval start


def sample(
    meter: str = "cpu",
    kind: str = "cumulative",
    volume: float = 0,
    at: float = T0 + 10,
    resource_id: str = INSTANCE,
    message_id: str | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    from datetime import UTC, datetime

    return {
        "counter_name": meter,
        "counter_type": kind,
        "counter_unit": "ns",
        "counter_volume": volume,
        "resource_id": resource_id,
        "project_id": "p1",
        "timestamp": datetime.fromtimestamp(at, UTC).replace(tzinfo=None).isoformat(),
        "resource_metadata": {"instance_id": INSTANCE, "host": "compute", **metadata},
        "message_id": message_id or str(uuid.uuid4()),
    }


def parsed(*samples: dict[str, Any]) -> list[metering.Sample]:
    return [parse_sample(s) for s in samples]


def test_real_ceilometer_samples_parse() -> None:
    """Every sample of the recorded Ceilometer 27 messages parses, with its instance."""
    files = sorted(FIXTURES.glob("*.json"))
    assert files
    seen = 0
    for path in files:
        decoded = json.loads(path.read_text())["decoded"]
        for raw in samples_of(decoded["event_type"], decoded["payload"]) or []:
            one = parse_sample(raw)
            assert one.instance_id == INSTANCE or raw["resource_id"] != INSTANCE
            seen += 1
    assert seen == 8  # 5 from the create.end, 1 per cpu message


def test_naive_and_offset_timestamps_are_utc() -> None:
    assert metering.epoch_seconds("2026-12-07T06:38:07.723197") == metering.epoch_seconds(
        "2026-12-07T06:38:07.723197+00:00"
    )


@pytest.mark.parametrize(
    "change",
    [
        {"counter_name": ""},
        {"counter_type": "rate"},
        {"counter_volume": "12"},
        {"counter_volume": True},
        {"resource_id": None},
        {"message_id": ""},
        {"timestamp": "yesterday"},
    ],
)
def test_invalid_samples_are_refused(change: dict[str, Any]) -> None:
    with pytest.raises(InvalidSample):
        parse_sample({**sample(), **change})


def test_per_device_meters_belong_to_their_instance() -> None:
    disk = parse_sample(sample("disk.device.read.bytes", resource_id=f"{INSTANCE}-vda", disk_name="vda"))
    assert (disk.instance_id, disk.resource_id, disk.label) == (INSTANCE, f"{INSTANCE}-vda", "vda")


def test_gauge_last_delta_sum_cumulative_rate() -> None:
    added = add_samples(
        None,
        parsed(
            sample("memory.usage", "gauge", 200, at=T0 + 5),
            sample("memory.usage", "gauge", 300, at=T0 + 250),
            sample("memory.usage", "gauge", 100, at=T0 + 100),  # older: not the last
            sample("net.delta", "delta", 5, at=T0 + 1),
            sample("net.delta", "delta", 7, at=T0 + 2),
            sample("cpu", "cumulative", 1_000, at=T0 + 10),
            sample("cpu", "cumulative", 61_000, at=T0 + 70),
        ),
        300,
    )
    assert added.counts == {COUNTED: 7}
    assert added.metering is not None
    closed, book = close(added.metering, T0, 300)
    figures = {f.meter: f for f in closed.figures}
    assert figures["memory.usage"].value == 300
    assert figures["net.delta"].value == 12
    assert figures["cpu"].value == pytest.approx(1_000.0)
    assert figures["cpu"].accumulated == 61_000 and figures["cpu"].increase == 60_000
    assert closed.samples == 7 and closed.project_id == "p1" and closed.host == "compute"
    assert book["through"] == T0 and book["open"] == {}
    assert book["carry"][f"cpu|{INSTANCE}"] == [T0 + 70, 61_000]


def test_rate_runs_from_the_previous_intervals_last_reading() -> None:
    first = add_samples(None, parsed(sample(volume=1_000, at=T0 + 290)), 300).metering
    assert first is not None
    closed, book = close(first, T0, 300)
    assert closed.figures[0].value is None  # one reading, nothing before it
    second = add_samples(book, parsed(sample(volume=2_000, at=T0 + 390)), 300).metering
    assert second is not None
    closed, _ = close(second, T0 + 300, 300)
    assert closed.figures[0].value == pytest.approx(10.0)


def test_a_reset_drops_the_rate() -> None:
    added = add_samples(
        None, parsed(sample(volume=5_000, at=T0 + 10), sample(volume=100, at=T0 + 70)), 300
    ).metering
    assert added is not None
    closed, book = close(added, T0, 300)
    assert closed.figures[0].value is None and closed.figures[0].reset
    # The reading after the reset is the next interval's base.
    later = add_samples(book, parsed(sample(volume=400, at=T0 + 370)), 300).metering
    assert later is not None
    assert close(later, T0 + 300, 300)[0].figures[0].value == pytest.approx(1.0)


def test_carried_reading_above_the_next_is_a_reset() -> None:
    first = add_samples(None, parsed(sample(volume=9_000, at=T0 + 10)), 300).metering
    assert first is not None
    _, book = close(first, T0, 300)
    second = add_samples(book, parsed(sample(volume=10, at=T0 + 310), sample(volume=20, at=T0 + 320)), 300)
    assert second.metering is not None
    figure = close(second.metering, T0 + 300, 300)[0].figures[0]
    assert figure.value is None and figure.reset


def test_duplicates_by_message_id_and_late_samples() -> None:
    one = sample("cpu", volume=1, message_id="same")
    added = add_samples(None, parsed(one, one), 300)
    assert added.counts == {COUNTED: 1, DUPLICATE: 1}
    assert added.metering is not None
    again = add_samples(added.metering, parsed(one), 300)
    assert again.counts == {DUPLICATE: 1} and again.metering is None
    _, book = close(added.metering, T0, 300)
    late = add_samples(book, parsed(sample(volume=3, at=T0 + 299)), 300)
    assert late.counts == {LATE: 1} and late.metering is None


def test_samples_after_the_delete_are_not_counted() -> None:
    added = add_samples(None, parsed(sample(at=T0 + 10), sample(at=T0 + 30)), 300, deleted_at=T0 + 20)
    assert added.counts == {COUNTED: 1, metering.AFTER_DELETE: 1}


def test_due_waits_for_the_grace_period() -> None:
    added = add_samples(None, parsed(sample(at=T0 + 10), sample(at=T0 + 310)), 300).metering
    assert due(added, T0 + 300 + 59, 300, 60) == []
    assert due(added, T0 + 360, 300, 60) == [T0]
    assert due(added, T0 + 700, 300, 60) == [T0, T0 + 300]


def test_interval_start_aligns_to_the_clock() -> None:
    assert interval_start(T0 + 299.999, 300) == T0
    assert interval_start(T0 + 300, 300) == T0 + 300


readings = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 1_000_000)),
    min_size=1,
    max_size=30,
    unique_by=lambda r: r[0],
)


@settings(max_examples=150, deadline=None)
@given(readings, st.randoms(use_true_random=False))
def test_any_order_and_any_replay_gives_the_same_figures(values: list[tuple[int, int]], shuffle: Any) -> None:
    """Counting is a function of the set of samples: order of arrival and repeats do not matter,
    and a monotone counter's rate is (last - first) / (last time - first time)."""
    series = sorted(values)
    monotone = [(at, sum(v for _, v in series[: i + 1])) for i, (at, _) in enumerate(series)]
    samples = [sample(volume=v, at=T0 + at / 100, message_id=f"m{at}") for at, v in monotone]
    gauges = [sample("g", "gauge", v, at=T0 + at / 100, message_id=f"g{at}") for at, v in series]
    deltas = [sample("d", "delta", v, at=T0 + at / 100, message_id=f"d{at}") for at, v in series]
    every = samples + gauges + deltas
    shuffled = every + every[: len(every) // 2]
    shuffle.shuffle(shuffled)

    def figures(order: list[dict[str, Any]]) -> dict[str, metering.Figure]:
        book: dict[str, Any] | None = None
        for one in order:
            book = add_samples(book, parsed(one), 300).metering or book
        assert book is not None
        return {f.meter: f for f in close(book, T0, 300)[0].figures}

    in_order, any_order = figures(every), figures(shuffled)
    assert in_order == any_order
    assert any_order["g"].value == series[-1][1]
    assert any_order["d"].value == sum(v for _, v in series)
    (t0, v0), (t1, v1) = monotone[0], monotone[-1]
    if t1 > t0:
        assert any_order["cpu"].value == pytest.approx((v1 - v0) / ((t1 - t0) / 100))
    else:
        assert any_order["cpu"].value is None
