"""The VIMs file: which VIMs one `eventfed listen` or `eventfed poll` process serves.

The file (EVENTFED_VIMS_FILE) is YAML::

    defaults:            # optional: any per-VIM key, for every entry that omits it
      exchange: nova
    vims:
      - vim_id: CloudOwner_RegionOne
        mode: listen     # listen | poll | both
        transport_url_file: /etc/eventfed/vim-secrets/CloudOwner_RegionOne/transport-url
        pool: eventfed

The per-VIM keys are the listener's and the poller's setting names (lower case, without
EVENTFED_): LISTENER_KEYS and POLLER_KEYS. A secret (SECRET_KEYS) may be given as `<key>_file`,
a file holding it (a mounted Secret's key), read again at every reload. An entry's omitted keys
come from `defaults`, then from the process's own settings (environment and settings file), which
also hold everything shared by the process: Kafka, topics, batch sizes, the metrics port.

`eventfed listen` serves the entries in mode listen or both, `eventfed poll` those in poll or
both. Unknown keys, a duplicate or malformed vim_id, a secret file that cannot be read or a value
a setting refuses make the whole file invalid, with one line per problem naming the VIM and the
key: the process does not start on it, and a reload keeps the VIMs in force (VimsSource).
Without a VIMs file the environment's one VIM (EVENTFED_VIM_ID, ...) is the one-entry case.

Nothing here connects to anything: reading the file and its secret files is all the I/O.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import yaml
from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from bridge.settings import (
    ListenerSettings,
    PollerSettings,
    VimListenerSettings,
    VimPollerSettings,
)
from schemas.state import VIM_ID_PATTERN

LOG = logging.getLogger(__name__)

VIMS_RELOADS = Counter(
    "eventfed_vims_reloads_total",
    "Changes of the VIMs file: applied, or rejected (the VIMs in force kept)",
    ["outcome"],
)

Mode = Literal["listen", "poll", "both"]
MODES: tuple[Mode, ...] = ("listen", "poll", "both")

LISTENER_KEYS = frozenset(
    {
        "transport_url",
        "exchange",
        "topics",
        "pool",
        "durable_queues",
        "rabbit_ssl",
        "rabbit_ssl_ca_file",
        "rabbit_ssl_cert_file",
        "rabbit_ssl_key_file",
        "sample_exchange",
        "sample_topics",
    }
)
POLLER_KEYS = frozenset(
    {
        "nova_auth",
        "nova_endpoint",
        "nova_token",
        "os_auth_url",
        "os_username",
        "os_password",
        "os_project_name",
        "os_user_domain_name",
        "os_project_domain_name",
        "os_region_name",
        "os_interface",
        "os_cacert",
        "nova_api_version",
        "poll_interval",
        "poll_overlap_seconds",
        "poll_lookback_seconds",
        "poll_page_size",
    }
)
SECRET_KEYS = frozenset({"transport_url", "nova_token", "os_password"})
FILE_SUFFIX = "_file"
PER_VIM_KEYS = LISTENER_KEYS | POLLER_KEYS | {key + FILE_SUFFIX for key in SECRET_KEYS}
ENTRY_KEYS = PER_VIM_KEYS | {"vim_id", "mode"}
_VIM_ID = re.compile(VIM_ID_PATTERN)
_VIM_ID_MAX = 200


class VimsFileError(Exception):
    """The VIMs file cannot be used; `problems` has one line per problem, each naming the VIM and
    the key."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: " + "; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class VimEntry:
    """One VIM of the file: its mode and its per-VIM values, `defaults` applied and secret files
    read (a `<key>_file` becomes `<key>`)."""

    vim_id: str
    mode: Mode
    values: Mapping[str, Any] = field(default_factory=dict)

    @property
    def listens(self) -> bool:
        return self.mode in ("listen", "both")

    @property
    def polls(self) -> bool:
        return self.mode in ("poll", "both")


SecretReader = Callable[[Path], str]


def read_secret_file(path: Path) -> str:
    """A mounted Secret's key: its text, without the trailing newline an editor adds."""
    return path.read_text(encoding="utf-8").strip()


