"""The settings reference: complete, current, and what the README shows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bridge import settings, settings_reference
from bridge.cli import main

README = Path(__file__).resolve().parents[3] / "README.md"


def test_every_settings_class_names_its_command():
    assert set(settings.ALL_SETTINGS) == set(settings_reference.COMMANDS)


def test_every_setting_is_described_and_no_description_is_stale():
    documented = {row.env_name for row in settings_reference.rows()}
    for cls in settings.ALL_SETTINGS:
        assert settings.env_names(cls) - {settings.CONFIG_FILE_ENV} <= documented
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no description"


def test_the_readme_table_is_the_current_reference():
    text = README.read_text(encoding="utf-8")
    block = re.search(r"<!-- settings table: .*? -->\n(.*?)<!-- end of settings table -->", text, re.S)
    assert block, "README.md has no settings table"
    assert block.group(1) == settings_reference.markdown(), (
        "README's settings table is stale: run `eventfed settings --markdown`"
    )


def test_a_missing_description_is_an_error(monkeypatch):
    monkeypatch.setattr(settings.ListenerSettings.model_fields["pool"], "description", None)
    with pytest.raises(settings_reference.UndescribedSetting, match="pool"):
        settings_reference.rows()


def test_the_description_is_the_fields_own():
    # One source: a description changed on the field is what every listing shows.
    field = settings.StreamSettings.model_fields["max_batches_in_flight"]
    row = next(r for r in settings_reference.rows() if r.env_name == "EVENTFED_MAX_BATCHES_IN_FLIGHT")
    assert row.description == field.description
    assert f"EVENTFED_MAX_BATCHES_IN_FLIGHT (int; default 2)\n      {field.description}" in (
        settings_reference.command_help("stream")
    )


def test_a_setting_read_alike_by_several_commands_is_one_row():
    rows = [r for r in settings_reference.rows() if r.env_name == "EVENTFED_PACK_MAX"]
    assert [r.commands for r in rows] == ["listen, poll"]
    timeouts = {
        r.commands: r.description
        for r in settings_reference.rows()
        if r.env_name == "EVENTFED_DELIVERY_TIMEOUT"
    }
    assert set(timeouts) == {"listen, poll", "stream"}


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (settings.ListenerSettings.model_fields["topics"].annotation, "list (comma-separated)"),
        (settings.CommonSettings.model_fields["kafka_sasl_password"].annotation, "secret"),
        (settings.StreamSettings.model_fields["subscriptions_file"].annotation, "path"),
        (settings.CommonSettings.model_fields["log_format"].annotation, "json | text"),
    ],
)
def test_types_read_as_an_operator_writes_them(annotation, expected):
    assert settings_reference.describe_type(annotation) == expected


def test_the_command_prints_the_table(capsys):
    assert main(["settings", "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out == settings_reference.markdown()
    assert "`EVENTFED_TRANSPORT_URL` | listen | secret | - |" in out
    assert "`EVENTFED_VIMS_FILE` | listen, poll | path | - |" in out
    assert "| `EVENTFED_LOG_FORMAT` | all | json \\| text |" in out


def test_the_command_prints_plain_text_for_a_terminal(capsys):
    assert main(["settings"]) == 0
    out = capsys.readouterr().out
    assert "\\|" not in out and "`" not in out.split("\n")[0]
    assert "EVENTFED_TRANSPORT_URL (listen; secret; default -)\n    the cloud's RabbitMQ" in out
    assert "EVENTFED_LOG_FORMAT (all; json | text; default json)" in out
