"""Subscriptions: who receives which VM status events, and where. Pure: parse, validate, match.

A subscription matches an event when every list in its `match` section matches (a missing or
empty list matches anything). Patterns are globs. `events` follows Ceilometer's pipeline rules:
`!KIND` excludes; with only exclusions, everything else is included. Phases default to end and
error, since a `start` only says that Nova began an action.
"""

from __future__ import annotations

import difflib
import fnmatch
import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from operator import itemgetter
from typing import Any, Final, Literal

import jsonschema
import yaml

from schemas.state import VIM_ID_PATTERN
from schemas.vocabulary import KINDS, polled_kinds
from streams.stuck import STUCK_STATUS

LOG = logging.getLogger(__name__)

DEFAULT_PHASES = frozenset({"end", "error"})
# The sink format of measurement feeds (streams.ves_measurement).
MEASUREMENT_FORMAT: Final = "ves-measurement"
# The VES domains a ves feed may carry (streams.ves): the alarms, and one stateChange per event.
VES_DOMAINS: Final = frozenset({"fault", "stateChange"})

# Every status kind an event can carry: a feed filtering on anything else stays empty for ever.
STATUS_KINDS: Final = frozenset(KINDS | polled_kinds() | {STUCK_STATUS})
_GLOB = re.compile(r"[*?\[]")
_VIM_ID = re.compile(VIM_ID_PATTERN)


class SubscriptionError(ValueError):
    """The subscriptions document is invalid; the message names the line and the field."""


@dataclass(frozen=True)
class Patterns:
    """A compiled list of globs with optional `!` exclusions; empty matches everything."""

    include: re.Pattern[str] | None = None
    exclude: re.Pattern[str] | None = None
    case_insensitive: bool = False

    @property
    def matches_all(self) -> bool:
        return self.include is None and self.exclude is None

    @classmethod
    def compile(cls, patterns: Sequence[str] | None, case_insensitive: bool = False) -> Patterns:
        if not patterns:
            return cls()
        flags = re.IGNORECASE if case_insensitive else 0
        include = [fnmatch.translate(p) for p in patterns if not p.startswith("!")]
        exclude = [fnmatch.translate(p[1:]) for p in patterns if p.startswith("!")]
        return cls(
            re.compile("|".join(include), flags) if include else None,
            re.compile("|".join(exclude), flags) if exclude else None,
            case_insensitive,
        )

    def matches(self, value: str | None) -> bool:
        if self.include is None and self.exclude is None:
            return True
        text = value or ""
        if self.exclude is not None and self.exclude.match(text):
            return False
        return self.include is None or bool(self.include.match(text))


@dataclass(frozen=True)
class Sink:
    type: Literal["kafka"]
    topic: str
    format: Literal["json", "avro", "ves", "ves-measurement"] = "json"
    # ves format: commonEventHeader.reportingEntityName; None means the event's VIM id.
    ves_reporting_entity: str | None = None
    # ves format: the VES domains the feed carries, and the rule that makes a VM failure.
    ves_domains: frozenset[str] = VES_DOMAINS
    ves_failure_statuses: str = "default"

    @property
    def encoding(self) -> str:
        """What the sink's records are encoded as: its format, and the options that change it."""
        if self.format == "ves":
            return f"ves:{self.ves_failure_statuses}:{self.ves_reporting_entity or ''}"
        return self.format

    @property
    def is_measurement(self) -> bool:
        """Whether the feed carries measurement events (per VM and per VIM), not events."""
        return self.format == MEASUREMENT_FORMAT


@dataclass(frozen=True)
class Subscription:
    name: str
    sink: Sink
    vims: Patterns = field(default_factory=Patterns)
    events: Patterns = field(default_factory=Patterns)
    phases: frozenset[str] = DEFAULT_PHASES
    states: Patterns = field(default_factory=Patterns)
    tenants: Patterns = field(default_factory=Patterns)
    hosts: Patterns = field(default_factory=Patterns)
    # ves-measurement feeds: the Ceilometer meters carried.
    meters: Patterns = field(default_factory=Patterns)

    def matches(self, event: Mapping[str, Any]) -> bool:
        return (
            (event.get("phase") or "none") in self.phases
            and self.events.matches(event.get("status"))
            and self.states.matches(event.get("state"))
            and self.watches(event)
        )

    def watches(self, event: Mapping[str, Any]) -> bool:
        """Whether the event's VM is in this subscription's scope: its VIM, tenant and host."""
        return (
            self.vims.matches(event.get("vim_id"))
            and self.tenants.matches(event.get("tenant_id"))
            and self.hosts.matches(event.get("host"))
        )


