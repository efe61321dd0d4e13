"""nbserve in Jupyter: ``%load_ext nbserve`` registers the ``%nbserve`` magics; the export widget lives
in ``nbserve.notebook.widgets``. Nothing heavy is imported here."""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%nbserve`` / ``%%nbserve`` and stop the server when the kernel shuts down."""
    from nbserve.notebook.magics import NbserveMagics
    from nbserve.notebook.session import attach_kernel

    ipython.register_magics(NbserveMagics)
    attach_kernel(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Stop the kernel's server (freeing its ports) and remove the magics."""
    from nbserve.notebook.session import SESSION, detach_kernel

    SESSION.stop()
    detach_kernel(ipython)
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("nbserve", None)
