"""The cyclic garbage collector, tuned once a long-running process has started.

Every batch allocates thousands of short-lived objects (Faust's events, oslo's message
contexts, decoded notifications). With CPython's default first threshold (700 allocations) a
batch triggers several young collections while it is still alive, which promotes its objects to
the older generations and makes full collections both frequent and long: measured in the stream
worker at 1,000 notifications/s, hundreds of young and dozens of middle collections a minute and
full ones of hundreds of milliseconds, each a pause for every notification in flight. A larger
first threshold lets a batch die young; freezing what start-up built (modules, clients, the
recovered table) leaves it out of every later full collection. Reference counting, which frees
almost everything here, is unaffected.
"""

from __future__ import annotations

import gc

# Allocations (net of deallocations) between young collections; then every 20 young ones a
# middle one, every 10 middle ones a full one (CPython also waits for the long-lived objects to
# grow by a quarter).
THRESHOLDS = (20_000, 20, 10)


def settle_after_start_up() -> None:
    """Collect what start-up left, freeze the rest out of later collections, raise the thresholds."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
