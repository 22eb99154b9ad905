"""The cyclic garbage collector, tuned once a long-running process has started.

Both the listener and the stream worker collect what start-up left and freeze the rest (modules,
clients, the recovered table) out of every later full collection. Reference counting, which frees
almost everything here, is unaffected. The young generation is sized per process, by what each
leaves to the collector:

- The stream worker's garbage is acyclic, but every batch allocates thousands of short-lived
  objects (Faust's events, decoded notifications) that are alive while the batch is. With
  CPython's default first threshold (700 allocations) a batch triggers several young collections
  while it is still alive, which promotes its objects to the older generations and makes full
  collections both frequent and long: measured at 1,000 notifications/s, hundreds of young and
  dozens of middle collections a minute and full ones of hundreds of milliseconds, each a pause
  for every notification in flight. `WORKER_THRESHOLDS` lets a batch die young.
- The listener's is cyclic: for every message it receives, oslo.messaging's consume goes through
  kombu's `autoretry`, which builds a class and a dozen closures, about 36 objects in reference
  cycles that only the collector frees. With the worker's first threshold, a young collection came
  every 0.7 s at 1,000/s and freed 25,000 such objects in 25 to 64 ms, a pause for the whole batch
  in flight. CPython's default threshold frees them in collections of a few milliseconds, and the
  collector's total time was lower too (1.6-2.0% of a core against 3.1-4.9% in the same runs), so
  the listener keeps the default.
"""

from __future__ import annotations

import gc

# Allocations (net of deallocations) between young collections; then every 20 young ones a
# middle one, every 10 middle ones a full one (CPython also waits for the long-lived objects to
# grow by a quarter).
WORKER_THRESHOLDS = (20_000, 20, 10)


def settle_after_start_up(thresholds: tuple[int, int, int] | None = None) -> None:
    """Collect what start-up left and freeze the rest out of later collections; with
    `thresholds`, set the collector's thresholds (else they stay as they are)."""
    gc.collect()
    gc.freeze()
    if thresholds is not None:
        gc.set_threshold(*thresholds)
