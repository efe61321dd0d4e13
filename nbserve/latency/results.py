"""Results of a latency run: per case, every request's latency and each round's wall time; summaries
(totals, per-row time, throughput, percentiles, answered / failed counts) as a text or HTML table,
CSV and JSON. No pandas."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

from nbserve.latency.plan import Case
from nbserve.tables import html_table, text_table

FORMAT_VERSION = 1
MAX_ERROR_SAMPLES = 5
SUMMARY_COLUMNS = (
    "case",
    "transport",
    "mode",
    "batching",
    "batch_size",
    "clients",
    "requests",
    "answered",
    "failed",
    "total_ms",
    "per_row_ms",
    "rows_per_s",
    "requests_per_s",
    "mean_ms",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "max_ms",
)


@dataclass
class CaseResult:
    """What one case measured over ``repeats`` rounds. ``latencies_s`` holds every timed request in the
    order sent (round after round); ``rounds_s`` each round's wall time, from the first request's start
    to the last answer. ``failed`` are indices into ``latencies_s`` of requests that got an error or a
    wrong number of rows; ``error_samples`` the first few distinct error texts."""

    case: Case
    latencies_s: list[float] = field(default_factory=list)
    rounds_s: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    error_samples: list[str] = field(default_factory=list)

    @property
    def sent(self) -> int:
        return len(self.latencies_s)

    @property
    def answered(self) -> int:
        """Requests answered with the right number of rows."""
        return self.sent - len(self.failed)

    @property
    def rows(self) -> int:
        """Rows sent per round."""
        return self.case.requests * self.case.batch_size

    @property
    def total_s(self) -> float:
        """Wall time of one round (the median round when repeated): the seed's "how long did it take"."""
        return float(np.median(self.rounds_s)) if self.rounds_s else float("nan")

    @property
    def per_row_s(self) -> float:
        return self.total_s / self.rows

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.total_s

    @property
    def requests_per_s(self) -> float:
        return self.case.requests / self.total_s

    def percentile_s(self, q: float) -> float:
        ok = self.ok_latencies_s()
        return float(np.percentile(ok, q)) if len(ok) else float("nan")

    def ok_latencies_s(self) -> np.ndarray:
        """Latencies of the answered requests."""
        latencies = np.asarray(self.latencies_s, dtype=float)
        if self.failed:
            latencies = np.delete(latencies, self.failed)
        return latencies

    def summary(self) -> dict[str, Any]:
        """One row of the summary table (times in ms)."""
        ok = self.ok_latencies_s() * 1000
        stat = (lambda f: float(f(ok))) if len(ok) else (lambda f: float("nan"))
        case = self.case
        return {
            "case": case.label,
            "transport": case.transport,
            "mode": case.mode,
            "batching": case.batching or "",
            "batch_size": case.batch_size,
            "clients": case.clients,
            "requests": self.sent,
            "answered": self.answered,
            "failed": len(self.failed),
            "total_ms": self.total_s * 1000,
            "per_row_ms": self.per_row_s * 1000,
            "rows_per_s": self.rows_per_s,
            "requests_per_s": self.requests_per_s,
            "mean_ms": stat(np.mean),
            "p50_ms": stat(lambda a: np.percentile(a, 50)),
            "p90_ms": stat(lambda a: np.percentile(a, 90)),
            "p99_ms": stat(lambda a: np.percentile(a, 99)),
            "max_ms": stat(np.max),
        }


