from __future__ import annotations

import pytest

from bridge.cli import main
from bridge.settings import ApiSettings, ListenerSettings, SettingsError, StreamSettings, load, redact_url

pytestmark = pytest.mark.usefixtures("no_eventfed_env")


def test_listener_reads_environment(monkeypatch):
    monkeypatch.setenv("EVENTFED_TRANSPORT_URL", "rabbit://nova:s3cret@10.0.0.1:5672/")
    monkeypatch.setenv("EVENTFED_VIM_ID", "vmware_vio-1")
    monkeypatch.setenv("EVENTFED_TOPICS", "notifications, versioned_notifications")
    monkeypatch.setenv("EVENTFED_BATCH_SIZE", "250")
    settings = load(ListenerSettings)
    assert settings.vim_id == "vmware_vio-1"
    assert settings.topics == ["notifications", "versioned_notifications"]
    assert settings.batch_size == 250
    assert settings.transport_url.get_secret_value() == "rabbit://nova:s3cret@10.0.0.1:5672/"
    assert "s3cret" not in repr(settings)
    assert "s3cret" not in str(settings.model_dump())


def test_missing_required_setting_names_it(monkeypatch):
    monkeypatch.setenv("EVENTFED_TRANSPORT_URL", "rabbit://x")
    with pytest.raises(SettingsError, match="EVENTFED_VIM_ID is required"):
        load(ListenerSettings)


def test_bad_value_names_the_setting_and_hides_the_input(monkeypatch):
    monkeypatch.setenv("EVENTFED_PARTITIONS", "many")
    with pytest.raises(SettingsError) as info:
        load(StreamSettings)
    assert str(info.value).startswith("EVENTFED_PARTITIONS ")
    monkeypatch.setenv("EVENTFED_PARTITIONS", "4")
    monkeypatch.setenv("EVENTFED_API_PORT", "70000")
    with pytest.raises(SettingsError, match="EVENTFED_API_PORT"):
        load(ApiSettings)


def test_bad_vim_id_is_rejected(monkeypatch):
    monkeypatch.setenv("EVENTFED_TRANSPORT_URL", "rabbit://x")
    monkeypatch.setenv("EVENTFED_VIM_ID", "owner/region")
    with pytest.raises(SettingsError, match="EVENTFED_VIM_ID does not match"):
        load(ListenerSettings)


def test_sasl_needs_credentials(monkeypatch):
    monkeypatch.setenv("EVENTFED_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(SettingsError, match="EVENTFED_KAFKA_SASL_USERNAME"):
        load(ApiSettings)
    monkeypatch.setenv("EVENTFED_KAFKA_SASL_USERNAME", "eventfed-ku")
    monkeypatch.setenv("EVENTFED_KAFKA_SASL_PASSWORD", "hunter2")
    settings = load(ApiSettings)
    assert "hunter2" not in repr(settings)


def test_yaml_file_is_read_and_environment_wins(monkeypatch, tmp_path):
    config = tmp_path / "eventfed.yaml"
    config.write_text("partitions: 12\napp_id: from-file\n")
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(config))
    monkeypatch.setenv("EVENTFED_APP_ID", "from-env")
    settings = load(StreamSettings)
    assert settings.partitions == 12
    assert settings.app_id == "from-env"


def test_unreadable_or_invalid_yaml_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(tmp_path / "missing.yaml"))
    with pytest.raises(SettingsError, match="cannot read"):
        load(StreamSettings)
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(bad))
    with pytest.raises(SettingsError, match="mapping"):
        load(StreamSettings)


def test_redact_url():
    assert redact_url("rabbit://nova:s3cret@host:5672/") == "rabbit://nova:***@host:5672/"


def test_cli_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("eventfed ")
    assert main([]) == 2
    assert "listen" in capsys.readouterr().out