def parse_vims(document: Any, read_secret: SecretReader = read_secret_file) -> dict[str, VimEntry]:
    """The entries of a parsed VIMs file, by vim_id, in file order; VimsFileError naming every
    problem."""
    problems: list[str] = []
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise VimsFileError("VIMs file", ["must be a mapping with a `vims` list"])
    for key in sorted(set(map(str, document)) - {"defaults", "vims"}):
        problems.append(f"unknown key {key!r} (expected defaults, vims)")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.append("defaults: must be a mapping of per-VIM keys")
        defaults = {}
    for key in sorted(set(map(str, defaults)) - (PER_VIM_KEYS | {"mode"})):
        problems.append(f"defaults: unknown key {key!r}")
    listed = document.get("vims")
    if listed is None:
        listed = []
    if not isinstance(listed, list):
        problems.append("vims: must be a list of entries")
        listed = []
    entries: dict[str, VimEntry] = {}
    for position, raw in enumerate(listed, start=1):
        where = f"vims[{position}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a mapping with a vim_id")
            continue
        vim_id = raw.get("vim_id")
        if not isinstance(vim_id, str) or not _VIM_ID.fullmatch(vim_id) or len(vim_id) > _VIM_ID_MAX:
            problems.append(f"{where}: vim_id {vim_id!r} does not match {VIM_ID_PATTERN}")
            continue
        where = f"vim {vim_id}"
        if vim_id in entries:
            problems.append(f"{where}: listed twice")
            continue
        unknown = sorted(set(map(str, raw)) - ENTRY_KEYS)
        for key in unknown:
            problems.append(f"{where}: unknown key {key!r}")
        merged = {str(k): v for k, v in {**defaults, **raw}.items() if k != "vim_id"}
        mode = merged.pop("mode", "listen")
        if mode not in MODES:
            problems.append(f"{where}: mode {mode!r} is not one of {', '.join(MODES)}")
            continue
        values = {k: v for k, v in merged.items() if k in PER_VIM_KEYS}
        for secret in sorted(SECRET_KEYS):
            file_key = secret + FILE_SUFFIX
            if file_key not in values:
                continue
            # The entry's own key wins over a default of the other form.
            if secret in raw and file_key in raw:
                problems.append(f"{where}: both {secret} and {file_key} given")
                continue
            source = values.pop(file_key)
            if secret in raw:
                continue
            values.pop(secret, None)
            try:
                values[secret] = read_secret(Path(str(source)))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                problems.append(f"{where}: {file_key}: cannot read {source}: {reason}")
        if not unknown:
            entries[vim_id] = VimEntry(vim_id, mode, values)
    if problems:
        raise VimsFileError("VIMs file", problems)
    return entries


def read_vims_file(path: Path, read_secret: SecretReader = read_secret_file) -> dict[str, VimEntry]:
    """The entries of the VIMs file at `path`; VimsFileError naming the file and every problem."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        raise VimsFileError(str(path), [f"cannot read it: {reason}"]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VimsFileError(str(path), [f"not valid YAML: {exc}"]) from None
    try:
        return parse_vims(document, read_secret)
    except VimsFileError as exc:
        raise VimsFileError(str(path), exc.problems) from None


SettingsT = TypeVar("SettingsT", bound=BaseModel)


def _describe(vim_id: str, error: ValidationError) -> list[str]:
    problems = []
    for detail in error.errors():
        key = str(detail["loc"][0]) if detail["loc"] else ""
        message = detail["msg"]
        if detail["type"] == "missing":
            message = "is required (in the entry, in defaults or in the process's settings)"
        elif detail["type"] == "string_pattern_mismatch":
            message = f"does not match {detail.get('ctx', {}).get('pattern', '')}"
        problems.append(f"vim {vim_id}: {key} {message}" if key else f"vim {vim_id}: {message}")
    return problems


def _build(
    cls: type[SettingsT],
    process: BaseModel,
    entries: Mapping[str, VimEntry],
    keys: frozenset[str],
    wanted: Callable[[VimEntry], bool],
) -> dict[str, SettingsT]:
    # The process's values as given (SecretStr kept as such), then the entry's own. A value the
    # process does not have is left out, so that a VIM without it is told it is required.
    base = {
        name: value for name in type(process).model_fields if (value := getattr(process, name)) is not None
    }
    built: dict[str, SettingsT] = {}
    problems: list[str] = []
    for vim_id, entry in entries.items():
        if not wanted(entry):
            continue
        own = {key: value for key, value in entry.values.items() if key in keys}
        try:
            built[vim_id] = cls.model_validate({**base, **own, "vim_id": vim_id, "vims_file": None})
        except ValidationError as exc:
            problems.extend(_describe(vim_id, exc))
    if problems:
        raise VimsFileError("VIMs file", problems)
    return built


def listener_settings(
    process: ListenerSettings, entries: Mapping[str, VimEntry]
) -> dict[str, VimListenerSettings]:
    """Each listening VIM's settings: the process's, with its entry's."""
    return _build(VimListenerSettings, process, entries, LISTENER_KEYS, lambda e: e.listens)


