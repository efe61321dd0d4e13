"""Plots of a LatencyReport (matplotlib, no pyplot: safe on any backend, nothing global).

Each function returns a ``matplotlib.figure.Figure``; ``fig.savefig("x.png")`` saves it and
:func:`png` gives its PNG bytes. ``previous`` (another report) overlays an earlier run.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from nbserve.latency.results import CaseResult, LatencyReport

_COLORS = {"rest": "#1f77b4", "grpc": "#ff7f0e", "inprocess": "#2ca02c"}
_ONE_SHOT = ("batch", "sequential", "concurrent")  # the modes that answer "how long for N rows?"


def _color(result: CaseResult) -> str:
    return _COLORS.get(result.case.transport, "#7f7f7f")


def _what(result: CaseResult) -> str:
    case = result.case
    return {
        "batch": f"1 batch of {case.batch_size}",
        "sequential": f"{case.requests} one-by-one",
        "concurrent": f"{case.requests} one-by-one, {case.clients} clients",
        "sweep": f"batches of {case.batch_size}",
    }[case.mode]


def _label(result: CaseResult) -> str:
    case = result.case
    tail = f", batching {case.batching}" if case.batching else ""
    return f"{case.transport}: {_what(result)}{tail}"


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def _empty(figure: Figure, text: str) -> Figure:
    ax = figure.add_subplot()
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    return figure


def _matching(results: list[CaseResult], previous: LatencyReport | None) -> list[CaseResult | None]:
    if previous is None:
        return [None] * len(results)
    by_label = {r.case.label: r for r in previous.cases}
    return [by_label.get(r.case.label) for r in results]


def totals(report: LatencyReport, previous: LatencyReport | None = None) -> Figure:
    """Wall time to get N rows answered, per mode and transport: the seed's "one batch of N vs N
    one-by-one", with the time per row written on each bar."""
    results = [r for r in report.cases if r.case.mode in _ONE_SHOT]
    figure = _figure(8, 0.5 + 0.45 * max(len(results), 2) * (2 if previous else 1))
    if not results:
        return _empty(figure, "no batch / sequential / concurrent case in this run")
    ax = figure.add_subplot()
    y = np.arange(len(results))
    height = 0.4 if previous else 0.8
    values = [r.total_s * 1000 for r in results]
    bars = ax.barh(y, values, height, color=[_color(r) for r in results], label="this run")
    for bar, result in zip(bars, results, strict=True):
        ax.annotate(
            f" {result.total_s * 1000:.1f} ms ({result.per_row_s * 1000:.3f} ms/row)",
            (bar.get_width(), bar.get_y() + bar.get_height() / 2), va="center", fontsize=8,
        )  # fmt: skip
    before = _matching(results, previous)
    if any(before):
        old = [b.total_s * 1000 if b else 0.0 for b in before]
        ax.barh(y + height, old, height, color="#bbbbbb", hatch="//", label="previous run")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_yticks(y + (height / 2 if previous else 0), [_label(r) for r in results], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("total time (ms)")
    ax.set_xlim(0, max(values + [b.total_s * 1000 for b in before if b]) * 1.45)
    ax.set_title(f"{report.meta.get('model')}: total time for N={report.meta.get('n')} rows")
    return figure


def distribution(report: LatencyReport, previous: LatencyReport | None = None) -> Figure:
    """Per-request latency per mode and transport as box plots (log scale); the previous run's
    matching cases in grey below each."""
    results = [r for r in report.cases if r.case.mode in _ONE_SHOT]
    before = _matching(results, previous)
    figure = _figure(8, 0.6 + 0.45 * max(len(results), 2) * (2 if any(before) else 1))
    if not results:
        return _empty(figure, "no batch / sequential / concurrent case in this run")
    ax = figure.add_subplot()
    step = 2 if any(before) else 1
    positions = np.arange(len(results)) * step
    _boxes(ax, [r.ok_latencies_s() * 1000 for r in results], positions, [_color(r) for r in results])
    if any(before):
        old = [(p + 1, b.ok_latencies_s() * 1000) for p, b in zip(positions, before, strict=True) if b]
        _boxes(ax, [data for _, data in old], [p for p, _ in old], ["#bbbbbb"] * len(old))
    ax.set_yticks(positions, [_label(r) for r in results], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("latency per request (ms, log scale)")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    ax.set_title("Latency per request" + (" (grey: previous run)" if any(before) else ""))
    return figure


def _boxes(ax: Any, data: list[np.ndarray], positions: Any, colors: list[str]) -> None:
    kept = [(d, p, c) for d, p, c in zip(data, positions, colors, strict=True) if len(d)]
    if not kept:
        return
    boxes = ax.boxplot(
        [d for d, _, _ in kept], positions=[p for _, p, _ in kept], orientation="horizontal", widths=0.7,
        patch_artist=True, flierprops={"markersize": 2}, medianprops={"color": "black"},
    )  # fmt: skip
    for patch, (_, _, color) in zip(boxes["boxes"], kept, strict=True):
        patch.set_facecolor(color)


def sweep(report: LatencyReport) -> Figure:
    """Latency per request (median, with the 90th percentile) and throughput against batch size."""
    groups = _groups(report, lambda r: r.case.mode == "sweep")
    figure = _figure(10, 4)
    if not groups:
        return _empty(figure, "no batch-size sweep in this run")
    latency_ax, throughput_ax = figure.subplots(1, 2)
    for (transport, batching), results in groups.items():
        results = sorted(results, key=lambda r: r.case.batch_size)
        sizes = [r.case.batch_size for r in results]
        color, style = _COLORS.get(transport, "#7f7f7f"), "--" if batching == "on" else "-"
        label = transport + (f", batching {batching}" if batching else "")
        p50 = [r.percentile_s(50) * 1000 for r in results]
        p90 = [r.percentile_s(90) * 1000 for r in results]
        latency_ax.plot(sizes, p50, style, marker="o", color=color, label=f"{label} p50")
        latency_ax.plot(sizes, p90, ":", marker=".", color=color, label=f"{label} p90")
        throughput_ax.plot(
            sizes, [r.rows_per_s for r in results], style, marker="o", color=color, label=label
        )
    for ax in (latency_ax, throughput_ax):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size (rows per request)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    latency_ax.set_ylabel("latency per request (ms)")
    throughput_ax.set_ylabel("throughput (rows/s)")
    latency_ax.set_title("Latency vs batch size")
    throughput_ax.set_title("Throughput vs batch size")
    return figure


def batching(report: LatencyReport) -> Figure:
    """Server batching off vs on: throughput and p99 latency per transport and mode (log scales)."""
    pairs = []
    for result in report.cases:
        case = result.case
        if case.batching == "off" and case.mode != "sweep":
            try:
                pairs.append((result, report.find(case.transport, case.mode, "on", case.batch_size)))
            except KeyError:
                continue
    figure = _figure(10, 0.8 + 0.5 * max(len(pairs), 2))
    if not pairs:
        return _empty(figure, "run with batching off and on to compare them")
    throughput_ax, p99_ax = figure.subplots(1, 2, sharey=True)
    y = np.arange(len(pairs))
    for ax, value, title in (
        (throughput_ax, lambda r: r.rows_per_s, "throughput (rows/s)"),
        (p99_ax, lambda r: r.percentile_s(99) * 1000, "p99 latency (ms)"),
    ):
        ax.barh(y - 0.2, [value(off) for off, _ in pairs], 0.4, color="#9e9e9e", label="batching off")
        ax.barh(y + 0.2, [value(on) for _, on in pairs], 0.4, color="#6a3d9a", label="batching on")
        ax.set_xscale("log")
        ax.set_xlabel(title + ", log scale")
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.set_title(title.split(" (")[0].capitalize() + ": batching off vs on")
    throughput_ax.set_yticks(y, [f"{off.case.transport}: {_what(off)}" for off, _ in pairs], fontsize=8)
    throughput_ax.invert_yaxis()
    p99_ax.legend(fontsize=7)
    return figure


def _groups(report: LatencyReport, keep: Callable[[CaseResult], bool]) -> dict[tuple[str, str | None], list]:
    groups: dict[tuple[str, str | None], list[CaseResult]] = {}
    for result in report.cases:
        if keep(result):
            groups.setdefault((result.case.transport, result.case.batching), []).append(result)
    return groups


def figures(report: LatencyReport, previous: LatencyReport | None = None) -> dict[str, Figure]:
    """The plots this report has data for: ``totals``, ``distribution``, ``sweep``, ``batching``."""
    modes = {r.case.mode for r in report.cases}
    settings = {r.case.batching for r in report.cases}
    found: dict[str, Figure] = {}
    if modes & set(_ONE_SHOT):
        found["totals"] = totals(report, previous)
        found["distribution"] = distribution(report, previous)
    if "sweep" in modes:
        found["sweep"] = sweep(report)
    if {"on", "off"} <= settings:
        found["batching"] = batching(report)
    return found


def png(figure: Figure, dpi: int = 100) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
