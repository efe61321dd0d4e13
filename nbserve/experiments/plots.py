"""Figures of an experiment (matplotlib, no pyplot): latency per arm, agreement / accuracy over time,
and image thumbnails of the most-disagreeing inputs."""

from __future__ import annotations

import io
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure

from nbserve.experiments.router import EXPERIMENTAL, PRODUCTION

if TYPE_CHECKING:
    from nbserve.experiments.experiment import Experiment

COLORS = {PRODUCTION: "tab:blue", EXPERIMENTAL: "tab:orange"}


def latency(experiment: Experiment) -> Figure:
    """Latency distribution (ms, log-spaced histogram) of each arm."""
    figure = Figure(figsize=(5, 2.6), layout="constrained")
    ax = figure.add_subplot()
    data = {arm: experiment.latencies(arm) * 1000 for arm in (PRODUCTION, EXPERIMENTAL)}
    present = np.concatenate([v for v in data.values() if v.size] or [np.ones(1)])
    bins = np.geomspace(max(present.min(), 1e-3), max(present.max(), 1e-2), 40)
    for arm, values in data.items():
        if values.size:
            ax.hist(values, bins=bins, alpha=0.6, color=COLORS[arm], label=f"{arm} (n={values.size})")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("requests")
    if any(v.size for v in data.values()):
        ax.legend(fontsize="small")
    return figure


def timeline(snapshot: dict[str, Any]) -> Figure:
    """Shadow agreement (or mean |Δ|) and accuracy per arm over time, with 95 % intervals."""
    figure = Figure(figsize=(5, 2.6), layout="constrained")
    ax = figure.add_subplot()
    points = snapshot["timeline"]
    times = [datetime.fromtimestamp(p["time"]) for p in points]
    if points and "agreement" in points[-1]:
        values = np.array([p.get("agreement", np.nan) for p in points], float)
        ci = np.array([p.get("agreement_ci", (np.nan, np.nan)) for p in points], float)
        ax.plot(times, values, color="tab:green", label="top-1 agreement")
        ax.fill_between(times, ci[:, 0], ci[:, 1], color="tab:green", alpha=0.2)
    for arm in (PRODUCTION, EXPERIMENTAL):
        accuracy = np.array([p["accuracy"][arm][0] for p in points], float)
        if np.isfinite(accuracy).any():
            ci = np.array([p["accuracy"][arm][1] for p in points], float)
            ax.plot(times, accuracy, color=COLORS[arm], label=f"accuracy {arm}")
            ax.fill_between(times, ci[:, 0], ci[:, 1], color=COLORS[arm], alpha=0.2)
    if points and "mean_abs_diff" in points[-1]:
        twin = ax.twinx()
        twin.plot(times, [p["mean_abs_diff"] for p in points], color="tab:red", label="mean |Δ| (shadow)")
        twin.set_ylabel("mean |Δ|")
        twin.legend(fontsize="small", loc="lower right")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("rate")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small", loc="lower left")
    figure.autofmt_xdate()
    return figure


def thumbnail(array: np.ndarray | None, size: int = 64) -> bytes | None:
    """PNG thumbnail of an input that looks like an image (H×W, or H×W×C with C in 1, 3, 4), else None."""
    if array is None:
        return None
    image = np.asarray(array)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if (
        image.ndim not in (2, 3)
        or min(image.shape[:2]) < 4
        or (image.ndim == 3 and image.shape[-1] not in (3, 4))
    ):
        return None
    from PIL import Image

    low, high = float(image.min()), float(image.max())
    scaled = ((image - low) / ((high - low) or 1) * 255).astype(np.uint8)
    picture = Image.fromarray(scaled).resize((size, size), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
