"""Stopping the model run of a request that was given up.

TF Serving turns ``--rest_api_timeout_in_ms`` and the gRPC client deadline into the session-run
timeout, so a request past its deadline stops running and frees its thread. Here the transport that
waits for the answer holds a :class:`RunControl` and cancels it; the servable running the request's
model (on whatever thread) registers a hook that aborts the run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class RunControl:
    """Shared by a request's waiter (which may cancel) and the thread that runs its model."""

    __slots__ = ("reason", "_lock", "_hooks")

    def __init__(self) -> None:
        self.reason: str | None = None
        self._lock = threading.Lock()
        self._hooks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self.reason is not None

    def cancel(self, reason: str) -> None:
        """Give up the request: run every hook once (later cancels are ignored)."""
        with self._lock:
            if self.reason is not None:
                return
            self.reason = reason
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()

    def add_hook(self, hook: Callable[[], None]) -> bool:
        """Call ``hook`` on cancel; False (and no call) when already cancelled."""
        with self._lock:
            if self.reason is not None:
                return False
            self._hooks.append(hook)
            return True

    def remove_hook(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if hook in self._hooks:
                self._hooks.remove(hook)


_current: ContextVar[RunControl | None] = ContextVar("nbserve_run_control", default=None)


def current_control() -> RunControl | None:
    """The RunControl of the request this thread is serving, if its transport set one."""
    return _current.get()


@contextmanager
def run_control(control: RunControl) -> Iterator[RunControl]:
    """Make ``control`` the current request's control for the duration of the block."""
    token = _current.set(control)
    try:
        yield control
    finally:
        _current.reset(token)
