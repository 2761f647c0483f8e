"""Python's cyclic garbage collector, set for the long-running processes (workers, sink).

Why: with Python's defaults (a young collection every 700 net allocations), a worker in
a 2.5-minute benchmark spent 4.2 s collecting (2,599 young, 236 middle and 21 full
collections) and paused up to 232 ms in a full one, which lands straight in the latency
from produce to Redis. Almost nothing the pipeline allocates is cyclic garbage: batch
lists and dicts are freed by reference counting the moment a batch is done, so frequent
collections find little.

What: ``tune`` collects once and freezes what is alive then (modules, faust, the app,
pydantic models: never garbage, and never scanned again), and raises the first threshold
(``OMNI_GC_THRESHOLD``; 0 keeps Python's defaults). The same benchmark with a threshold of
50,000: 0.57 s of collections in all (docs/benchmarks.md). Each collection's pause is in
the ``omni_gc_pause_seconds`` histogram by generation, so an operator can see it.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from streams import metrics

_started = [0.0]


def _observe(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        metrics.GC_PAUSE_SECONDS.labels(str(info["generation"])).observe(
            time.perf_counter() - _started[0]
        )


def tune(threshold: int) -> None:
    """Freeze what is alive now and collect young objects every ``threshold`` net
    allocations (older generations every 10 collections of the one below)."""
    if _observe not in gc.callbacks:
        gc.callbacks.append(_observe)
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 10, 10)
