"""The README's cloud-side instructions agree with what the listener expects by default."""

from __future__ import annotations

import re
from pathlib import Path

from bridge.settings import ListenerSettings

README = Path(__file__).resolve().parents[2] / "README.md"


def _cloud_side() -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index("## The cloud side: Nova and RabbitMQ")
    return text[start : text.index("\n## ", start + 1)]


def test_nova_is_told_to_publish_what_the_listener_reads():
    section = _cloud_side()
    ini = re.search(r"```ini\n(.*?)```", section, re.S)
    assert ini, "the nova.conf block"
    settings = dict(re.findall(r"^(\w+) = (\S+)", ini.group(1), re.M))
    assert settings["driver"] == "messagingv2"
    assert settings["notify_on_state_change"] == "vm_and_task_state"
    assert settings["notification_format"] in ("both", "versioned", "unversioned")


def test_the_listener_s_defaults_are_the_ones_the_readme_names():
    section = _cloud_side()
    fields = ListenerSettings.model_fields
    assert f"exchange `{fields['exchange'].default}`" in section
    assert f"topics `{','.join(fields['topics'].default_factory())}`" in section  # type: ignore[misc]
    assert f"`EVENTFED_POOL`, default\n`{fields['pool'].default}`" in section
    rights = re.search(r"set_permissions -p / eventfed '([^']+)' '([^']+)' '([^']+)'", section)
    assert rights and fields["pool"].default in rights.group(2)
    assert fields["exchange"].default in rights.group(1) and fields["exchange"].default in rights.group(3)
