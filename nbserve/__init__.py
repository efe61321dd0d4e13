"""nbserve: TensorFlow Serving, brought into the Jupyter notebook.

``nbserve.Server`` runs TF-Serving-compatible REST and gRPC servers on background threads.
Heavy modules (TensorFlow, grpc) load on first use, so ``import nbserve`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = [
    "Server",
    "ServerOptions",
    "ModelSpec",
    "ServingError",
    "ExportWidget",
    "export",
    "ExportResult",
    "next_version",
]

from nbserve.notebook import load_ipython_extension, unload_ipython_extension  # noqa: E402,F401

if TYPE_CHECKING:
    from nbserve.dataplane import ModelSpec
    from nbserve.errors import ServingError
    from nbserve.exporting import ExportResult, export, next_version
    from nbserve.notebook.widgets.export import ExportWidget
    from nbserve.server.options import ServerOptions
    from nbserve.server.runtime import Server

_LAZY = {
    "Server": "nbserve.server.runtime",
    "ServerOptions": "nbserve.server.options",
    "ModelSpec": "nbserve.dataplane",
    "ServingError": "nbserve.errors",
    "ExportWidget": "nbserve.notebook.widgets.export",
    "export": "nbserve.exporting",
    "ExportResult": "nbserve.exporting",
    "next_version": "nbserve.exporting",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbserve' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
