"""Bounded per-queue batching statistics (counts plus a fixed-size reservoir for delay percentiles)."""

from __future__ import annotations

import math
import random
from typing import Any

RESERVOIR_SIZE = 1024


class QueueStats:
    """Counters for one batching queue. Not thread-safe: the scheduler updates it under its lock."""

    __slots__ = (
        "tasks",
        "batches",
        "rows",
        "padding_rows",
        "failed_batches",
        "failed_tasks",
        "rejected",
        "batch_sizes",
        "_delay_n",
        "_delay_sum",
        "_delay_max",
        "_reservoir",
        "_rng",
    )

    def __init__(self, rng: random.Random) -> None:
        self.tasks = self.batches = self.rows = self.padding_rows = 0
        self.failed_batches = self.failed_tasks = self.rejected = 0
        self.batch_sizes: dict[int, int] = {}
        self._delay_n = 0
        self._delay_sum = self._delay_max = 0.0
        self._reservoir: list[float] = []
        self._rng = rng

    def add_batch(self, executed: int, padding: int, delays: list[float]) -> None:
        self.batches += 1
        self.tasks += len(delays)
        self.rows += executed - padding
        self.padding_rows += padding
        self.batch_sizes[executed] = self.batch_sizes.get(executed, 0) + 1
        res = self._reservoir
        for d in delays:
            self._delay_n += 1
            self._delay_sum += d
            if d > self._delay_max:
                self._delay_max = d
            if len(res) < RESERVOIR_SIZE:
                res.append(d)
            else:  # Algorithm R: every delay seen so far is kept with equal probability.
                j = self._rng.randrange(self._delay_n)
                if j < RESERVOIR_SIZE:
                    res[j] = d

    def snapshot(self) -> dict[str, Any]:
        s = sorted(self._reservoir)
        n = self._delay_n

        def pct(p: float) -> float:
            return s[max(0, math.ceil(p * len(s)) - 1)] if s else 0.0

        return {
            "tasks": self.tasks,
            "batches": self.batches,
            "rows": self.rows,
            "padding_rows": self.padding_rows,
            "failed_batches": self.failed_batches,
            "failed_tasks": self.failed_tasks,
            "rejected": self.rejected,
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
            "queue_delay_s": {
                "count": n,
                "mean": self._delay_sum / n if n else 0.0,
                "p50": pct(0.50),
                "p99": pct(0.99),
                "max": self._delay_max,
            },
        }
