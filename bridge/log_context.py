"""Which VIM a log line is about, for a process serving several.

A thread doing one VIM's work (its connection attempts, its batches) says so with `bind_vim`;
the log handler's `VimFilter` then adds `vim` to every line that thread logs, so that the lines
of a hundred VIMs in one process can be told apart without each message naming its VIM.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

_VIM_OF_THREAD: dict[int, str] = {}


def bind_vim(vim: str) -> None:
    """The calling thread works for `vim` (until it ends or binds another)."""
    _VIM_OF_THREAD[threading.get_ident()] = vim


def unbind_vim() -> None:
    _VIM_OF_THREAD.pop(threading.get_ident(), None)


@contextlib.contextmanager
def vim_bound(vim: str) -> Iterator[None]:
    """The calling thread works for `vim` inside the block; its binding before is restored."""
    ident = threading.get_ident()
    before = _VIM_OF_THREAD.get(ident)
    _VIM_OF_THREAD[ident] = vim
    try:
        yield
    finally:
        if before is None:
            _VIM_OF_THREAD.pop(ident, None)
        else:
            _VIM_OF_THREAD[ident] = before


class VimFilter(logging.Filter):
    """Adds `vim` to a record logged by a thread bound to a VIM (JSON: a field; text: appended)."""

    def __init__(self, append_to_message: bool = False) -> None:
        super().__init__()
        self._append = append_to_message

    def filter(self, record: logging.LogRecord) -> bool:
        vim = _VIM_OF_THREAD.get(record.thread or 0)
        if vim is not None and not hasattr(record, "vim"):
            record.vim = vim
            if self._append:
                record.msg = f"[vim {vim}] {record.msg}"
        return True
