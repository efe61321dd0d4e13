"""Statistics of an experiment: per-arm counters and latency percentiles, shadow agreement with the
most-disagreeing inputs, accuracy with confidence intervals and a two-proportion z-test."""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ALPHA = 0.05
Z95 = 1.959963984540054  # two-sided 95 %
_LATENCIES = 20_000  # most recent latencies kept per arm
_MAX_INPUT_BYTES = 64 * 1024  # larger inputs are not kept among the disagreements


def percentiles(values: Any, qs: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
    """``{"p50": ..., ...}`` with numpy's linear interpolation (NaN when there are no values)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return {f"p{q:g}": math.nan for q in qs}
    return {f"p{q:g}": float(v) for q, v in zip(qs, np.percentile(data, qs), strict=True)}


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion ((0, 1) when n is 0)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return (max(0.0, centre - half), min(1.0, centre + half))


def normal_interval(mean: float, std_error: float, z: float = Z95) -> tuple[float, float]:
    """Normal (Wald) interval ``mean ± z·se``."""
    return (mean - z * std_error, mean + z * std_error)


@dataclass(frozen=True)
class Comparison:
    """Accuracy of experimental minus production, its 95 % interval and a pooled two-proportion z-test."""

    difference: float
    interval: tuple[float, float]
    z: float
    p_value: float
    significant: bool

    @property
    def verdict(self) -> str:
        if math.isnan(self.p_value):
            return "not enough labels yet"
        if not self.significant:
            return f"not real yet (p = {self.p_value:.3g} >= {ALPHA})"
        better = "experimental" if self.difference > 0 else "production"
        return f"real: {better} is more accurate (p = {self.p_value:.3g})"


def two_proportion_test(s1: int, n1: int, s2: int, n2: int, alpha: float = ALPHA) -> Comparison:
    """Compare proportions s2/n2 - s1/n1: pooled z-test (two-sided p) and an unpooled normal interval."""
    if n1 == 0 or n2 == 0:
        return Comparison(math.nan, (math.nan, math.nan), math.nan, math.nan, False)
    p1, p2 = s1 / n1, s2 / n2
    pooled = (s1 + s2) / (n1 + n2)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se_pooled == 0:
        z, p_value = 0.0, 1.0
    else:
        z = (p2 - p1) / se_pooled
        p_value = math.erfc(abs(z) / math.sqrt(2))
    se = math.sqrt(p1 * (1 - p1) / n1 + p2 * (1 - p2) / n2)
    return Comparison(p2 - p1, normal_interval(p2 - p1, se), z, p_value, p_value < alpha)


@dataclass
class ArmStats:
    """Counters of one arm: requests, errors, recent latencies, labelled answers and correct ones."""

    count: int = 0
    errors: int = 0
    labelled: int = 0
    correct: int = 0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=_LATENCIES))

    def record(self, seconds: float, ok: bool, requests: int = 1) -> None:
        """One run of ``requests`` requests (a batched shadow run) taking ``seconds``."""
        self.count += requests
        self.errors += 0 if ok else requests
        self.latencies.append(seconds)

    def label(self, correct: int, total: int) -> None:
        self.correct += correct
        self.labelled += total

    def accuracy(self) -> tuple[float, tuple[float, float], int]:
        """Accuracy (NaN without labels), its Wilson interval and the number of labels."""
        rate = self.correct / self.labelled if self.labelled else math.nan
        return rate, wilson_interval(self.correct, self.labelled), self.labelled

    def summary(self) -> dict[str, Any]:
        accuracy, interval, _ = self.accuracy()
        ms = percentiles(np.asarray(self.latencies) * 1000)
        return {
            "count": self.count,
            "errors": self.errors,
            **{f"{k}_ms": v for k, v in ms.items()},
            "labelled": self.labelled,
            "accuracy": accuracy,
            "accuracy_ci": interval,
        }


def scores(output: np.ndarray) -> bool:
    """Whether an output holds class scores: a 2-D float array with more than one column."""
    return output.ndim == 2 and output.shape[1] > 1 and np.issubdtype(output.dtype, np.floating)


def predictions(output: np.ndarray) -> np.ndarray:
    """Per row: the top-1 class of class scores, else the values themselves."""
    return output.argmax(axis=1) if scores(output) else output.reshape(len(output), -1)


@dataclass(order=True)
class Disagreement:
    """One shadowed input row where the arms differ: ``score`` is 1 + |Δ| when top-1 differs, else |Δ|."""

    score: float
    seq: int
    input: np.ndarray | None = field(compare=False)
    production: np.ndarray = field(compare=False)
    experimental: np.ndarray = field(compare=False)


class Agreement:
    """Shadow pairs: top-1 agreement for class scores, mean absolute difference otherwise; keeps the
    ``keep`` rows that disagree most (a bounded min-heap)."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.rows = 0
        self.agreeing = 0  # rows with the same top-1 (class scores)
        self.abs_diff = 0.0  # sum over rows of the mean |Δ| (other outputs)
        self.classes = False
        self._heap: list[Disagreement] = []
        self._seq = itertools.count()

    def add(self, production: np.ndarray, experimental: np.ndarray, inputs: np.ndarray | None) -> None:
        """Compare the outputs of one shadowed request (rows = batch)."""
        if production.shape != experimental.shape:
            production = production.reshape(len(production), -1)
            experimental = np.zeros_like(production) + np.nan
        rows = len(production)
        a = production.reshape(rows, -1).astype(np.float64)
        b = experimental.reshape(rows, -1).astype(np.float64)
        diff = np.abs(a - b).mean(axis=1) if a.size else np.zeros(rows)
        diff = np.nan_to_num(diff, nan=np.inf)
        self.rows += rows
        if scores(production):
            self.classes = True
            same = a.argmax(axis=1) == b.argmax(axis=1)
            self.agreeing += int(same.sum())
            ranks = diff + (~same)
        else:
            self.abs_diff += float(np.minimum(diff, 1e300).sum())
            ranks = diff
        for i in np.argsort(ranks)[::-1][: self.keep]:
            if ranks[i] > 0:
                self._push(float(ranks[i]), _row(inputs, i, rows), a[i], b[i])

    def _push(self, rank: float, row: np.ndarray | None, a: np.ndarray, b: np.ndarray) -> None:
        item = Disagreement(rank, next(self._seq), row, a, b)
        if len(self._heap) < self.keep:
            heapq.heappush(self._heap, item)
        elif item.score > self._heap[0].score:
            heapq.heapreplace(self._heap, item)

    def worst(self) -> list[Disagreement]:
        """The most-disagreeing rows, worst first."""
        return sorted(self._heap, reverse=True)

    def summary(self) -> dict[str, Any]:
        if self.classes:
            rate = self.agreeing / self.rows if self.rows else math.nan
            return {
                "pairs": self.rows,
                "kind": "top-1 agreement",
                "agreement": rate,
                "agreement_ci": wilson_interval(self.agreeing, self.rows),
            }
        mean = self.abs_diff / self.rows if self.rows else math.nan
        return {"pairs": self.rows, "kind": "mean absolute difference", "mean_abs_diff": mean}


def _row(inputs: np.ndarray | None, i: int, rows: int) -> np.ndarray | None:
    if inputs is None or len(inputs) != rows:
        return None
    row = np.asarray(inputs[i])
    return row.copy() if row.nbytes <= _MAX_INPUT_BYTES else None