@dataclass
class LatencyReport:
    """A latency run: ``meta`` (model, signature, N, repeats, CPUs, start time, ...) and one
    ``CaseResult`` per case. ``cancelled`` runs hold the cases finished before the cancel."""

    meta: dict[str, Any]
    cases: list[CaseResult] = field(default_factory=list)
    cancelled: bool = False

    @property
    def complete(self) -> bool:
        """Every case ran and every request was answered."""
        repeats = int(self.meta.get("repeats", 1))
        return not self.cancelled and all(
            c.answered == c.sent == c.case.requests * repeats for c in self.cases
        )

    def find(
        self, transport: str, mode: str, batching: str | None = None, batch_size: int | None = None
    ) -> CaseResult:
        """The case with these settings (``batching`` / ``batch_size`` None: any); KeyError if none."""
        for result in self.cases:
            c = result.case
            if (c.transport, c.mode) == (transport, mode) and batching in (None, c.batching):
                if batch_size is None or c.batch_size == batch_size:
                    return result
        raise KeyError(f"no case {transport} {mode} batching={batching} batch_size={batch_size}")

    def summaries(self) -> list[dict[str, Any]]:
        return [c.summary() for c in self.cases]

    def _table_rows(self) -> list[list[str]]:
        rows = []
        for s in self.summaries():
            rows.append(
                [
                    s["case"],
                    f"{s['answered']}/{s['requests']}",
                    str(s["failed"]),
                    f"{s['total_ms']:.2f}",
                    f"{s['per_row_ms']:.3f}",
                    f"{s['rows_per_s']:.0f}",
                    f"{s['p50_ms']:.2f}",
                    f"{s['p99_ms']:.2f}",
                ]
            )
        return rows

    _HEADER = ("case", "answered", "failed", "total ms", "ms/row", "rows/s", "p50 ms", "p99 ms")

    def caption(self) -> str:
        m = self.meta
        text = f"{m.get('model')}/{m.get('signature')}: N={m.get('n')}, {m.get('repeats', 1)} round(s)"
        return text + (" — cancelled" if self.cancelled else "")

    def table(self) -> str:
        """The summary as a text table."""
        return self.caption() + "\n" + text_table(self._HEADER, self._table_rows())

    def _repr_html_(self) -> str:
        return html_table(self._HEADER, self._table_rows(), caption=self.caption())

    def __str__(self) -> str:
        return self.table()

    def to_csv(self, path: str | os.PathLike[str], *, per_request: bool = False) -> str:
        """Write the summary (one line per case), or with ``per_request`` one line per request
        (case, round, index, latency_ms, ok); returns the path."""
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if not per_request:
                writer.writerow(SUMMARY_COLUMNS)
                writer.writerows([s[k] for k in SUMMARY_COLUMNS] for s in self.summaries())
                return os.fspath(path)
            writer.writerow(
                [
                    "case",
                    "transport",
                    "mode",
                    "batching",
                    "batch_size",
                    "clients",
                    "round",
                    "index",
                    "latency_ms",
                    "ok",
                ]
            )
            for result in self.cases:
                c, failed = result.case, set(result.failed)
                for i, latency in enumerate(result.latencies_s):
                    writer.writerow(
                        [
                            c.label,
                            c.transport,
                            c.mode,
                            c.batching or "",
                            c.batch_size,
                            c.clients,
                            i // c.requests,
                            i % c.requests,
                            latency * 1000,
                            i not in failed,
                        ]
                    )
        return os.fspath(path)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready: meta, and per case its settings, summary and raw latencies."""
        return {
            "format": "nbserve-latency",
            "version": FORMAT_VERSION,
            "meta": self.meta,
            "cancelled": self.cancelled,
            "cases": [{**asdict(r), "summary": r.summary()} for r in self.cases],
        }

    def to_json(self, path: str | os.PathLike[str]) -> str:
        """Write :meth:`to_dict` as JSON (NaN as null); returns the path."""
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(_finite(self.to_dict()), handle, indent=1)
        return os.fspath(path)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> LatencyReport:
        cases = [case_result_from_dict(entry) for entry in doc["cases"]]
        return cls(doc["meta"], cases, doc.get("cancelled", False))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> LatencyReport:
        with open(path, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle))


def case_result_from_dict(entry: dict[str, Any]) -> CaseResult:
    """A CaseResult from its ``asdict`` form (extra keys such as ``summary`` are ignored)."""
    names = {f.name for f in fields(CaseResult)} - {"case"}
    return CaseResult(Case(**entry["case"]), **{k: v for k, v in entry.items() if k in names})


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if np.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
