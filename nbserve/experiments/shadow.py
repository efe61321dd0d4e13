"""Shadow runs off the request path: mirrored requests wait in a bounded queue (full: dropped and
counted); one background thread takes what has gathered, concatenates requests of the same kind into
one batch, runs the experimental arm once per batch and hands back each request's rows."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

Inputs = Mapping[str, np.ndarray]
Run = Callable[[Any, Inputs], np.ndarray]  # (pinned spec, batch inputs) -> output rows


@dataclass(frozen=True)
class Mirror:
    """One mirrored request: experimental spec, its inputs (row-major), the production output."""

    spec: Any
    inputs: Inputs
    production: np.ndarray
    run: Run
    kind: Hashable  # requests of equal kind (and spec, input shapes) share a batch

    def key(self) -> Hashable:
        rows = {len(v) if np.ndim(v) else -1 for v in self.inputs.values()}
        if len(rows) != 1 or -1 in rows:
            return id(self)  # not row-major: runs alone
        shapes = tuple((k, np.asarray(v).dtype.str, np.shape(v)[1:]) for k, v in sorted(self.inputs.items()))
        return (self.spec, self.kind, shapes)


Done = Callable[[list[Mirror], np.ndarray | None, float], None]  # mirrors, outputs (None: failed), seconds


class ShadowQueue:
    """A bounded queue of mirrors and the thread that runs them in batches of up to ``max_rows``,
    after letting requests gather for ``linger`` seconds."""

    def __init__(self, done: Done, capacity: int = 1024, linger: float = 0.02, max_rows: int = 256) -> None:
        self._done, self.linger, self.max_rows = done, linger, max_rows
        self._queue: queue.Queue[Mirror | None] = queue.Queue(capacity)
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="nbserve-shadow", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Mirrors queued or running."""
        return self._pending

    def offer(self, mirror: Mirror) -> bool:
        """Queue a mirror; False (dropped) when the queue is full."""
        with self._lock:
            self._pending += 1
        try:
            self._queue.put_nowait(mirror)
            return True
        except queue.Full:
            with self._lock:
                self._pending -= 1
            return False

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the daemon thread ends with the process

    def _work(self) -> None:
        while (first := self._queue.get()) is not None:
            time.sleep(self.linger)
            items, stop = [first], False
            while len(items) < self.max_rows:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                items.append(item)
            groups: dict[Hashable, list[Mirror]] = {}
            for item in items:
                groups.setdefault(item.key(), []).append(item)
            for group in groups.values():
                self._run(group)
            with self._lock:
                self._pending -= len(items)
            if stop:
                return

    def _run(self, group: list[Mirror]) -> None:
        batch = {k: np.concatenate([m.inputs[k] for m in group]) for k in group[0].inputs}
        start = time.perf_counter()
        try:
            output = np.asarray(group[0].run(group[0].spec, batch))
        except Exception:
            output = None
        self._done(group, output, time.perf_counter() - start)
