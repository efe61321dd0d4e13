"""The latency lab: how long do Predict requests take — one batch of N against N one-by-one, REST
against gRPC against the model called directly, with server batching on and off?

``nbserve.latency.run("digits", server=server, n=64)`` measures and returns a :class:`LatencyReport`
(table, ``to_csv``, ``to_json``); ``start(...)`` does the same in the background (cancellable, with
progress). Requests come from a separate process, so the kernel's GIL does not distort the figures.
``nbserve.latency.plots`` draws them; ``LatencyWidget`` (``%nbserve latency MODEL``) does it all
from a notebook; ``nbserve bench`` from a shell. Submodules load on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nbserve.latency.plan import MODES, TRANSPORTS, Case
    from nbserve.latency.results import CaseResult, LatencyReport
    from nbserve.latency.runner import BenchConfig, LatencyError, LatencyRun, Progress, run, start
    from nbserve.latency.widget import LatencyWidget

_LAZY = {
    "MODES": "plan",
    "TRANSPORTS": "plan",
    "Case": "plan",
    "CaseResult": "results",
    "LatencyReport": "results",
    "BenchConfig": "runner",
    "LatencyError": "runner",
    "LatencyRun": "runner",
    "Progress": "runner",
    "run": "runner",
    "start": "runner",
    "LatencyWidget": "widget",
}
__all__ = [
    "MODES",
    "TRANSPORTS",
    "BenchConfig",
    "Case",
    "CaseResult",
    "LatencyError",
    "LatencyReport",
    "LatencyRun",
    "LatencyWidget",
    "Progress",
    "run",
    "start",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'nbserve.latency' has no attribute {name!r}")
    return getattr(importlib.import_module(f"nbserve.latency.{module}"), name)
