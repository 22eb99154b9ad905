"""The in-memory state table: applying records, indexes, paging, matching."""

from __future__ import annotations

import json
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.api.state_table import ApplyOutcome, StateTable, VmFilter
from schemas.state import parse_state_key
from tests.unit.bridge.api.api_records import VIM_A, VIM_B, encode, put, state_record


def ids_of(summaries: list[bytes]) -> list[str]:
    return [json.loads(summary)["instance_id"] for summary in summaries]


def all_ids(table: StateTable, vim_id: str, vm_filter: VmFilter | None = None, limit: int = 3) -> list[str]:
    """Every id of a VIM, by walking the pages."""
    found: list[str] = []
    marker = None
    while True:
        page = table.page(vim_id, vm_filter or VmFilter(), marker, limit)
        assert page is not None
        found += ids_of(page.summaries)
        if page.next_marker is None:
            return found
        assert page.next_marker == found[-1]
        marker = page.next_marker


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (b"CloudOwner_RegionOne/abc", ("CloudOwner_RegionOne", "abc")),
        ("owner_region/uuid-1", ("owner_region", "uuid-1")),
        (b"owner_region/a/b", None),
        (b"owner_region/", None),
        (b"/uuid", None),
        (b"noregion/uuid", None),
        (b"owner_region", None),
        (b"\xff\xfe/uuid", None),
        (None, None),
        (b"owner_region/tab\there", None),
    ],
)
def test_parse_state_key(key: bytes | str | None, expected: tuple[str, str] | None) -> None:
    assert parse_state_key(key) == expected


def test_upsert_then_update_keeps_one_row_and_moves_indexes() -> None:
    table = StateTable()
    put(table, VIM_A, "vm-1", state="active", status="CREATE")
    put(table, VIM_A, "vm-1", state="stopped", status="POWER_OFF")
    assert table.vm_count == 1
    assert table.matching(VIM_A, {"active"}, set()) == []
    assert ids_of(table.matching(VIM_A, {"stopped"}, set()) or []) == ["vm-1"]
    assert ids_of(table.matching(VIM_A, set(), {"POWER_OFF"}) or []) == ["vm-1"]
    assert table.matching(VIM_A, set(), {"CREATE"}) == []
    record = table.record(VIM_A, "vm-1")
    assert record is not None and json.loads(record)["state"] == "stopped"


def test_record_is_returned_verbatim() -> None:
    table = StateTable()
    raw = encode(state_record(VIM_A, "vm-1", display_name="naïve ☃"))
    table.apply(f"{VIM_A}/vm-1".encode(), raw)
    assert table.record(VIM_A, "vm-1") == raw


def test_tombstone_removes_and_vim_stays_known() -> None:
    table = StateTable()
    put(table, VIM_A, "vm-1")
    result = table.apply(f"{VIM_A}/vm-1".encode(), None)
    assert result.outcome is ApplyOutcome.REMOVED
    assert table.record(VIM_A, "vm-1") is None
    assert table.vm_count == 0
    assert table.has_vim(VIM_A)
    assert all_ids(table, VIM_A) == []
    # A tombstone for a VM never seen is harmless and makes its VIM known.
    table.apply(f"{VIM_B}/ghost".encode(), None)
    assert table.has_vim(VIM_B) and table.vm_count == 0


