"""The reference of every setting: name, commands, type, default and meaning.

Everything is read from the settings classes, the meaning from each field's ``description``, so
the reference cannot drift from the code: `eventfed settings` prints it, the services' ``--help``
lists their part of it, and the README's settings table is its Markdown form (a unit test holds
the README to it). A setting without a description is an error here, so none goes undocumented.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from bridge import settings

# The command each settings class configures; CommonSettings' fields are read by all of them.
COMMANDS: dict[type[settings.CommonSettings], str] = {
    settings.ListenerSettings: "listen",
    settings.StreamSettings: "stream",
    settings.ApiSettings: "api",
    settings.SimulateSettings: "simulate",
    settings.PollerSettings: "poll",
}


@dataclass(frozen=True)
class SettingRow:
    env_name: str
    commands: str
    type: str
    default: str
    description: str


def describe_type(annotation: Any) -> str:
    """A setting's type as an operator writes it."""
    origin = typing.get_origin(annotation)
    arguments = typing.get_args(annotation)
    if origin is typing.Annotated:
        return describe_type(arguments[0])
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in arguments if a is not type(None)]
        return " or ".join(describe_type(a) for a in kept)
    if origin is Literal:
        return " | ".join(str(a) for a in arguments)
    if origin is list:
        return "list (comma-separated)"
    if origin is dict:
        return "KEY=VALUE list (comma-separated)"
    if annotation is SecretStr:
        return "secret"
    if annotation is Path:
        return "path"
    return {bool: "bool", int: "int", float: "float", str: "string"}.get(annotation, str(annotation))


def describe_default(field: FieldInfo) -> str:
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None or value is PydanticUndefined:
        return "-"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    if isinstance(value, dict):
        return "see meaning"
    return str(value)


def _fields() -> Iterator[tuple[str, str, FieldInfo]]:
    """(command, name, field) for each setting, CommonSettings' once as command "all"."""
    common = settings.CommonSettings.model_fields
    for name, field in common.items():
        yield "all", name, field
    for cls in settings.ALL_SETTINGS:
        command = COMMANDS[cls]
        for name, field in cls.model_fields.items():
            if name not in common:
                yield command, name, field


class UndescribedSetting(Exception):
    """A setting whose field has no description: it would reach operators undocumented."""


def rows() -> list[SettingRow]:
    """One row per setting; a setting several commands read alike is one row naming them all."""
    merged: dict[tuple[str, str, str, str], list[str]] = {}
    for command, name, field in _fields():
        description = field.description
        if not description:
            raise UndescribedSetting(
                f"setting {name} ({command}) has no Field(description=...) in bridge/settings.py"
            )
        key = (name, describe_type(field.annotation), describe_default(field), description)
        merged.setdefault(key, []).append(command)
    return [
        SettingRow(settings.ENV_PREFIX + name.upper(), ", ".join(commands), kind, default, description)
        for (name, kind, default, description), commands in merged.items()
    ]


CONFIG_FILE_ROW = SettingRow(
    settings.CONFIG_FILE_ENV,
    "all",
    "path",
    "-",
    settings.CONFIG_FILE_DESCRIPTION,
)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """The README's table (`eventfed settings --markdown`)."""
    lines = [
        "| setting | used by | type | default | what it does |",
        "|---|---|---|---|---|",
    ]
    for row in [CONFIG_FILE_ROW, *rows()]:
        default = f"`{row.default}`" if row.default not in ("-", "required") else row.default
        lines.append(
            f"| `{row.env_name}` | {row.commands} | {_cell(row.type)} | {_cell(default)} | "
            f"{_cell(row.description)} |"
        )
    return "\n".join(lines) + "\n"


def _plain_row(row: SettingRow, with_commands: bool) -> str:
    facts = [row.commands] if with_commands else []
    facts.append(row.type)
    facts.append(row.default if row.default == "required" else f"default {row.default}")
    return f"{row.env_name} ({'; '.join(facts)})\n    {row.description}"


def plain_text() -> str:
    """Every setting for a person at a terminal: name, commands, type and default, then what it does."""
    return "\n".join(_plain_row(row, True) for row in [CONFIG_FILE_ROW, *rows()]) + "\n"


def command_help(command: str) -> str:
    """The settings one command reads, for its --help."""
    used = [row for row in rows() if row.commands == "all" or command in row.commands.split(", ")]
    lines = [
        "settings (environment variables, or the same names in lower case without EVENTFED_ in the "
        f"YAML file of {settings.CONFIG_FILE_ENV}; `eventfed settings` lists them all):",
    ]
    lines += ["  " + _plain_row(row, False).replace("\n    ", "\n      ") for row in [CONFIG_FILE_ROW, *used]]
    return "\n".join(lines)


def run(args: Any) -> int:
    print(markdown() if getattr(args, "markdown", False) else plain_text(), end="")
    return 0
