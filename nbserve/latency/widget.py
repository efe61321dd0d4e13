"""The latency lab widget: pick model, signature, transports, modes, N and concurrency; Run shows a
progress bar (the kernel stays free: the run has its own thread and process), Cancel stops it; then
the table and the plots, optionally against the previous run.

Every control is an attribute, so code and tests drive it: set ``widget.n.value``,
``widget.transports["grpc"].value = True``, ..., ``widget.run_button.click()``, ``widget.wait()``.
"""

from __future__ import annotations

import html
import os
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from nbserve.latency.plan import MODE_TITLES, MODES, TRANSPORTS
from nbserve.latency.results import LatencyReport
from nbserve.latency.runner import BenchConfig, LatencyError, LatencyRun, Progress
from nbserve.signature import DEFAULT_SERVING_SIGNATURE

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from nbserve.server.runtime import Server

BATCHING_CHOICES = (
    ("as the server runs", "server"),
    ("off vs on (starts two servers)", "compare"),
    ("off (starts a server)", "off"),
    ("on (starts a server)", "on"),
)
_BATCHING_RUNS = {"server": None, "compare": ("off", "on"), "off": ("off",), "on": ("on",)}
_TRANSPORT_TITLES = {"rest": "REST", "grpc": "gRPC", "inprocess": "in-process"}
_WIDE = widgets.Layout(width="30em")