def matching(subscriptions: Sequence[Subscription], event: Mapping[str, Any]) -> list[Subscription]:
    return [s for s in subscriptions if s.matches(event)]


# A cache of verdicts is cleared when it holds this many: a bound, should the fields filtered on
# take many values (a filter on tenants, in a cloud of thousands of them).
MAX_VERDICTS: Final = 4096

Verdicts = tuple[bool, ...]


class Matcher:
    """What every subscription decides for an event, `matches` and `watches`, one bool each, in
    the subscriptions' order; the same as asking each, for many events at less cost.

    A verdict depends only on the event fields the subscriptions filter on, and those take few
    values (phases, status kinds, a few VIMs): the verdicts of all the subscriptions are
    remembered by those fields' values, so most events are decided by one dict lookup instead of
    a pass of regular expressions per subscription.
    """

    def __init__(self, subscriptions: Sequence[Subscription]) -> None:
        self.subscriptions = tuple(subscriptions)
        watched = [
            name
            for name, filtered in (
                ("vim_id", any(not s.vims.matches_all for s in self.subscriptions)),
                ("tenant_id", any(not s.tenants.matches_all for s in self.subscriptions)),
                ("host", any(not s.hosts.matches_all for s in self.subscriptions)),
            )
            if filtered
        ]
        # The phase always counts: every subscription has phases (by default end and error).
        matched = ["phase"]
        if any(not s.events.matches_all for s in self.subscriptions):
            matched.append("status")
        if any(not s.states.matches_all for s in self.subscriptions):
            matched.append("state")
        self._match_key = _key_of(matched + watched)
        self._watch_key = _key_of(watched)
        self._matches: dict[Any, Verdicts] = {}
        self._watches: dict[Any, Verdicts] = {}

    def matches(self, event: Mapping[str, Any]) -> Verdicts:
        """Subscription.matches of each subscription."""
        return _verdicts(self.subscriptions, event, self._match_key, self._matches, Subscription.matches)

    def watches(self, event: Mapping[str, Any]) -> Verdicts:
        """Subscription.watches of each subscription."""
        return _verdicts(self.subscriptions, event, self._watch_key, self._watches, Subscription.watches)


def _key_of(names: Sequence[str]) -> Callable[[Mapping[str, Any]], Any]:
    if not names:
        return lambda event: ()
    # One name: the value itself is the key (itemgetter of one name returns no tuple).
    return itemgetter(*names)