def test_removed_then_readded_before_a_read_appears_once() -> None:
    table = StateTable()
    for name in ("c", "a", "b"):
        put(table, VIM_A, name)
    assert all_ids(table, VIM_A) == ["a", "b", "c"]
    table.apply(f"{VIM_A}/b".encode(), None)
    put(table, VIM_A, "b")
    put(table, VIM_A, "d")
    table.apply(f"{VIM_A}/a".encode(), None)
    assert all_ids(table, VIM_A) == ["b", "c", "d"]
    assert table.vm_count == 3


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"bad-key", b"{}", "key"),
        (None, b"{}", "key"),
        (f"{VIM_A}/vm-1".encode(), b"not json", "json"),
        (f"{VIM_A}/vm-1".encode(), b"[1, 2]", "json"),
        (f"{VIM_A}/vm-1".encode(), b'{"memory_mb": NaN}', "json"),
        (f"{VIM_A}/vm-1".encode(), b"\xff\xfe\x00", "json"),
        (f"{VIM_A}/vm-1".encode(), b'{"instance_id": "other"}', "mismatch"),
        (f"{VIM_A}/vm-1".encode(), b'{"vim_id": "x_y"}', "mismatch"),
    ],
)
def test_malformed_records_are_counted_and_skipped(key: bytes | None, value: bytes, reason: str) -> None:
    table = StateTable()
    result = table.apply(key, value)
    assert result.outcome is ApplyOutcome.MALFORMED
    assert result.reason == reason
    assert table.outcomes["malformed"] == 1
    assert table.malformed_reasons[reason] == 1
    assert table.vm_count == 0


def test_minimal_record_and_odd_field_types_are_tolerated() -> None:
    table = StateTable()
    table.apply(f"{VIM_A}/vm-1".encode(), b'{"state": 5, "status": ["x"], "power_state": 1, "host": {}}')
    page = table.page(VIM_A, VmFilter(), None, 10)
    assert page is not None
    (summary,) = [json.loads(item) for item in page.summaries]
    assert summary["instance_id"] == "vm-1" and summary["vim_id"] == VIM_A
    assert summary["state"] is None and summary["status"] is None and summary["host"] is None
    assert summary["power_state"] == 1
    (vim,) = table.vims()
    assert vim.state_counts == {"unknown": 1} and vim.last_event_at is None


def test_vims_overview(table: StateTable) -> None:
    overview = {vim.vim_id: vim for vim in table.vims()}
    assert list(overview) == [VIM_A, VIM_B]
    vim_a = overview[VIM_A]
    assert vim_a.vm_count == 8
    assert vim_a.state_counts == {
        "active": 2, "stopped": 2, "paused": 1, "deleted": 1, "error": 1, "soft-delete": 1,
    }  # fmt: skip
    assert vim_a.status_counts["POWER_OFF"] == 2
    assert vim_a.last_event_at == "2024-05-02T08:00:00+00:00"
    assert overview[VIM_B].vm_count == 2


def test_last_event_accepts_naive_and_zulu_times() -> None:
    table = StateTable()
    put(table, VIM_A, "vm-1", occurred_at="2024-05-01T10:00:00")
    put(table, VIM_A, "vm-2", occurred_at="2024-05-01T11:00:00Z")
    put(table, VIM_A, "vm-3", occurred_at="yesterday")
    (vim,) = table.vims()
    assert vim.last_event_at == "2024-05-01T11:00:00Z"


def test_paging_filters(table: StateTable) -> None:
    assert all_ids(table, VIM_A) == [f"vm-0{i}" for i in range(1, 9)]
    assert all_ids(table, VIM_A, VmFilter(state="stopped")) == ["vm-02", "vm-03"]
    assert all_ids(table, VIM_A, VmFilter(status="POWER_OFF")) == ["vm-02", "vm-05"]
    assert all_ids(table, VIM_A, VmFilter(state="stopped", status="POWER_OFF")) == ["vm-02"]
    assert all_ids(table, VIM_A, VmFilter(tenant_id="tenant-2")) == ["vm-04", "vm-08"]
    assert all_ids(table, VIM_A, VmFilter(host="compute-2", tenant_id="tenant-2")) == ["vm-08"]
    assert all_ids(table, VIM_A, VmFilter(state="building")) == []
    assert table.page("nobody_nowhere", VmFilter(), None, 10) is None


