"""Bounded per-queue batching statistics (counts plus a fixed-size reservoir for delay percentiles)."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
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
        "batched_with",
        "last_batch",
        "_run_n",
        "_run_sum",
        "_run_max",
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
        self.batched_with: dict[int, int] = {}  # N -> requests that shared their batch with N others
        self.last_batch: dict[str, Any] | None = None
        self._run_n = 0
        self._run_sum = self._run_max = 0.0
        self._delay_n = 0
        self._delay_sum = self._delay_max = 0.0
        self._reservoir: list[float] = []
        self._rng = rng

    def add_batch(self, executed: int, padding: int, delays: Sequence[float]) -> None:
        self.batches += 1
        self.tasks += len(delays)
        self.rows += executed - padding
        self.padding_rows += padding
        self.batch_sizes[executed] = self.batch_sizes.get(executed, 0) + 1
        others = len(delays) - 1
        self.batched_with[others] = self.batched_with.get(others, 0) + len(delays)
        self.last_batch = {
            "batch_size": executed,
            "padding": padding,
            "batched_with": others,
            "max_queue_delay_s": max(delays),
        }
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

    def add_run(self, seconds: float, failed_tasks: int) -> None:
        self._run_n += 1
        self._run_sum += seconds
        self._run_max = max(self._run_max, seconds)
        if failed_tasks:
            self.failed_batches += 1
            self.failed_tasks += failed_tasks

    def snapshot(self) -> dict[str, Any]:
        s = sorted(self._reservoir)
        n = self._delay_n
        executed = self.rows + self.padding_rows

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
            "padding_waste": self.padding_rows / executed if executed else 0.0,
            "batch_sizes": dict(sorted(self.batch_sizes.items())),
            "batched_with": dict(sorted(self.batched_with.items())),
            "last_batch": None if self.last_batch is None else dict(self.last_batch),
            "run_s": {
                "count": self._run_n,
                "mean": self._run_sum / self._run_n if self._run_n else 0.0,
                "max": self._run_max,
            },
            "queue_delay_s": {
                "count": n,
                "mean": self._delay_sum / n if n else 0.0,
                "p50": pct(0.50),
                "p99": pct(0.99),
                "max": self._delay_max,
            },
        }