def test_settings_that_do_not_fit_together_are_rejected_when_the_model_is_built():
    from pydantic import ValidationError

    from bridge.settings import PollerSettings

    with pytest.raises(ValidationError) as info:
        PollerSettings(vim_id="owner_region", nova_auth="token")
    (error,) = info.value.errors()
    assert error["loc"] == ()
    assert (
        error["msg"]
        == "EVENTFED_NOVA_ENDPOINT and EVENTFED_NOVA_TOKEN are required when EVENTFED_NOVA_AUTH=token"
    )


def test_every_breach_is_in_one_line_for_the_operator(monkeypatch, tmp_path):
    from bridge.settings import PollerSettings

    monkeypatch.setenv("EVENTFED_VIM_ID", "owner_region")
    monkeypatch.setenv("EVENTFED_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("EVENTFED_OS_CACERT", str(tmp_path / "none.pem"))
    with pytest.raises(SettingsError) as info:
        load(PollerSettings)
    assert str(info.value) == (
        "EVENTFED_KAFKA_SASL_USERNAME and EVENTFED_KAFKA_SASL_PASSWORD are required when "
        "EVENTFED_KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT; "
        "EVENTFED_OS_AUTH_URL, EVENTFED_OS_USERNAME, EVENTFED_OS_PASSWORD, EVENTFED_OS_PROJECT_NAME "
        "required when EVENTFED_NOVA_AUTH=keystone; "
        f"EVENTFED_OS_CACERT: no such file {tmp_path / 'none.pem'}"
    )


def test_yaml_keys_in_any_case_lists_and_mappings(monkeypatch, tmp_path):
    config = tmp_path / "eventfed.yaml"
    config.write_text(
        "TRANSPORT_URL: rabbit://x\nvim_id: owner_region\ntopics: [a, b]\nBatch_Size: 7\n"
        "stuck_after: {DELETE: 5m}\n1: one\n"
    )
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(config))
    listener = load(ListenerSettings)
    assert (listener.vim_id, listener.topics, listener.batch_size) == ("owner_region", ["a", "b"], 7)
    assert listener.transport_url.get_secret_value() == "rabbit://x"
    assert load(StreamSettings).stuck_after["DELETE"] == 300.0


def test_a_bad_value_in_the_yaml_file_names_the_setting(monkeypatch, tmp_path):
    config = tmp_path / "eventfed.yaml"
    config.write_text("partitions: many\n")
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(config))
    with pytest.raises(SettingsError) as info:
        load(StreamSettings)
    assert str(info.value).startswith("EVENTFED_PARTITIONS ")
    assert "many" not in str(info.value)


def test_a_yaml_file_that_is_not_text_or_not_yaml_is_a_clear_error(monkeypatch, tmp_path):
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00 not text")
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(binary))
    with pytest.raises(SettingsError, match="is not UTF-8 text"):
        load(StreamSettings)
    broken = tmp_path / "broken.yaml"
    broken.write_text("partitions: [\n")
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(broken))
    with pytest.raises(SettingsError, match="is not valid YAML"):
        load(StreamSettings)
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(tmp_path))
    with pytest.raises(SettingsError, match=r"cannot read .*: not a file"):
        load(StreamSettings)


def test_settings_for_another_host_skip_only_the_checks_of_its_files(monkeypatch, tmp_path):
    from pydantic import ValidationError

    from bridge.settings import StreamSettings, files_elsewhere

    monkeypatch.setenv("EVENTFED_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("EVENTFED_KAFKA_SSL_CA_LOCATION", str(tmp_path / "mounted-in-the-pod.crt"))
    with pytest.raises(ValidationError, match="no such file"):
        StreamSettings()
    with files_elsewhere():
        assert StreamSettings().kafka_ssl_ca_location == tmp_path / "mounted-in-the-pod.crt"
        monkeypatch.setenv("EVENTFED_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
        with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
            StreamSettings()
    monkeypatch.setenv("EVENTFED_KAFKA_SECURITY_PROTOCOL", "SSL")
    with pytest.raises(ValidationError, match="no such file"):
        StreamSettings()
