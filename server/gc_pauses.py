"""Pauses of Python's cyclic garbage collector, for /metrics and the benchmarks.

The collector stops the whole process while it runs: every socket, actor and timer waits. A
young-generation collection is short, but a full (generation 2) collection walks every tracked
object, and a contact center holds a few hundred per connected customer (its socket, session
actor and conversation state), so at 1,000 customers a full collection takes 0.1-0.4 s here
(docs/benchmarks.md). That is what a delivery latency tail is made of, so operators get it as
`kefu_gc_pause_seconds{generation}`.

`freeze_startup_heap` moves what exists once kefu is serving (modules, configuration, the
supervision tree) out of the collector's reach (`gc.freeze`): those objects live as long as the
process, so no collection ever needs to walk them again. A frozen object is still freed when
its last reference goes; only a reference cycle among frozen objects would never be collected,
and startup objects do not turn into such garbage. Objects made later are collected as usual.
"""

from __future__ import annotations

import gc
import time
from typing import Any

BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds of the pause histogram, seconds."""


class GcPauses:
    """Counts collections and their pauses by generation, from `gc.callbacks`."""

    def __init__(self) -> None:
        self.bucket_counts = [[0] * (len(BUCKETS) + 1) for _ in range(3)]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = min(int(info["generation"]), 2)
        counts = self.bucket_counts[generation]
        for index, bound in enumerate(BUCKETS):
            if pause <= bound:
                counts[index] += 1
                break
        else:
            counts[-1] += 1
        self.seconds[generation] += pause
        self.longest[generation] = max(self.longest[generation], pause)


_pauses: GcPauses | None = None


def gc_pauses() -> GcPauses:
    """The process's recorder, installed on first use (one per process: gc is process-wide)."""
    global _pauses
    if _pauses is None:
        _pauses = GcPauses()
        gc.callbacks.append(_pauses._callback)
    return _pauses


def freeze_startup_heap() -> int:
    """Collect once, then move every object that survived out of the collector's reach;
    answers how many objects are frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
