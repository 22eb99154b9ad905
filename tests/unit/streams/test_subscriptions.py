from __future__ import annotations

import itertools
import logging

import pytest

from streams import subscriptions as subscriptions_module
from streams.subscriptions import Matcher, Patterns, SubscriptionError, load_subscriptions, matching

DOC = """
subscriptions:
  - name: spec
    match:
      events: [DELETE, PAUSE, POWER_OFF, REBUILD, SHUT_DOWN, SOFT_DELETE]
    sink: {type: kafka, topic: spec.topic}
  - name: all-but-updates
    match:
      events: ["!UPDATE", "!EXISTS"]
      phases: [start, end, error, none]
      vims: ["cloud_*"]
    sink: {type: kafka, topic: all.topic, format: avro}
  - name: power-region
    match:
      events: ["power_*"]
      hosts: ["compute-1*"]
      tenants: [t1]
      states: [STOPPED, active]
    sink: {type: kafka, topic: power.topic}
"""


def event(**overrides):
    base = {
        "status": "POWER_OFF",
        "phase": "end",
        "vim_id": "cloud_one",
        "state": "stopped",
        "tenant_id": "t1",
        "host": "compute-12",
    }
    return {**base, **overrides}


def names(subs, ev):
    return [s.name for s in matching(subs, ev)]


def test_matching_rules():
    subs = load_subscriptions(DOC)
    assert names(subs, event()) == ["spec", "all-but-updates", "power-region"]
    # Default phases are end and error: a start reaches only the subscription asking for it.
    assert "spec" not in names(subs, event(phase="start"))
    assert names(subs, event(status="UPDATE", phase="none")) == []
    assert names(subs, event(vim_id="other_x")) == ["spec", "power-region"]
    assert "power-region" not in names(subs, event(host="compute-2"))
    assert "power-region" not in names(subs, event(tenant_id="t2"))
    assert "power-region" not in names(subs, event(state="paused"))
    assert names(subs, event(status="PAUSE", phase="error", vim_id="x_y", host="h")) == ["spec"]


def test_the_matcher_decides_as_each_subscription_does():
    subs = load_subscriptions(DOC)
    matcher = Matcher(subs)
    values = {
        "status": ["POWER_OFF", "power_on", "UPDATE", "PAUSE", None],
        "phase": ["end", "start", "none", None],
        "vim_id": ["cloud_one", "other_x"],
        "state": ["stopped", "paused", None],
        "tenant_id": ["t1", "t2", None],
        "host": ["compute-12", "compute-2"],
    }
    # Every combination twice: the second time the verdicts come from what was remembered.
    for _ in range(2):
        for combination in itertools.product(*values.values()):
            ev = dict(zip(values, combination, strict=True))
            assert matcher.matches(ev) == tuple(s.matches(ev) for s in subs), ev
            assert matcher.watches(ev) == tuple(s.watches(ev) for s in subs), ev


def test_the_matcher_keys_only_on_the_fields_filtered_on():
    subs = load_subscriptions(
        """
subscriptions:
  - name: closed-loop
    match: {events: [DELETE]}
    sink: {type: kafka, topic: a}
  - name: everything
    match: {phases: [start, end, error, none]}
    sink: {type: kafka, topic: b}
"""
    )
    matcher = Matcher(subs)
    assert matcher.matches(event(status="DELETE", tenant_id="t1")) == (True, True)
    # The tenant and host differ, the verdicts cannot: no second entry.
    assert matcher.matches(event(status="DELETE", tenant_id="t9", host="h")) == (True, True)
    assert len(matcher._matches) == 1
    assert matcher.matches(event(status="PAUSE")) == (False, True)
    assert matcher.watches(event()) == (True, True) and matcher.watches({}) == (True, True)


def test_the_matcher_decides_events_it_cannot_remember(monkeypatch):
    monkeypatch.setattr(subscriptions_module, "MAX_VERDICTS", 3)
    subs = load_subscriptions(DOC)
    matcher = Matcher(subs)
    for number in range(10):
        ev = event(host=f"compute-1{number}", tenant_id="t1")
        assert matcher.matches(ev) == tuple(s.matches(ev) for s in subs)
    # Bounded: cleared when full, then filled again.
    assert 0 < len(matcher._matches) <= 3
    # A field missing: decided all the same, not remembered.
    remembered = dict(matcher._matches)
    partial = {"status": "POWER_OFF", "phase": "end", "vim_id": "cloud_one"}
    assert matcher.matches(partial) == tuple(s.matches(partial) for s in subs) == (True, True, False)
    assert matcher._matches == remembered


