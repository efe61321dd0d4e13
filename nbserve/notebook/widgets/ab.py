"""The A/B widget: watch and steer an ``Experiment``: mode and split / shadow controls, the per-arm
table and verdict, latency and agreement / accuracy plots, the most-disagreeing inputs, Promote and
Rollback.

Every control is an attribute, so code (and tests) can drive it: set ``widget.mode.value``, call
``widget.refresh()``, ``widget.promote_button.click()``. ``widget.auto.value = True`` refreshes every
``interval`` seconds on a timer thread.
"""

from __future__ import annotations

import threading
from html import escape

import ipywidgets as widgets
import numpy as np

from nbserve.errors import ServingError
from nbserve.experiments import MODES, Experiment
from nbserve.experiments import plots as ab_plots
from nbserve.experiments.stats import Disagreement
from nbserve.latency.plots import png
from nbserve.tables import html_table


class ABWidget(widgets.VBox):
    """Controls and live statistics of one experiment."""

    def __init__(self, experiment: Experiment, interval: float = 2.0) -> None:
        self.experiment = experiment
        self.interval = interval
        self.mode = widgets.ToggleButtons(options=list(MODES), value=experiment.mode, description="mode")
        self.split = widgets.FloatSlider(
            value=experiment.split, min=0, max=100, step=1, description="split %"
        )
        self.shadow = widgets.FloatSlider(
            value=experiment.shadow, min=0, max=100, step=1, description="shadow %"
        )
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.auto = widgets.Checkbox(value=False, description="auto-refresh")
        self.promote_button = widgets.Button(description="Promote", button_style="success", icon="arrow-up")
        self.rollback_button = widgets.Button(description="Rollback", button_style="warning", icon="undo")
        self.table = widgets.HTML()
        self.verdict = widgets.HTML()
        self.status = widgets.HTML()
        self.latency_plot = widgets.Image(format="png")
        self.timeline_plot = widgets.Image(format="png")
        self.disagreements = widgets.HBox()
        self._stop = threading.Event()
        self._timer: threading.Thread | None = None
        self._refreshing = threading.Lock()

        self.mode.observe(lambda change: self._set("mode", change["new"]), names="value")
        self.split.observe(lambda change: self._set("split", change["new"]), names="value")
        self.shadow.observe(lambda change: self._set("shadow", change["new"]), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.promote_button.on_click(lambda _: self._act("promote"))
        self.rollback_button.on_click(lambda _: self._act("rollback"))
        self.auto.observe(lambda change: self._auto(change["new"]), names="value")
        buttons = [self.refresh_button, self.auto, self.promote_button, self.rollback_button]
        super().__init__(
            [
                widgets.HTML(f"<b>A/B experiment on {escape(experiment.model)}</b>"),
                self.mode,
                widgets.HBox([self.split, self.shadow]),
                widgets.HBox(buttons),
                self.status,
                self.table,
                self.verdict,
                widgets.HBox([self.latency_plot, self.timeline_plot]),
                widgets.HTML("<b>Most-disagreeing shadowed inputs</b>"),
                self.disagreements,
            ]
        )
        self.refresh()

    def _set(self, name: str, value: object) -> None:
        try:
            setattr(self.experiment, name, value)
            self.status.value = ""
        except ServingError as error:
            self.status.value = f'<span style="color:#b00">{escape(error.message)}</span>'

    def _act(self, action: str) -> None:
        try:
            versions = getattr(self.experiment, action)()
            self.status.value = escape(f"{action}: production is now version {versions['production']}")
        except ServingError as error:
            self.status.value = f'<span style="color:#b00">{escape(error.message)}</span>'
        self.refresh()

    def refresh(self) -> None:
        """Redraw the table, verdict, plots and disagreements from a fresh snapshot."""
        with self._refreshing:
            snapshot = self.experiment.snapshot()
            header, rows = self.experiment.table()
            self.table.value = html_table(header, rows)
            shadow = snapshot["shadow_stats"]
            measure = (
                f"agreement {shadow['agreement']:.3f}" if "agreement" in shadow
                else f"mean |Δ| {shadow['mean_abs_diff']:.4g}"
            )  # fmt: skip
            self.verdict.value = escape(
                f"accuracy difference: {snapshot['comparison']['verdict']} · shadow pairs {shadow['pairs']}, "
                f"{measure}, dropped {shadow['dropped']}"
            )
            self.latency_plot.value = png(ab_plots.latency(self.experiment))
            self.timeline_plot.value = png(ab_plots.timeline(snapshot))
            self.disagreements.children = [_card(d) for d in snapshot["disagreements"]]

    def _auto(self, on: bool) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
            self._timer = None
        if on:
            self._stop = stop = threading.Event()
            self._timer = threading.Thread(
                target=self._tick, args=(stop,), name="nbserve-ab-refresh", daemon=True
            )
            self._timer.start()

    def _tick(self, stop: threading.Event) -> None:
        while not stop.wait(self.interval):
            self.refresh()

    def close(self) -> None:
        self.auto.value = False
        super().close()


def _card(disagreement: Disagreement) -> widgets.VBox:
    """One disagreeing input: its thumbnail (or values) and both arms' answers."""
    image = ab_plots.thumbnail(disagreement.input)
    text = (
        f"prod {_short(disagreement.production)}<br>exp {_short(disagreement.experimental)}<br>"
        f"score {disagreement.score:.3g}"
    )
    shown = (
        widgets.Image(value=image, format="png")
        if image
        else widgets.HTML(escape(_short(disagreement.input)))
    )
    return widgets.VBox([shown, widgets.HTML(f"<small>{text}</small>")])


def _short(array: np.ndarray | None) -> str:
    if array is None:
        return "(input not kept)"
    flat = np.asarray(array).reshape(-1)
    if 1 < len(flat) <= 16 and flat.dtype.kind == "f":
        top = int(flat.argmax())
        return f"top-1 {top} ({flat[top]:.2f})"
    return np.array2string(flat[:6], precision=3) + ("…" if len(flat) > 6 else "")
