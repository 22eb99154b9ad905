"""The soak's pure parts: its fault plan and its account of every notification."""

from __future__ import annotations

import random
from collections import Counter

from bench.soak import VIMS, account, last_events, plan_faults


def test_the_fault_plan_kills_each_process_and_restarts_each_broker_once_inside_the_run():
    faults = plan_faults(120, random.Random(1))
    kinds = Counter(f.kind for f in faults)
    assert kinds == {
        "kill-listener": 2,
        "kill-stream": 1,
        "kill-api": 1,
        "restart-brokers": 1,
    }
    assert {f.target for f in faults if f.kind == "kill-listener"} == {f"listen-{vim}" for vim in VIMS}
    assert all(12 <= f.at <= 96 for f in faults)
    assert [f.at for f in faults] == sorted(f.at for f in faults)
    # Longer runs kill more often; the brokers are restarted once all the same.
    long = Counter(f.kind for f in plan_faults(600, random.Random(2)))
    assert long["kill-listener"] == 4 and long["kill-api"] == 2 and long["restart-brokers"] == 1


def test_every_confirmed_notification_is_accounted_for_or_listed_missing():
    a, b, c, d = (("v_1", f"vm-{n}", "compute.instance.update") for n in range(4))
    lost = ("v_1", "vm-9", "instance.delete.end")
    result = account(
        confirmed=[a, b, c, d],
        lost=[(lost, "connection refused")],
        events=Counter({a: 2, b: 1, ("v_1", "ghost", "x"): 1}),
        dead={c: "malformed"},
    )
    assert (result.confirmed, result.on_events, result.on_dead_letter) == (4, 2, 1)
    assert result.missing == [d]
    assert result.lost_by_rabbitmq == {"connection refused": 1}
    assert result.lost_but_delivered == 0
    assert result.duplicates_on_events == 1
    assert result.dead_letter_reasons == {"malformed": 1}
    assert result.unexpected == [("v_1", "ghost", "x")]


def test_the_state_to_expect_is_each_vm_s_last_confirmed_notification():
    sent = [("v_1", "a", "create.start"), ("v_1", "a", "create.end"), ("v_2", "a", "pause.end")]
    assert last_events(sent) == {("v_1", "a"): "create.end", ("v_2", "a"): "pause.end"}