def poller_settings(process: PollerSettings, entries: Mapping[str, VimEntry]) -> dict[str, VimPollerSettings]:
    """Each polling VIM's settings: the process's, with its entry's."""
    return _build(VimPollerSettings, process, entries, POLLER_KEYS, lambda e: e.polls)


def single_vim(process: BaseModel, cls: type[SettingsT]) -> SettingsT:
    """The environment's one VIM as one VIM's settings (the process's settings name it in full)."""
    return cls.model_validate({name: getattr(process, name) for name in type(process).model_fields})


T = TypeVar("T")


@dataclass(frozen=True)
class VimsChange:
    """What a new set of VIMs means for the running one: each list sorted by vim_id."""

    added: list[str]
    removed: list[str]
    changed: list[str]

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


def diff(running: Mapping[str, T], wanted: Mapping[str, T]) -> VimsChange:
    """Added, removed and changed VIMs (a changed VIM's settings differ in any value)."""
    return VimsChange(
        added=sorted(set(wanted) - set(running)),
        removed=sorted(set(running) - set(wanted)),
        changed=sorted(v for v in set(running) & set(wanted) if running[v] != wanted[v]),
    )


class VimsSource(Generic[SettingsT]):
    """The VIMs in force for a running process, read again from the file (and its secret files)
    every reload; `build` turns the entries into each VIM's settings.

    A new version that cannot be used is rejected as a whole, the VIMs in force are kept, and the
    problem is logged once (again only when it changes, or after a good version)."""

    def __init__(
        self,
        path: Path,
        build: Callable[[dict[str, VimEntry]], dict[str, SettingsT]],
        read_secret: SecretReader = read_secret_file,
    ) -> None:
        self.path = path
        self._build = build
        self._read_secret = read_secret
        self._last_problem = ""
        # Raises VimsFileError: a process does not start on a file it cannot use.
        self.current: dict[str, SettingsT] = build(read_vims_file(path, read_secret))

    def read_if_changed(self) -> dict[str, SettingsT] | None:
        """The new VIMs when they differ from those in force and are valid; else None."""
        try:
            wanted = self._build(read_vims_file(self.path, self._read_secret))
        except VimsFileError as exc:
            problem = str(exc)
            if problem != self._last_problem:
                self._last_problem = problem
                LOG.error(
                    "rejected the VIMs file, keeping the %d VIMs in force: %s", len(self.current), problem
                )
                VIMS_RELOADS.labels("rejected").inc()
            return None
        self._last_problem = ""
        if wanted == self.current:
            return None
        return wanted

    def apply(self, wanted: dict[str, SettingsT]) -> VimsChange:
        change = diff(self.current, wanted)
        self.current = wanted
        VIMS_RELOADS.labels("applied").inc()
        LOG.info(
            "VIMs file reloaded: %d VIMs; added %s; removed %s; changed %s",
            len(wanted),
            ", ".join(change.added) or "none",
            ", ".join(change.removed) or "none",
            ", ".join(change.changed) or "none",
        )
        return change


# Readiness names at most this many VIMs that are not working, then says how many more.
_NAMED_IN_READINESS = 20


def readiness_of(states: Mapping[str, tuple[bool, str]], doing: str) -> tuple[bool, str]:
    """A process's readiness from its VIMs' (working, why not): ready while any VIM works,
    naming those that do not (`doing`: what a working VIM does, "consuming" or "polling")."""
    if not states:
        return True, "the VIMs file lists no VIM for this process"
    idle = {vim: reason for vim, (working, reason) in sorted(states.items()) if not working}
    working = len(states) - len(idle)
    if not idle:
        return True, f"{doing}: all {len(states)} VIMs"
    named = "; ".join(f"{vim}: {reason}" for vim, reason in list(idle.items())[:_NAMED_IN_READINESS])
    more = len(idle) - _NAMED_IN_READINESS
    if more > 0:
        named += f"; and {more} more"
    return working > 0, f"{doing}: {working} of {len(states)} VIMs; not {doing}: {named}"