class LatencyWidget(widgets.VBox):
    """The latency lab for ``model`` on ``server`` (default: the kernel's ``%nbserve`` server, looked
    up at each run). ``inputs`` (an array, a mapping alias -> array, or a folder of images) replaces
    the rows generated from the signature; ``model_base_path`` serves the in-process transport and
    batching comparisons when the server does not know the model's base path."""

    def __init__(
        self,
        model: str | None = None,
        *,
        server: Server | None = None,
        signature: str | None = None,
        transports: Iterable[str] = ("rest", "grpc"),
        modes: Iterable[str] = ("batch", "sequential"),
        n: int = 64,
        concurrency: int = 4,
        repeats: int = 3,
        batching: str = "server",
        inputs: Any = None,
        model_base_path: str | None = None,
    ) -> None:
        self._server = server
        self._inputs = inputs
        self._model_base_path = model_base_path
        self.report: LatencyReport | None = None
        self.previous: LatencyReport | None = None
        self.figures: dict[str, Figure] = {}
        self.error: str | None = None
        self.latency_run: LatencyRun | None = None
        self._watcher: threading.Thread | None = None

        self.model = widgets.Dropdown(description="Model", layout=_WIDE)
        self.signature = widgets.Dropdown(description="Signature", layout=_WIDE)
        transports, modes = set(transports), set(modes)
        self.transports = {
            t: widgets.Checkbox(t in transports, description=_TRANSPORT_TITLES[t], indent=False)
            for t in TRANSPORTS
        }
        self.modes = {
            m: widgets.Checkbox(m in modes, description=MODE_TITLES[m], indent=False) for m in MODES
        }
        self.n = widgets.BoundedIntText(n, min=1, max=1_000_000, description="N")
        self.concurrency = widgets.BoundedIntText(concurrency, min=1, max=512, description="Clients k")
        self.repeats = widgets.BoundedIntText(repeats, min=1, max=100, description="Rounds")
        self.batching = widgets.Dropdown(options=BATCHING_CHOICES, value=batching, description="Batching")
        self.inputs = widgets.Text(
            description="Inputs",
            placeholder="given array"
            if inputs is not None
            else "generated; or a folder of images / a .npy file",
            layout=_WIDE,
        )
        self.compare = widgets.Checkbox(False, description="compare with the previous run", indent=False)
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.IntProgress(0, min=0, max=1)
        self.status = widgets.HTML()
        self.results = widgets.Tab()

        super().__init__(
            [
                self.model,
                self.signature,
                widgets.HBox(
                    [widgets.Label("Transports", layout={"width": "6em"}), *self.transports.values()]
                ),
                widgets.HBox([widgets.Label("Modes", layout={"width": "6em"}), *self.modes.values()]),
                widgets.HBox([self.n, self.concurrency, self.repeats]),
                self.batching,
                self.inputs,
                self.compare,
                widgets.HBox([self.run_button, self.cancel_button, self.progress]),
                self.status,
                self.results,
            ]
        )
        self.model.observe(lambda _: self.refresh_signatures(), names="value")
        self.compare.observe(lambda _: self._redraw(), names="value")
        self.run_button.on_click(lambda _: self.start())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.refresh_models(model)
        if signature is not None:
            if signature not in self.signature.options:
                self.signature.options = [*self.signature.options, signature]
            self.signature.value = signature

    # -- public ---------------------------------------------------------------------------------------

    @property
    def server(self) -> Server | None:
        from nbserve.notebook.session import SESSION

        server = self._server if self._server is not None else SESSION.server
        return server if server is not None and server.running else None

    @property
    def busy(self) -> bool:
        return self._watcher is not None and self._watcher.is_alive()

    def refresh_models(self, prefer: str | None = None) -> None:
        """List the server's models (keeping ``prefer`` or the current choice)."""
        server = self.server
        names = [m.name for m in server.models()] if server is not None else []
        wanted = prefer or self.model.value
        if wanted and wanted not in names:
            names.append(wanted)
        self.model.options = names
        self.model.value = wanted if wanted else (names[0] if names else None)
        self.refresh_signatures()

    def refresh_signatures(self) -> None:
        """List the chosen model's signatures, as the server reports them."""
        from nbserve.latency.inputs import signatures_of

        names: list[str] = []
        server = self.server
        if self.model.value and server is not None:
            try:
                where = {"rest_url": server.rest_url, "grpc_address": server.grpc_address}
                names = list(signatures_of(self.model.value, **where))
            except Exception as error:  # noqa: BLE001 - shown; the user may pick another model
                self._say("danger", f"Cannot read the signatures of {self.model.value}: {error}")
        current = self.signature.value
        self.signature.options = names or [DEFAULT_SERVING_SIGNATURE]
        if current in self.signature.options:
            self.signature.value = current
        elif DEFAULT_SERVING_SIGNATURE in self.signature.options:
            self.signature.value = DEFAULT_SERVING_SIGNATURE

    def config(self) -> BenchConfig:
        """The BenchConfig the controls describe (read on the kernel's thread)."""
        if not self.model.value:
            raise LatencyError("choose a model (no server running? %nbserve start, or pass server=)")
        choice = self.batching.value
        server = self.server
        if choice == "server" and server is None:
            raise LatencyError(
                "no server is running: start one, or choose a batching setting that starts one"
            )
        path = self.inputs.value.strip()
        inputs = self._inputs
        if path:
            import numpy as np

            path = os.path.expanduser(path)
            inputs = path if os.path.isdir(path) else np.load(path, allow_pickle=False)
        return BenchConfig(
            self.model.value,
            signature=self.signature.value or DEFAULT_SERVING_SIGNATURE,
            n=self.n.value,
            transports=[t for t, box in self.transports.items() if box.value],
            modes=[m for m, box in self.modes.items() if box.value],
            concurrency=self.concurrency.value,
            repeats=self.repeats.value,
            inputs=inputs,
            server=server,
            model_base_path=self._model_base_path,
            batching=_BATCHING_RUNS[choice],
        )

    def start(self) -> None:
        """What the Run button does: start a run in the background (ignored while one runs)."""
        if self.busy:
            return
        try:
            config = self.config()
            latency_run = LatencyRun(config)
        except Exception as error:  # noqa: BLE001 - shown in the widget
            self.error = str(error)
            self._say("danger", self.error)
            return
        self.error = None
        self.latency_run = latency_run
        self._set_running(True)
        self.progress.value, self.progress.bar_style = 0, "info"
        self._say("info", "Starting…")
        self._watcher = threading.Thread(
            target=self._watch, args=(latency_run,), name="nbserve-latency-widget"
        )
        self._watcher.daemon = True
        latency_run.start(self._on_progress)
        self._watcher.start()

    def cancel(self) -> None:
        """What the Cancel button does."""
        if self.latency_run is not None:
            self._say("warning", "Cancelling…")
            self.latency_run.cancel()

    def wait(self, timeout: float | None = None) -> LatencyReport | None:
        """Block until the current run (if any) ended and its results are shown; the latest report."""
        if self._watcher is not None:
            self._watcher.join(timeout)
        return self.report

    # -- background ------------------------------------------------------------------------------------------

    def _on_progress(self, progress: Progress) -> None:
        if progress.phase == "running":
            self.progress.max = max(progress.total, 1)
            self.progress.value = progress.done
            self._say("info", f"{progress.done} / {progress.total} requests")
        elif progress.message and progress.phase in ("servers", "load"):
            self._say("info", progress.message[:1].upper() + progress.message[1:] + "…")

    def _watch(self, latency_run: LatencyRun) -> None:
        try:
            report = latency_run.wait()
        except Exception as error:  # noqa: BLE001 - LatencyError or a surprise: shown either way
            self.error = str(error)
            self.progress.bar_style = "danger"
            self._say("danger", self.error)
        else:
            if report.cancelled:
                self.progress.bar_style = "warning"
                done = latency_run.progress.done
                self._say("warning", f"Cancelled after {done} of {latency_run.progress.total} requests.")
            else:
                self.previous, self.report = self.report, report
                self._show(report)
        finally:
            self.latency_run = None
            self._set_running(False)

    def _redraw(self) -> None:
        if self.report is not None and not self.busy:
            self._show(self.report)

    def _show(self, report: LatencyReport) -> None:
        from nbserve.latency import plots

        previous = self.previous if self.compare.value else None
        self.figures = plots.figures(report, previous)
        tables = [widgets.HTML(report._repr_html_())]
        if previous is not None:
            tables.insert(0, widgets.HTML("<b>previous run</b>" + previous._repr_html_()))
        children = [widgets.HBox(tables)]
        titles = ["table"]
        for name, figure in self.figures.items():
            children.append(widgets.Image(value=plots.png(figure), format="png"))
            titles.append(name)
        self.results.children = children
        self.results.titles = titles
        self.progress.value, self.progress.bar_style = self.progress.max, "success"
        failed = sum(len(c.failed) for c in report.cases)
        sent = sum(c.sent for c in report.cases)
        style, note = ("success", "every request answered") if not failed else ("danger", f"{failed} failed")
        self._say(style, f"Done: {sent} requests in {len(report.cases)} cases, {note}.")

    def _set_running(self, running: bool) -> None:
        self.run_button.disabled = running
        self.cancel_button.disabled = not running

    def _say(self, style: str, message: str) -> None:
        color = {"danger": "#c62828", "success": "#2e7d32", "warning": "#ef6c00"}.get(style, "inherit")
        self.status.value = f'<span style="color:{color}">{html.escape(message)}</span>'


def open_latency_lab(
    model: str, *, inputs_path: str | None = None, run: bool = False, **settings: Any
) -> LatencyWidget:
    """A LatencyWidget for ``model`` prefilled with ``settings`` (its keyword arguments) and the inputs
    path; started at once with ``run``. What ``%nbserve latency`` shows."""
    widget = LatencyWidget(model, **settings)
    if inputs_path:
        widget.inputs.value = inputs_path
    if run:
        widget.start()
    return widget