def test_page_is_exact_when_the_last_page_is_full(table: StateTable) -> None:
    page = table.page(VIM_A, VmFilter(), None, 8)
    assert page is not None and len(page.summaries) == 8 and page.next_marker is None
    page = table.page(VIM_A, VmFilter(), None, 7)
    assert page is not None and page.next_marker == "vm-07"


def test_marker_of_a_removed_vm_still_pages_on(table: StateTable) -> None:
    table.apply(f"{VIM_A}/vm-03".encode(), None)
    page = table.page(VIM_A, VmFilter(), "vm-03", 2)
    assert page is not None and ids_of(page.summaries) == ["vm-04", "vm-05"]
    page = table.page(VIM_A, VmFilter(), "zzz", 2)
    assert page is not None and page.summaries == [] and page.next_marker is None


def test_matching_by_kind_or_vm_state(table: StateTable) -> None:
    assert ids_of(table.matching(VIM_A, {"stopped"}, {"POWER_OFF"}) or []) == ["vm-02", "vm-03", "vm-05"]
    assert ids_of(table.matching(VIM_A, {"deleted", "soft-delete"}, set()) or []) == ["vm-06", "vm-08"]
    assert table.matching(VIM_A, {"building"}, {"REBOOT"}) == []
    assert table.matching("nobody_nowhere", {"active"}, set()) is None
    summary = json.loads((table.matching(VIM_B, set(), {"POWER_OFF"}) or [b""])[0])
    assert summary["instance_id"] == "vm-b2" and summary["vim_id"] == VIM_B


def test_matching_most_of_a_large_vim_is_in_order() -> None:
    table = StateTable()
    for number in range(200, 0, -1):
        put(table, VIM_A, f"vm-{number:04d}", state="active" if number % 10 else "stopped")
    matched = ids_of(table.matching(VIM_A, {"active"}, set()) or [])
    assert matched == sorted(matched) and len(matched) == 180
    few = ids_of(table.matching(VIM_A, {"stopped"}, set()) or [])
    assert few == sorted(few) and len(few) == 20


def test_concurrent_writer_and_readers_do_not_fail() -> None:
    table = StateTable()
    errors: list[BaseException] = []

    def write() -> None:
        for number in range(3000):
            put(table, VIM_A, f"vm-{number % 500:04d}", state="stopped" if number % 3 else "active")
            if number % 7 == 0:
                table.apply(f"{VIM_A}/vm-{(number * 13) % 500:04d}".encode(), None)

    def read() -> None:
        try:
            for _ in range(300):
                all_ids(table, VIM_A, limit=97) if table.has_vim(VIM_A) else None
                table.matching(VIM_A, {"active"}, {"CREATE"})
                table.vims()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write)] + [threading.Thread(target=read) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    ids = all_ids(table, VIM_A, limit=1000)
    assert ids == sorted(set(ids)) and len(ids) == table.vm_count


_operations = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", "e", "f"]),
        st.one_of(st.none(), st.sampled_from(["active", "stopped", "paused"])),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None)
@given(operations=_operations, limit=st.integers(1, 4))
def test_table_agrees_with_a_plain_dict(operations: list[tuple[str, str | None]], limit: int) -> None:
    table = StateTable()
    model: dict[str, str] = {}
    for instance_id, state in operations:
        if state is None:
            table.apply(f"{VIM_A}/{instance_id}".encode(), None)
            model.pop(instance_id, None)
        else:
            put(table, VIM_A, instance_id, state=state)
            model[instance_id] = state
    assert table.vm_count == len(model)
    if not operations:
        return
    assert all_ids(table, VIM_A, limit=limit) == sorted(model)
    assert all_ids(table, VIM_A, VmFilter(state="stopped"), limit) == sorted(
        i for i, s in model.items() if s == "stopped"
    )
    matched = ids_of(table.matching(VIM_A, {"active", "paused"}, set()) or [])
    assert matched == sorted(i for i, s in model.items() if s in ("active", "paused"))
