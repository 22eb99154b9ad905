"""VES eventIds: deterministic, and short enough for the consumers that store them.

Holmes keeps a raise's eventId in a VARCHAR(150) (holmes-engine-management's alarm table) and
drops an insert that does not fit, so an id longer than that would be an alarm ONAP never sees.
"""

from __future__ import annotations

import hashlib
from typing import Final

MAX_EVENT_ID: Final = 150


def bounded_event_id(vim_id: str, rest: str) -> str:
    """`{vim_id}/{rest}`, at most MAX_EVENT_ID characters: a VIM id too long for that is replaced
    by a digest of it, so the id stays deterministic (a replay writes the same one) and distinct."""
    event_id = f"{vim_id}/{rest}"
    if len(event_id) <= MAX_EVENT_ID:
        return event_id
    digest = hashlib.blake2b(vim_id.encode(), digest_size=12).hexdigest()
    return f"vim-{digest}/{rest}"[:MAX_EVENT_ID]
