"""The export widget: pick a model held in the kernel, export it as a new version, watch the server
load it.

Every control is an attribute, so code (and tests) can drive it: set ``widget.model.value``,
``widget.name.value``, ..., call ``widget.export_button.click()``, then ``widget.wait()``.
The export runs on its own thread and reports through the widgets, so the kernel stays responsive.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import MutableMapping
from html import escape
from typing import TYPE_CHECKING, Any, get_args

import ipywidgets as widgets

from nbserve.notebook.errors import one_line
from nbserve.notebook.session import SESSION, default_base_path

if TYPE_CHECKING:
    from nbserve.server.runtime import Server

_STEPS = 2  # written and probed; AVAILABLE in the server
_WIDE = widgets.Layout(width="32em")


def find_models(namespace: MutableMapping[str, Any]) -> list[str]:
    """Names of the Keras models, tf.Modules and tf.functions in ``namespace``, sorted.

    Looks only at modules already imported, so a kernel without TensorFlow stays without it."""
    kinds: list[type] = []
    if (keras := sys.modules.get("keras")) is not None:
        kinds.append(keras.Model)
    if (tf := sys.modules.get("tensorflow")) is not None:
        kinds += [tf.Module, tf.types.experimental.PolymorphicFunction]
    if not kinds:
        return []
    return sorted(
        name
        for name, value in list(namespace.items())
        if not name.startswith("_") and isinstance(value, tuple(kinds))
    )


class ExportWidget(widgets.VBox):
    """Export a model from the kernel's namespace with ``nbserve.export`` and serve it.

    ``namespace`` defaults to the kernel's user namespace; ``server`` to the kernel's current
    ``%nbserve`` server (looked up at export time; without one, the widget only exports).
    """

    def __init__(
        self, namespace: MutableMapping[str, Any] | None = None, server: Server | None = None
    ) -> None:
        from nbserve.exporting import SignatureKind

        if namespace is None:
            from IPython import get_ipython

            shell = get_ipython()
            namespace = shell.user_ns if shell is not None else {}
        self.namespace = namespace
        self._server = server
        self.result: Any = None
        self.error: str | None = None
        self._thread: threading.Thread | None = None

        self.model = widgets.Dropdown(description="Model", layout=_WIDE)
        self.refresh_button = widgets.Button(icon="refresh", tooltip="Rescan the kernel's variables")
        self.name = widgets.Text(description="Name", placeholder="model name", layout=_WIDE)
        self.base_path = widgets.Text(description="Base path", layout=_WIDE)
        self.version = widgets.BoundedIntText(1, min=1, max=2**31 - 1, description="Version")
        self.signatures = widgets.ToggleButtons(
            options=get_args(SignatureKind), value="tensor", description="Signature"
        )
        self.image_height = widgets.BoundedIntText(
            0, min=0, max=8192, description="Height", tooltip="0: model's"
        )
        self.image_width = widgets.BoundedIntText(
            0, min=0, max=8192, description="Width", tooltip="0: model's"
        )
        self.channels = widgets.Dropdown(
            options=[("from the model", None), ("1 (grayscale)", 1), ("3 (RGB)", 3)], description="Channels"
        )
        self.scale = widgets.FloatRangeSlider(
            value=(0.0, 1.0), min=-1.0, max=255.0, step=0.5, description="Scale"
        )
        self.export_button = widgets.Button(description="Export", button_style="primary", icon="upload")
        self.progress = widgets.IntProgress(0, min=0, max=_STEPS, description="")
        self.status = widgets.HTML()
        self.output = widgets.Output()

        self.preprocessing = widgets.VBox(
            [widgets.HBox([self.image_height, self.image_width]), self.channels, self.scale]
        )
        super().__init__(
            [
                widgets.HBox([self.model, self.refresh_button]),
                self.name,
                self.base_path,
                self.version,
                self.signatures,
                self.preprocessing,
                widgets.HBox([self.export_button, self.progress]),
                self.status,
                self.output,
            ]
        )
        self.refresh_button.on_click(lambda _: self.refresh())
        self.export_button.on_click(lambda _: self._start_export())
        self.model.observe(self._on_model, names="value")
        self.name.observe(lambda change: self._follow_name(change["new"]), names="value")
        self.base_path.observe(lambda _: self._follow_base_path(), names="value")
        self.signatures.observe(lambda _: self._show_preprocessing(), names="value")
        self._show_preprocessing()
        self.refresh()

    # -- public -------------------------------------------------------------------------------------------

    @property
    def server(self) -> Server | None:
        """The server exports go to: the one given, else the kernel's %nbserve server (if running)."""
        if self._server is not None:
            return self._server if self._server.running else None
        return SESSION.current()

    def refresh(self) -> None:
        """Rescan the namespace for models; keeps the selection when it is still there."""
        names = find_models(self.namespace)
        current = self.model.value
        self.model.options = names
        self.model.value = current if current in names else (names[0] if names else None)

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the running export (if any) finishes; returns its ExportResult or None."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self.result

    # -- reactions ------------------------------------------------------------------------------------------

    def _on_model(self, change: dict[str, Any]) -> None:
        if change["new"] and self.name.value in ("", change["old"]):
            self.name.value = change["new"]

    def _follow_name(self, name: str) -> None:
        if name:
            self.base_path.value = default_base_path(name, self.server)

    def _follow_base_path(self) -> None:
        import nbserve

        if self.base_path.value:
            self.version.value = nbserve.next_version(self.base_path.value)

    def _show_preprocessing(self) -> None:
        self.preprocessing.layout.display = "none" if self.signatures.value == "tensor" else None

    # -- export -------------------------------------------------------------------------------------------

    def _start_export(self) -> None:
        if self.busy:
            return
        if self.model.value is None:
            self._fail("Nothing to export: no Keras model, tf.Module or tf.function found.")
            return
        if not (self.name.value.strip() and self.base_path.value.strip()):
            self._fail("Set the model name and base path first.")
            return
        # Snapshot the controls on the kernel's thread; the worker only reads this dict.
        request = {
            "var": self.model.value,
            "name": self.name.value.strip(),
            "base_path": self.base_path.value.strip(),
            "version": self.version.value,
            "signatures": self.signatures.value,
            "image_size": (self.image_height.value, self.image_width.value)
            if self.image_height.value and self.image_width.value
            else None,
            "channels": self.channels.value,
            "scale": tuple(self.scale.value),
        }
        self.result, self.error = None, None
        self.output.outputs = ()
        self.export_button.disabled = True
        self._thread = threading.Thread(
            target=self._export, args=(request,), name="nbserve-export", daemon=True
        )
        self._thread.start()

    def _export(self, request: dict[str, Any]) -> None:
        import nbserve
        from nbserve.notebook.session import publish
        from nbserve.notebook.status import StatusReport

        name, base_path = request["name"], request["base_path"]
        try:
            self._report("info", 0, f"Exporting {request['var']} as {name} version {request['version']}…")
            result = nbserve.export(
                self.namespace[request["var"]],
                base_path,
                name=name,
                version=request["version"],
                signatures=request["signatures"],
                image_size=request["image_size"],
                channels=request["channels"],
                scale=request["scale"],
            )
            self.result = result
            self.output.append_display_data(result)
            server = self.server
            if server is None:
                self._report("success", _STEPS, f"Exported {base_path}/{result.version} (no server running).")
            else:
                self._report("info", 1, f"Exported version {result.version}; the server is loading it…")
                message = publish(server, name, base_path, result.version)
                self.output.append_display_data(StatusReport.of(server, only=name))
                self._report("success", _STEPS, message)
            self.version.value = nbserve.next_version(base_path)
        except Exception as error:  # shown in the widget: a worker thread has nowhere else to raise
            self._fail(one_line(error))
        finally:
            self.export_button.disabled = False

    def _fail(self, message: str) -> None:
        self.error = message
        self._report("danger", self.progress.value, message)

    def _report(self, style: str, step: int, message: str) -> None:
        color = {"danger": "#c62828", "success": "#2e7d32"}.get(style, "inherit")
        self.progress.bar_style = style
        self.progress.value = step
        self.status.value = f'<span style="color:{color}">{escape(message)}</span>'
