"""A process serving several VIMs: a thread bound to a VIM names it on every line it logs."""

from __future__ import annotations

import logging
import threading

from bridge.log_context import VimFilter, bind_vim, unbind_vim, vim_bound


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("test", logging.INFO, __file__, 1, message, None, None)


def test_a_bound_thread_s_lines_carry_its_vim_and_others_do_not():
    json_filter, text_filter = VimFilter(), VimFilter(append_to_message=True)
    seen: dict[str, object] = {}

    def work() -> None:
        bind_vim("owner_one")
        try:
            record = _record("batch written")
            json_filter.filter(record)
            seen["json"] = getattr(record, "vim", None)
            record = _record("batch written")
            text_filter.filter(record)
            seen["text"] = record.getMessage()
        finally:
            unbind_vim()

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert seen == {"json": "owner_one", "text": "[vim owner_one] batch written"}
    unbound = _record("elsewhere")
    json_filter.filter(unbound)
    assert not hasattr(unbound, "vim")


def test_a_binding_for_a_block_restores_the_one_before():
    with vim_bound("owner_one"):
        with vim_bound("owner_two"):
            record = _record("x")
            VimFilter().filter(record)
            assert record.vim == "owner_two"  # type: ignore[attr-defined]
        record = _record("x")
        VimFilter().filter(record)
        assert record.vim == "owner_one"  # type: ignore[attr-defined]
    record = _record("x")
    VimFilter().filter(record)
    assert not hasattr(record, "vim")
