"""The VIMs file: entries, defaults, secret files, errors naming the VIM and the key, the diff
of two sets, and the reload that keeps the VIMs in force when a new version is bad."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from bridge.settings import ListenerSettings, PollerSettings, VimListenerSettings, load
from bridge.vims import (
    VimEntry,
    VimsFileError,
    VimsSource,
    diff,
    listener_settings,
    parse_vims,
    poller_settings,
    read_vims_file,
    readiness_of,
    single_vim,
)

pytestmark = pytest.mark.usefixtures("no_eventfed_env")


def no_secrets(path: Path) -> str:
    raise FileNotFoundError(2, "No such file or directory")


def listener_process(tmp_path: Path, **env: str) -> ListenerSettings:
    vims = tmp_path / "vims.yaml"
    if not vims.exists():
        vims.write_text("vims: []\n")
    return ListenerSettings(vims_file=vims, **env)  # type: ignore[arg-type]


def test_entries_take_defaults_then_their_own_keys():
    entries = parse_vims(
        {
            "defaults": {"exchange": "nova", "pool": "edge"},
            "vims": [
                {"vim_id": "owner_one", "transport_url": "rabbit://a/", "pool": "own"},
                {"vim_id": "owner_two", "mode": "both", "transport_url": "rabbit://b/"},
            ],
        }
    )
    assert list(entries) == ["owner_one", "owner_two"]
    assert entries["owner_one"] == VimEntry(
        "owner_one", "listen", {"exchange": "nova", "pool": "own", "transport_url": "rabbit://a/"}
    )
    assert entries["owner_two"].listens and entries["owner_two"].polls
    assert not entries["owner_one"].polls


def test_a_secret_comes_from_its_file_read_at_each_parse(tmp_path):
    secret = tmp_path / "url"
    secret.write_text("rabbit://u:p@h:5672/v\n")
    document = {"vims": [{"vim_id": "owner_one", "transport_url_file": str(secret)}]}
    assert parse_vims(document)["owner_one"].values == {"transport_url": "rabbit://u:p@h:5672/v"}
    secret.write_text("rabbit://u:rotated@h:5672/v")
    assert parse_vims(document)["owner_one"].values["transport_url"] == "rabbit://u:rotated@h:5672/v"


def test_an_entry_s_own_secret_wins_over_a_default_secret_file():
    entries = parse_vims(
        {
            "defaults": {"os_password_file": "/nowhere"},
            "vims": [{"vim_id": "owner_one", "mode": "poll", "os_password": "inline"}],
        },
        read_secret=no_secrets,
    )
    assert entries["owner_one"].values["os_password"] == "inline"


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        (
            {"vims": [{"vim_id": "owner_one", "transport_urll": "x"}]},
            "vim owner_one: unknown key 'transport_urll'",
        ),
        ({"vims": [{"vim_id": "owner/one"}]}, "vims[1]: vim_id 'owner/one' does not match"),
        ({"vims": [{"transport_url": "x"}]}, "vims[1]: vim_id None does not match"),
        ({"vims": [{"vim_id": "owner_one"}, {"vim_id": "owner_one"}]}, "vim owner_one: listed twice"),
        ({"vims": [{"vim_id": "owner_one", "mode": "watch"}]}, "vim owner_one: mode 'watch' is not one of"),
        (
            {"vims": [{"vim_id": "owner_one", "transport_url_file": "/run/secret"}]},
            "vim owner_one: transport_url_file: cannot read /run/secret: No such file or directory",
        ),
        (
            {"vims": [{"vim_id": "owner_one", "transport_url": "a", "transport_url_file": "/f"}]},
            "vim owner_one: both transport_url and transport_url_file given",
        ),
        (
            {"defaults": {"kafka_bootstrap_servers": "x"}, "vims": []},
            "defaults: unknown key 'kafka_bootstrap_servers'",
        ),
        ({"vim": []}, "unknown key 'vim'"),
        ({"vims": {"owner_one": {}}}, "vims: must be a list"),
        ({"vims": ["owner_one"]}, "vims[1]: must be a mapping"),
    ],
)
def test_every_problem_names_the_vim_and_the_key(document, problem):
    with pytest.raises(VimsFileError) as info:
        parse_vims(document, read_secret=no_secrets)
    assert any(p.startswith(problem) for p in info.value.problems), info.value.problems


def test_all_problems_are_reported_at_once():
    with pytest.raises(VimsFileError) as info:
        parse_vims({"vims": [{"vim_id": "owner_one", "x": 1}, {"vim_id": "owner_two", "y": 2}]})
    assert len(info.value.problems) == 2


def test_a_file_that_is_not_yaml_or_not_there_is_named(tmp_path):
    with pytest.raises(VimsFileError, match="cannot read it"):
        read_vims_file(tmp_path / "missing.yaml")
    bad = tmp_path / "vims.yaml"
    bad.write_text("vims: [\n")
    with pytest.raises(VimsFileError, match=f"{bad}: not valid YAML"):
        read_vims_file(bad)


def test_listener_settings_are_the_process_s_with_the_entry_s(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTFED_BATCH_SIZE", "77")
    monkeypatch.setenv("EVENTFED_EXCHANGE", "openstack")
    process = listener_process(tmp_path)
    entries = parse_vims(
        {
            "defaults": {"pool": "edge"},
            "vims": [
                {"vim_id": "owner_one", "transport_url": "rabbit://a/", "exchange": "nova"},
                {"vim_id": "owner_two", "transport_url": "rabbit://b/"},
                {"vim_id": "owner_three", "mode": "poll", "nova_auth": "token"},
            ],
        }
    )
    built = listener_settings(process, entries)
    assert list(built) == ["owner_one", "owner_two"]
    one, two = built["owner_one"], built["owner_two"]
    assert isinstance(one, VimListenerSettings)
    assert (one.vim_id, one.exchange, one.pool, one.batch_size) == ("owner_one", "nova", "edge", 77)
    assert (two.exchange, two.transport_url.get_secret_value()) == ("openstack", "rabbit://b/")
    assert one.vims_file is None


def test_a_value_a_setting_refuses_names_the_vim_and_key(tmp_path):
    process = listener_process(tmp_path)
    entries = parse_vims(
        {
            "vims": [
                {"vim_id": "owner_one", "transport_url": "rabbit://a/", "topics": []},
                {"vim_id": "owner_two"},
            ]
        }
    )
    with pytest.raises(VimsFileError) as info:
        listener_settings(process, entries)
    assert info.value.problems[0].startswith("vim owner_one: topics ")
    assert info.value.problems[1].startswith("vim owner_two: transport_url is required")


def test_poller_settings_check_each_vim_s_nova_credentials(tmp_path):
    vims = tmp_path / "vims.yaml"
    vims.write_text("vims: []\n")
    process = PollerSettings(vims_file=vims)
    entries = parse_vims(
        {
            "vims": [
                {
                    "vim_id": "owner_one",
                    "mode": "poll",
                    "nova_auth": "token",
                    "nova_endpoint": "http://n/v2.1",
                    "nova_token": "t",
                },
                {"vim_id": "owner_two", "mode": "both", "nova_auth": "token"},
                {"vim_id": "owner_three", "transport_url": "rabbit://x/"},
            ]
        }
    )
    with pytest.raises(VimsFileError) as info:
        poller_settings(process, entries)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("vim owner_two: EVENTFED_NOVA_ENDPOINT and EVENTFED_NOVA_TOKEN")
    del entries["owner_two"]
    built = poller_settings(process, entries)
    assert list(built) == ["owner_one"]
    assert built["owner_one"].nova_token is not None


def test_without_a_file_the_environment_names_the_one_vim(monkeypatch):
    monkeypatch.setenv("EVENTFED_TRANSPORT_URL", "rabbit://x/")
    monkeypatch.setenv("EVENTFED_VIM_ID", "owner_one")
    one = single_vim(load(ListenerSettings), VimListenerSettings)
    assert (one.vim_id, one.transport_url.get_secret_value()) == ("owner_one", "rabbit://x/")


def test_a_process_needs_a_vim_or_a_file(monkeypatch, tmp_path):
    from bridge.settings import SettingsError

    with pytest.raises(SettingsError, match=r"EVENTFED_TRANSPORT_URL is required .*EVENTFED_VIMS_FILE"):
        load(ListenerSettings)
    monkeypatch.setenv("EVENTFED_VIMS_FILE", str(tmp_path / "none.yaml"))
    with pytest.raises(SettingsError, match="EVENTFED_VIMS_FILE: no such file"):
        load(ListenerSettings)


vim_ids = st.from_regex(r"[a-z][a-z0-9]{0,5}_[a-z0-9]{1,5}", fullmatch=True)
sets = st.dictionaries(vim_ids, st.integers(0, 3), max_size=8)


@given(sets, sets)
def test_diff_turns_one_set_into_the_other(running, wanted):
    change = diff(running, wanted)
    result = {k: v for k, v in running.items() if k not in change.removed}
    for vim in change.added + change.changed:
        result[vim] = wanted[vim]
    assert result == wanted
    # Only what differs is touched.
    assert not set(change.changed) & {v for v in running if running[v] == wanted.get(v)}
    assert change.empty == (running == wanted)


@given(st.lists(vim_ids, unique=True, max_size=6), st.sampled_from(["listen", "poll", "both"]))
def test_a_written_file_reads_back_as_its_entries(names, mode):
    document = {"defaults": {"mode": mode}, "vims": [{"vim_id": n, "pool": f"p-{n}"} for n in names]}
    entries = parse_vims(yaml.safe_load(yaml.safe_dump(document)))
    assert list(entries) == names
    assert all(e.mode == mode and e.values == {"pool": f"p-{e.vim_id}"} for e in entries.values())


def test_a_bad_reload_keeps_the_vims_in_force_and_is_logged_once(tmp_path, caplog):
    path = tmp_path / "vims.yaml"
    path.write_text("vims: [{vim_id: owner_one, transport_url: 'rabbit://a/'}]\n")
    process = listener_process(tmp_path)
    source = VimsSource(path, lambda entries: listener_settings(process, entries))
    assert list(source.current) == ["owner_one"]
    assert source.read_if_changed() is None
    path.write_text("vims: [{vim_id: owner_one, transport_url: 'rabbit://a/', colour: blue}]\n")
    with caplog.at_level(logging.ERROR):
        assert source.read_if_changed() is None
        assert source.read_if_changed() is None
    assert [r.getMessage() for r in caplog.records].count(
        next(r.getMessage() for r in caplog.records if "colour" in r.getMessage())
    ) == 1
    assert list(source.current) == ["owner_one"]
    path.write_text(
        "vims: [{vim_id: owner_one, transport_url: 'rabbit://a/'}, {vim_id: owner_two, transport_url: 'rabbit://b/'}]\n"
    )
    wanted = source.read_if_changed()
    assert wanted is not None
    change = source.apply(wanted)
    assert (change.added, change.removed, change.changed) == (["owner_two"], [], [])
    assert list(source.current) == ["owner_one", "owner_two"]


def test_a_process_does_not_start_on_a_bad_file(tmp_path):
    path = tmp_path / "vims.yaml"
    path.write_text("vims: [{vim_id: owner_one}]\n")
    process = listener_process(tmp_path)
    with pytest.raises(VimsFileError, match="vim owner_one: transport_url is required"):
        VimsSource(path, lambda entries: listener_settings(process, entries))


def test_readiness_is_ready_while_any_vim_works_and_names_the_others():
    assert readiness_of({}, "consuming")[0] is True
    assert readiness_of({"a_1": (True, ""), "b_1": (True, "")}, "consuming") == (
        True,
        "consuming: all 2 VIMs",
    )
    ready, reason = readiness_of({"a_1": (True, ""), "b_1": (False, "login refused")}, "consuming")
    assert ready and reason == "consuming: 1 of 2 VIMs; not consuming: b_1: login refused"
    assert readiness_of({"b_1": (False, "down")}, "consuming")[0] is False
    many = {f"v_{i:03d}": (False, "down") for i in range(25)}
    assert readiness_of(many, "polling")[1].endswith("; and 5 more")


def test_the_example_file_builds_listener_and_poller_settings(tmp_path):
    from bridge.settings import files_elsewhere

    example = Path(__file__).resolve().parents[3] / "config" / "vims.example.yaml"
    entries = read_vims_file(example, read_secret=lambda path: f"rabbit://u:p@h:5672/{path.parent.name}")
    with files_elsewhere():
        listeners = listener_settings(listener_process(tmp_path), entries)
        pollers = poller_settings(PollerSettings(vims_file=example), entries)
    assert sorted(listeners) == ["CloudOwner_RegionOne", "CloudOwner_RegionThree", "CloudOwner_RegionTwo"]
    assert sorted(pollers) == ["CloudOwner_EdgeSite7", "CloudOwner_RegionThree"]
    assert listeners["CloudOwner_RegionTwo"].rabbit_ssl
