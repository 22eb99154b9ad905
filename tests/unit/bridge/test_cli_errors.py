"""Every CLI error path: one line on stderr, a non-zero exit, no traceback."""

from __future__ import annotations

import json
import logging
import time

import pytest

from bridge import kafka_error_internals
from bridge.cli import main
from bridge.settings import StreamSettings, load, unknown_env_names
from tests.support.processes import free_port


@pytest.fixture(autouse=True)
def clean_env(no_eventfed_env, monkeypatch):
    # Fail fast where a command would reach Kafka: nothing listens on this port.
    monkeypatch.setenv("EVENTFED_KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    yield
    logging.getLogger().handlers.clear()


def _one_error_line(err: str) -> dict:
    """A service's error: one JSON log record."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in err
    record = json.loads(lines[0])
    assert record["level"] == "ERROR"
    return record


def _one_plain_line(err: str, command: str = "topics") -> str:
    """An interactive command's error: one plain line that names the command, not a log record."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "Traceback" not in err
    assert lines[0].startswith(f"eventfed {command}: "), lines[0]
    assert not lines[0].startswith("{"), "a plain line, not JSON"
    return lines[0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        (b"\xff\xfe not text", "is not UTF-8 text"),
        (b"subscriptions: [", "not valid YAML"),
        (b"subscriptions:\n  - name: a\n", "sink"),
    ],
    ids=["missing", "binary", "bad-yaml", "invalid"],
)
def test_topics_with_a_bad_subscriptions_file_is_one_line(tmp_path, capsys, content, expected):
    path = tmp_path / "subscriptions.yaml"
    if content is not None:
        path.write_bytes(content)
    assert main(["topics", "--subscriptions-file", str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    message = _one_plain_line(captured.err)
    assert str(path) in message
    assert expected in message


@pytest.mark.parametrize(
    "argv",
    [["topics", "--partitions", "0"], ["simulate", "--vms", "-5"], ["simulate", "--vms", "many"]],
)
def test_counts_below_one_are_rejected_by_the_parser(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[1]}:" in err
    assert "Traceback" not in err


def test_simulate_against_an_unreachable_rabbitmq_fails_fast_with_one_line(capsys):
    url = f"rabbit://guest:guest@127.0.0.1:{free_port()}/region-one"
    assert main(["simulate", "--vim", f"demo_one={url}", "--vms", "2", "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "published" not in captured.out
    errors = [json.loads(line) for line in captured.err.splitlines() if '"ERROR"' in line]
    assert len(errors) == 1, captured.err
    assert "Traceback" not in captured.err
    assert "demo_one" in errors[0]["message"]
    assert "Connection refused" in errors[0]["message"]
    assert "guest:guest" not in captured.err


def test_simulate_rejects_a_malformed_vim_without_showing_its_password(capsys):
    assert main(["simulate", "--vim", "rabbit://nova:secret@host/", "--no-progress"]) == 2
    record = _one_error_line(capsys.readouterr().err)
    assert "VIM_ID=TRANSPORT_URL" in record["message"]
    assert "secret" not in record["message"]


def test_settings_errors_are_all_listed_in_one_line(monkeypatch, capsys):
    monkeypatch.setenv("EVENTFED_PARTITIONS", "0")
    monkeypatch.setenv("EVENTFED_LOG_LEVEL", "LOUD")
    monkeypatch.setenv("EVENTFED_WEB_PORT", "70000")
    assert main(["topics"]) == 2
    message = _one_plain_line(capsys.readouterr().err)
    for name in ("EVENTFED_PARTITIONS", "EVENTFED_LOG_LEVEL", "EVENTFED_WEB_PORT"):
        assert name in message
    assert "70000" not in message, "the input is not echoed"


def test_unknown_environment_variable_is_a_warning_naming_the_nearest(monkeypatch, caplog):
    monkeypatch.setenv("EVENTFED_PARTITONS", "4")
    monkeypatch.setenv("EVENTFED_ZZZ", "1")
    monkeypatch.setenv("EVENTFED_TEST_KAFKA", "127.0.0.1:9092")
    assert unknown_env_names() == {"EVENTFED_PARTITONS": "EVENTFED_PARTITIONS", "EVENTFED_ZZZ": None}
    with caplog.at_level(logging.WARNING):
        settings = load(StreamSettings)
    assert settings.partitions == 8, "the misspelt variable is ignored, not fatal"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        "ignoring unknown environment variable EVENTFED_PARTITONS; did you mean EVENTFED_PARTITIONS?"
        in warnings
    )
    assert "ignoring unknown environment variable EVENTFED_ZZZ" in warnings


def test_an_unexpected_failure_is_one_line_without_traceback(monkeypatch, capsys):
    import streams.topics_command

    def broken(_args):
        raise RuntimeError("the disk caught fire")

    monkeypatch.setattr(streams.topics_command, "run", broken)
    assert main(["topics"]) == 1
    assert (
        _one_plain_line(capsys.readouterr().err)
        == "eventfed topics: failed: RuntimeError: the disk caught fire"
    )


def test_simulate_publishes_everything_on_a_reachable_transport(capsys):
    assert main(["simulate", "--vim", "demo_one=fake:///", "--vms", "2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("published ")
    assert "for 2 VMs on 1 clouds" in captured.out
    assert '"ERROR"' not in captured.err


def test_a_notification_oslo_could_not_send_stops_the_publisher(monkeypatch):
    from bridge.simulator.simulate import CloudPublisher, RabbitUnreachable, plan

    # As if RabbitMQ went away after the start-up check: oslo.messaging logs the failure and
    # carries on; the publisher turns it into an error instead.
    monkeypatch.setattr(CloudPublisher, "_check_reachable", lambda *_args: None)
    publisher = CloudPublisher(f"rabbit://guest:guest@127.0.0.1:{free_port()}/", "demo_one")
    started = time.monotonic()
    try:
        with publisher, pytest.raises(RabbitUnreachable, match="cloud demo_one: could not publish"):
            publisher.publish(plan(1, 7, "legacy")[0])
    finally:
        publisher.close()
    assert time.monotonic() - started < 15, "one attempt, not a retry forever"


def test_unknown_key_in_the_settings_file_is_a_warning(monkeypatch, tmp_path, caplog):
    config = tmp_path / "eventfed.yaml"
    config.write_text("partitons: 4\nreplication_factor: 1\n")
    monkeypatch.setenv("EVENTFED_CONFIG_FILE", str(config))
    with caplog.at_level(logging.WARNING):
        settings = load(StreamSettings)
    assert settings.partitions == 8
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring unknown setting partitons in {config}; did you mean partitions?"
    ]


def test_topics_against_an_unreachable_kafka_is_one_line(monkeypatch, capsys):
    import bridge.topic_admin

    # The admin client's wait, shortened: what is tested is the error path, not the timeout.
    real_ensure = bridge.topic_admin.ensure_topics
    monkeypatch.setattr(
        "streams.topics_command.ensure_topics",
        lambda settings, specs: real_ensure(settings, specs, timeout=1.0),
    )
    assert main(["topics"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    message = _one_plain_line(captured.err)
    assert message.startswith("eventfed topics: Kafka at 127.0.0.1:"), message
    assert "KafkaError{" not in message


def test_stream_that_cannot_create_its_topics_is_one_line(monkeypatch, capsys):
    from confluent_kafka import KafkaError, KafkaException

    def unreachable(_settings, _specs):
        raise KafkaException(
            KafkaError(kafka_error_internals.TIMED_OUT, "Failed while waiting for controller")
        )

    monkeypatch.setattr("streams.app.ensure_topics", unreachable)
    # Shorter than the first retry's delay: one attempt, then the error.
    monkeypatch.setenv("EVENTFED_KAFKA_START_TIMEOUT", "0.5")
    assert main(["stream"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    message = _one_error_line(captured.err)["message"]
    assert message.startswith("cannot start: cannot create topics on 127.0.0.1:")
    assert "Failed while waiting for controller" in message


def test_stream_waits_for_a_kafka_that_answers_late(monkeypatch, caplog):
    from confluent_kafka import KafkaError, KafkaException

    from streams import app
    from streams.subscription_source import SubscriptionSource

    attempts: list[str] = []
    waits: list[float] = []
    seen_by_probe: list[str] = []
    health = app.StreamHealth()

    def late_kafka(_settings, specs):
        attempts.append(",".join(spec.name for spec in specs))
        if len(attempts) < 3:
            raise KafkaException(KafkaError(kafka_error_internals.TRANSPORT, "Connection refused"))
        return []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        seen_by_probe.append(health.observed[1])

    monkeypatch.setattr(app, "ensure_topics", late_kafka)
    monkeypatch.setattr(app.time, "sleep", sleep)
    settings = load(StreamSettings)
    with caplog.at_level(logging.WARNING):
        assert app.create_topics(settings, SubscriptionSource(settings.subscriptions_file), health)
    assert len(attempts) == 3 and len(waits) == 2
    assert waits[0] < waits[1]
    where = f"waiting for Kafka at {settings.kafka_bootstrap_servers}: Connection refused"
    assert seen_by_probe == [where, where]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("trying again in" in w for w in warnings), warnings


def test_services_keep_json_logs_and_interactive_commands_follow_an_explicit_format(monkeypatch, capsys):
    monkeypatch.setenv("EVENTFED_PARTITIONS", "0")
    assert main(["stream"]) == 2
    assert "EVENTFED_PARTITIONS" in _one_error_line(capsys.readouterr().err)["message"]
    monkeypatch.setenv("EVENTFED_LOG_FORMAT", "json")
    assert main(["topics"]) == 2
    assert _one_error_line(capsys.readouterr().err)["message"].startswith("eventfed topics: ")


@pytest.mark.parametrize("command", ["listen", "poll", "stream", "api"])
def test_a_service_s_help_names_its_settings(command, capsys):
    from bridge.settings_reference import rows

    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    own = [row for row in rows() if command in row.commands.split(", ")]
    assert own, command
    for row in own + [r for r in rows() if r.commands == "all"]:
        assert row.env_name in out, row.env_name
        assert row.description in out
    others = {
        "listen": "EVENTFED_API_PORT",
        "poll": "EVENTFED_TRANSPORT_URL",
        "stream": "EVENTFED_POLL_INTERVAL",
        "api": "EVENTFED_POOL",
    }
    assert others[command] not in out


def test_consume_against_an_unreachable_kafka_is_one_plain_line(capsys):
    assert main(["consume", "eventfed.vm.events", "--wait", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    message = _one_plain_line(captured.err, "consume")
    assert message.startswith("eventfed consume: Kafka at 127.0.0.1:")
    assert "KafkaError{" not in message
