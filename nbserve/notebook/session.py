"""The kernel's one current model server: start (reuse or replace), stop, and free its ports when
the kernel shuts down or restarts.

``nbserve.Server`` already runs on background threads (Tornado on its own asyncio loop, gRPC on its
pool), so the kernel's event loop is never touched and a cell interrupted by KeyboardInterrupt (raised
in the main thread only) leaves it serving.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from nbserve.notebook.errors import NotebookError
from nbserve.ports import port_is_free

if TYPE_CHECKING:
    from nbserve.server.management import ModelSummary
    from nbserve.server.options import ServerOptions
    from nbserve.server.runtime import Server

_PORT_NAMES = {"port": "gRPC", "rest_api_port": "REST"}


@dataclass(frozen=True)
class Started:
    """What ``Session.start`` did: reused the running server, replaced it, or started a first one."""

    server: Server
    reused: bool = False
    replaced: bool = False
    notes: tuple[str, ...] = ()

    def __str__(self) -> str:
        verb = "Serving"
        if self.reused:
            verb = "Already serving"
        elif self.replaced:
            verb = "Replaced the server; serving"
        where = ", ".join(
            f"{kind} at {address}"
            for kind, address in (("gRPC", self.server.grpc_address), ("REST", self.server.rest_url))
            if address
        )
        return "\n".join([f"{verb}: {where or 'no ports'}", *self.notes])


class Session:
    """Holds the kernel's current server. Thread-safe; one instance per kernel (``SESSION``)."""

    def __init__(self) -> None:
        self.server: Server | None = None
        self._requested: tuple[ServerOptions, frozenset[str]] | None = None
        self._lock = threading.RLock()

    def start(self, options: ServerOptions, movable_ports: Iterable[str] = ()) -> Started:
        """Start a server with ``options``; reuse the running one if it was asked for with the same
        options, else stop it first. ``movable_ports`` (``"port"``, ``"rest_api_port"``) name ports
        left at their default: when busy, a free port is used instead and a note says so."""
        from nbserve.server.runtime import Server

        request = (options, frozenset(movable_ports))
        with self._lock:
            current = self.server
            running = current is not None and current.running
            if running and self._requested == request:
                return Started(current, reused=True)
            self.stop()
            resolved, notes = _free_default_ports(options, request[1])
            _quiet_access_log()
            server = Server(options=resolved)
            server.start()
            self.server, self._requested = server, request
            return Started(server, replaced=running, notes=notes)

    def stop(self) -> bool:
        """Stop the current server (frees its ports). False when none was running."""
        with self._lock:
            server, self.server, self._requested = self.server, None, None
            if server is None:
                return False
            server.stop()
            return True

    def current(self) -> Server | None:
        """The running server, or None."""
        server = self.server
        return server if server is not None and server.running else None

    def require(self) -> Server:
        """The running server, or a NotebookError telling how to start one."""
        server = self.current()
        if server is None:
            raise NotebookError("No server is running in this kernel: run %nbserve start first.")
        return server


SESSION = Session()


def default_base_path(name: str, server: Server | None = None) -> str:
    """Where to export model ``name``: the base path the server already serves it from, else
    ``./models/<name>`` under the kernel's working directory (absolute, as TF Serving requires)."""
    model = _summary(server, name) if server is not None and server.running else None
    if model is not None and model.base_path is not None:
        return model.base_path
    return os.path.abspath(os.path.join("models", name))


def publish(server: Server, name: str, base_path: str, version: int, timeout: float = 120.0) -> str:
    """Have ``server`` serve the just-exported ``version`` of model ``name``: load the model when the
    server does not serve it from disk yet, else let its file-system poll pick the version up. Waits
    until the version is AVAILABLE and returns a line saying where; NotebookError if it failed."""
    model = _summary(server, name)
    if model is None or model.base_path is None:
        server.load(name, base_path)
    elif os.path.normpath(model.base_path) != os.path.normpath(base_path):
        raise NotebookError(
            f"Model {name} is served from {model.base_path}, not {base_path}: export there, or "
            f"%nbserve unload {name} first.",
            "FAILED_PRECONDITION",
        )
    start = time.monotonic()
    # The poll must notice the version before it shows up at all; then loading may take a while.
    unseen_limit = max(5.0, 3 * server.options.file_system_poll_wait_seconds)
    while True:
        model = _summary(server, name)
        entry = next((v for v in model.versions if v.version == version), None) if model else None
        if entry is not None and entry.state == "AVAILABLE":
            urls = server.urls(name)
            address = urls["rest_predict"] or urls["grpc_address"]
            return f"Serving {name} version {version}: AVAILABLE at {address}"
        if entry is not None and entry.state == "END":
            raise NotebookError(entry.error or f"Version {version} of {name} was unloaded.")
        waited = time.monotonic() - start
        if (entry is None and waited > unseen_limit) or waited > timeout:
            state = entry.state if entry else f"not picked up (policy {model.policy if model else '?'})"
            return (
                f"Exported {name} version {version}; the server has it {state}. %nbserve status shows more."
            )
        time.sleep(0.05)


def _summary(server: Server, name: str) -> ModelSummary | None:
    return next((m for m in server.models() if m.name == name), None)


def _quiet_access_log() -> None:
    # Tornado logs every 4xx/5xx answer; printed, each would land in whichever cell happens to run.
    # Clients get the errors in their answers.
    access = logging.getLogger("tornado.access")
    access.propagate = False
    if not access.handlers:
        access.addHandler(logging.NullHandler())


def _free_default_ports(
    options: ServerOptions, movable: frozenset[str]
) -> tuple[ServerOptions, tuple[str, ...]]:
    changes: dict[str, int] = {}
    notes = []
    for field in sorted(movable):
        port = getattr(options, field)
        if port and not port_is_free(port, options.host):
            changes[field] = 0
            notes.append(f"{_PORT_NAMES[field]} port {port} is in use, so a free port was picked.")
    return replace(options, **changes), tuple(notes)


# -- kernel shutdown / restart -----------------------------------------------------------------------


def attach_kernel(shell: Any) -> None:
    """Stop the server as soon as the kernel is asked to shut down or restart, before ipykernel
    tears down its sockets; interpreter exit is covered by the runtime's atexit hook."""
    kernel = getattr(shell, "kernel", None)
    if kernel is None or getattr(kernel.do_shutdown, "_nbserve_original", None) is not None:
        return
    original = kernel.do_shutdown

    def do_shutdown(restart: bool) -> Any:
        SESSION.stop()
        return original(restart)

    do_shutdown._nbserve_original = original  # type: ignore[attr-defined]
    kernel.do_shutdown = do_shutdown


def detach_kernel(shell: Any) -> None:
    """Undo ``attach_kernel``."""
    kernel = getattr(shell, "kernel", None)
    original = getattr(getattr(kernel, "do_shutdown", None), "_nbserve_original", None)
    if original is not None:
        kernel.do_shutdown = original