def test_patterns():
    assert Patterns.compile(None).matches("anything")
    assert Patterns.compile(["!A"]).matches("B") and not Patterns.compile(["!A"]).matches("A")
    p = Patterns.compile(["POWER_*", "!POWER_ON"])
    assert p.matches("POWER_OFF") and not p.matches("POWER_ON") and not p.matches("PAUSE")
    assert Patterns.compile(["a*"]).matches("abc") and not Patterns.compile(["a*"]).matches("ABC")


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            "subscriptions:\n  - name: x\n    sink: {type: kafka, topic: 'bad topic'}\n",
            ":3: subscriptions/0/sink/topic",
        ),
        ("subscriptions:\n  - name: x\n    sink: {type: mr, topic: t}\n", ":3: subscriptions/0/sink/type"),
        (
            "subscriptions:\n  - name: x\n    matc: {}\n    sink: {type: kafka, topic: t}\n",
            ":2: subscriptions/0",
        ),
        (
            "subscriptions:\n  - name: x\n    match:\n      phases: [middle]\n    sink: {type: kafka, topic: t}\n",
            ":4: subscriptions/0/match/phases/0",
        ),
        ("subscriptions: [\n", "not valid YAML"),
        ("- a\n", "(document)"),
    ],
)
def test_invalid_documents_name_line_and_field(text, expected):
    with pytest.raises(SubscriptionError) as info:
        load_subscriptions(text, "subs.yaml")
    assert expected in str(info.value)
    assert str(info.value).startswith("subs.yaml")


def test_every_problem_is_listed_in_document_order():
    text = (
        "subscriptions:\n"
        "  - name: first\n"
        "    sink: {type: kafka, topic: t, format: xml}\n"
        "  - name: second\n"
        "    sink: {type: kafka, topic: u}\n"
        "    match: {phases: [middle]}\n"
    )
    with pytest.raises(SubscriptionError) as info:
        load_subscriptions(text, "subs.yaml")
    problems = str(info.value).split("; ")
    assert len(problems) == 2, problems
    assert problems[0].startswith("subs.yaml:3: subscriptions/0/sink/format")
    assert problems[1].startswith("subs.yaml:6: subscriptions/1/match/phases/0")


def test_duplicate_names_and_empty_document():
    dup = "subscriptions:\n  - {name: a, sink: {type: kafka, topic: t}}\n  - {name: a, sink: {type: kafka, topic: u}}\n"
    with pytest.raises(SubscriptionError, match="unique: a"):
        load_subscriptions(dup)
    assert load_subscriptions("") == []


def test_the_shipped_example_is_valid():
    from pathlib import Path

    example = Path(__file__).resolve().parents[3] / "config" / "subscriptions.example.yaml"
    subs = load_subscriptions(example.read_text())
    spec = next(s for s in subs if s.name == "vm-status-closed-loop")
    for kind in ("DELETE", "PAUSE", "POWER_OFF", "REBUILD", "SHUT_DOWN", "SOFT_DELETE"):
        assert spec.matches(event(status=kind))
    assert not spec.matches(event(status="POWER_ON"))


def _one_subscription(match: str) -> str:
    return f"subscriptions:\n  - name: feed\n    match: {match}\n    sink: {{type: kafka, topic: t}}\n"


def test_a_misspelt_status_kind_is_an_error_suggesting_the_kind():
    with pytest.raises(SubscriptionError) as refused:
        load_subscriptions(_one_subscription("{events: [DELETE, DELEET]}"), "subs.yaml")
    message = str(refused.value)
    assert message.startswith("subs.yaml:3: subscriptions/0/match/events/1: 'DELEET' is not a status kind")
    assert "did you mean DELETE?" in message


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("POWR_*", "matches no status kind"),
        ("!UPDTE", "did you mean UPDATE?"),
        ("stuk", "did you mean STUCK?"),
    ],
)
def test_globs_and_exclusions_are_checked_against_the_kinds_too(pattern, expected):
    with pytest.raises(SubscriptionError, match=expected):
        load_subscriptions(_one_subscription(f'{{events: ["{pattern}"]}}'))


def test_every_kind_glob_and_exclusion_that_can_match_is_accepted():
    text = _one_subscription('{events: ["power_*", "!UPDATE", STUCK, "*", "LIVE_MIGRATION*", "delete"]}')
    assert load_subscriptions(text)[0].events.matches("POWER_OFF")


def test_a_vim_id_without_its_owner_is_an_error_and_a_glob_of_an_owner_a_warning(caplog):
    with pytest.raises(SubscriptionError) as refused:
        load_subscriptions(_one_subscription("{vims: [RegionOne]}"), "subs.yaml")
    assert "'RegionOne' is not a VIM id (a VIM id is {cloud-owner}_{cloud-region-id}" in str(refused.value)
    assert "did you mean '*_RegionOne'?" in str(refused.value)

    with caplog.at_level(logging.WARNING, logger="streams.subscriptions"):
        load_subscriptions(_one_subscription('{vims: ["RegionOne*"]}'), "subs.yaml")
    [warning] = [r.getMessage() for r in caplog.records]
    assert warning.startswith("subs.yaml:3: subscriptions/0/match/vims/0: 'RegionOne*' matches only VIM ids")
    assert "'*_RegionOne*'" in warning


def test_vim_ids_globs_and_exclusions_of_the_right_shape_pass_quietly(caplog):
    with caplog.at_level(logging.WARNING):
        subscriptions = load_subscriptions(
            _one_subscription('{vims: [CloudOwner_RegionOne, "cloud_*", "*_RegionTwo", "!*_lab", "*"]}')
        )
    assert subscriptions[0].vims.matches("CloudOwner_RegionOne")
    assert caplog.records == []


def test_an_exclusion_keeps_its_bang_in_the_suggestion():
    with pytest.raises(SubscriptionError, match=r"did you mean '!\*_lab'\?"):
        load_subscriptions(_one_subscription('{vims: ["!lab"]}'))
