"""Checks for the private attributes of a library that a `*_internals` module relies on.

Each such module names what it uses and how to see that it is still there; these helpers run the
checks, so that a library upgrade that moves one is reported at start (and in a unit test) instead
of failing later."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


def has_source(owner: Callable[..., Any] | None, text: str) -> bool:
    """Whether `text` is in the source of `owner` (False when its source cannot be read, or when
    `owner` is None: an attribute the library no longer has)."""
    if owner is None:
        return False
    try:
        if inspect.isclass(owner):
            # inspect.getsource finds a class by parsing its module with ast, which CPython 3.11.7
            # can fail with a SystemError ("AST constructor recursion depth mismatch"); the
            # module's text holds the class's.
            path = inspect.getsourcefile(owner)
            return path is not None and text in Path(path).read_text(encoding="utf-8")
        return text in inspect.getsource(owner)
    except (OSError, TypeError, UnicodeDecodeError):
        return False


def missing(checks: Mapping[str, Callable[[], bool]]) -> list[str]:
    """The names of the checks that fail."""
    return [name for name, present in checks.items() if not present()]