def _verdicts(
    subscriptions: tuple[Subscription, ...],
    event: Mapping[str, Any],
    key_of: Callable[[Mapping[str, Any]], Any],
    cache: dict[Any, Verdicts],
    decide: Callable[[Subscription, Mapping[str, Any]], bool],
) -> Verdicts:
    try:
        key = key_of(event)
        found = cache.get(key)
    except (KeyError, TypeError):
        # A field absent or unhashable (not from normalise): decided without the cache.
        return tuple(decide(s, event) for s in subscriptions)
    if found is None:
        found = tuple(decide(s, event) for s in subscriptions)
        if len(cache) >= MAX_VERDICTS:
            cache.clear()
        cache[key] = found
    return found


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(resources.files("schemas").joinpath("subscriptions.schema.json").read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    return validator_cls(schema)


def _line_of(node: yaml.Node | None, path: Sequence[Any]) -> int | None:
    """The 1-based line of the YAML node at a JSON path, as close as the document allows."""
    line = node.start_mark.line + 1 if node is not None else None
    for step in path:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == step:
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            node = node.value[step]
        else:
            return line
        line = node.start_mark.line + 1
    return line


def load_subscriptions(text: str, source: str = "<subscriptions>") -> list[Subscription]:
    """Parse and validate a subscriptions YAML document."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise SubscriptionError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if document is None:
        document = {"subscriptions": []}
    problems = [_describe(error, node, source) for error in _validator().iter_errors(document)]
    if not problems:
        problems = _vocabulary_problems(document, node, source)
    if problems:
        # Every problem at once, in document order: an operator fixes the file in one go.
        raise SubscriptionError("; ".join(text for _, text in sorted(problems)))
    subscriptions = [_build(item) for item in document["subscriptions"]]
    names = [s.name for s in subscriptions]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SubscriptionError(f"{source}: subscription names must be unique: {', '.join(duplicates)}")
    return subscriptions


def _describe(error: jsonschema.ValidationError, node: yaml.Node | None, source: str) -> tuple[int, str]:
    """One validation problem as `file:line: field: message`, with its line to sort by."""
    path = list(error.absolute_path)
    field_name = "/".join(str(p) for p in path) or "(document)"
    line = _line_of(node, path)
    where = f"{source}:{line}" if line else source
    return (line or 0, f"{where}: {field_name}: {error.message}")


def _vocabulary_problems(
    document: Mapping[str, Any], node: yaml.Node | None, source: str
) -> list[tuple[int, str]]:
    """Patterns the schema lets through that no event can match: a status kind that does not
    exist, a VIM id without its `{cloud-owner}_{cloud-region-id}` shape (errors), and a VIM glob
    that can match only a cloud-owner (a warning: `CloudOwner*` may be meant, `RegionOne*` rarely)."""
    problems: list[tuple[int, str]] = []
    for index, item in enumerate(document["subscriptions"]):
        match = item.get("match") or {}
        for field_name, check in (("events", _status_kind_problem), ("vims", _vim_problem)):
            for position, pattern in enumerate(match.get(field_name) or []):
                found = check(pattern)
                if found is None:
                    continue
                is_error, message = found
                path = ["subscriptions", index, "match", field_name, position]
                line = _line_of(node, path)
                text = f"{source}:{line}: {'/'.join(str(p) for p in path)}: {message}"
                if is_error:
                    problems.append((line or 0, text))
                else:
                    LOG.warning("%s", text)
    return problems


def _status_kind_problem(pattern: str) -> tuple[bool, str] | None:
    body = pattern.removeprefix("!")
    if _GLOB.search(body):
        if any(fnmatch.fnmatchcase(kind, body.upper()) for kind in STATUS_KINDS):
            return None
        return True, f"{pattern!r} matches no status kind ({_kinds_hint(body)})"
    if body.upper() in STATUS_KINDS:
        return None
    return True, f"{pattern!r} is not a status kind ({_kinds_hint(body)})"


def _kinds_hint(text: str) -> str:
    close = difflib.get_close_matches(_GLOB.sub("", text).upper(), sorted(STATUS_KINDS), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?"
    return "the kinds are " + ", ".join(sorted(STATUS_KINDS))


def _vim_problem(pattern: str) -> tuple[bool, str] | None:
    body = pattern.removeprefix("!")
    bang = pattern[: len(pattern) - len(body)]
    shape = "a VIM id is {cloud-owner}_{cloud-region-id}, e.g. CloudOwner_RegionOne"
    if not _GLOB.search(body):
        if _VIM_ID.match(body):
            return None
        hint = f"; did you mean '{bang}*_{body}'?" if "_" not in body else ""
        return True, f"{pattern!r} is not a VIM id ({shape}){hint}"
    if "_" in body or body.startswith(("*", "?")):
        return None
    return False, (
        f"{pattern!r} matches only VIM ids whose cloud-owner starts with {_GLOB.split(body)[0]!r} "
        f"({shape}); for a region write '{bang}*_{body}', for a cloud-owner '{bang}{body}_*'"
    )


def _build(item: Mapping[str, Any]) -> Subscription:
    match = item.get("match") or {}
    sink = item["sink"]
    ves_options = sink.get("ves") or {}
    return Subscription(
        name=item["name"],
        sink=Sink(
            type=sink["type"],
            topic=sink["topic"],
            format=sink.get("format", "json"),
            ves_reporting_entity=ves_options.get("reporting_entity_name"),
            ves_domains=frozenset(ves_options.get("domains") or VES_DOMAINS),
            ves_failure_statuses=ves_options.get("failure_statuses", "default"),
        ),
        vims=Patterns.compile(match.get("vims")),
        events=Patterns.compile(match.get("events"), case_insensitive=True),
        phases=frozenset(match["phases"]) if match.get("phases") else DEFAULT_PHASES,
        states=Patterns.compile(match.get("states"), case_insensitive=True),
        tenants=Patterns.compile(match.get("tenants")),
        hosts=Patterns.compile(match.get("hosts")),
        meters=Patterns.compile(match.get("meters")),
    )
