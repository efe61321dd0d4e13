"""Per-model admission, so a slow or overloaded model cannot delay another model's requests.

Each model may run at most ``concurrency`` inference requests at once; up to ``queue`` more wait
for a slot, and beyond that a request is refused with UNAVAILABLE. REST requests wait on the event
loop (``admit_async``) before they take a worker, so a saturated model holds at most ``concurrency``
of the shared REST workers. gRPC requests wait in their handler thread (``admit``); the runtime sizes
the gRPC pool at ``--grpc_max_threads`` plus the queue size so the waiters of one model cannot take
the threads the others need.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from nbserve.errors import DeadlineExceeded, InvalidArgument, Unavailable

FLAG = "--model_max_concurrent_requests"


class _Waiter:
    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.granted = False


class ModelGate:
    """Admission for one model: a counting semaphore with a bounded FIFO wait queue."""

    def __init__(self, name: str, concurrency: int, queue: int) -> None:
        self.name, self.concurrency, self.queue = name, concurrency, queue
        self._lock = threading.Lock()
        self._running = 0
        self._waiters: deque[_Waiter] = deque()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._running + len(self._waiters)

    def _enter(self, wake: Callable[[], None]) -> _Waiter | None:
        """Take a slot (None) or join the queue (the waiter); raise when the queue is full too."""
        with self._lock:
            if self._running < self.concurrency:
                self._running += 1
                return None
            if len(self._waiters) >= self.queue:
                raise Unavailable(
                    f"model {self.name} is overloaded: {self._running + len(self._waiters)} requests in "
                    f"flight; retry or raise {FLAG} (now {self.concurrency}) or --model_max_queued_requests "
                    f"(now {self.queue})"
                )
            waiter = _Waiter(wake)
            self._waiters.append(waiter)
            return waiter

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter gave up: leave the queue, or pass on the slot it was just handed."""
        with self._lock:
            if not waiter.granted:
                self._waiters.remove(waiter)
                return
        self.release()

    def release(self) -> None:
        with self._lock:
            if not self._waiters:
                self._running -= 1
                return
            waiter = self._waiters.popleft()  # the slot passes straight to the next waiter
            waiter.granted = True
        waiter.wake()

    @contextmanager
    def admit(self, timeout: float | None = None) -> Iterator[None]:
        """Hold a slot for the block, waiting up to ``timeout`` seconds in this thread."""
        event = threading.Event()
        waiter = self._enter(event.set)
        if waiter is not None and not event.wait(timeout):
            self._abandon(waiter)
            raise DeadlineExceeded(f"Deadline Exceeded while waiting for a free slot of model {self.name}")
        try:
            yield
        finally:
            self.release()

    async def admit_async(self) -> None:
        """Take a slot, waiting on the event loop; the caller must ``release()`` it."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            loop.call_soon_threadsafe(lambda: future.done() or future.set_result(None))

        waiter = self._enter(wake)
        if waiter is None:
            return
        try:
            await future
        except BaseException:  # cancelled (timeout, disconnect): give the slot back
            self._abandon(waiter)
            raise


class Isolation:
    """The gates of every model, created on first use."""

    def __init__(self, concurrency: int, queue: int, is_served: Callable[[str], bool]) -> None:
        if concurrency < 1 or queue < 0:
            raise InvalidArgument(f"{FLAG} must be >= 1 and --model_max_queued_requests >= 0")
        self.concurrency, self.queue = concurrency, queue
        self.is_served = is_served
        self._gates: dict[str, ModelGate] = {}
        self._lock = threading.Lock()

    def gate(self, model: str) -> ModelGate | None:
        """The model's gate; None for a name that is not served (the request fails NOT_FOUND), so
        clients cannot grow the table with made-up names."""
        if not self.is_served(model):
            return None
        with self._lock:
            gate = self._gates.get(model)
            if gate is None:
                gate = self._gates[model] = ModelGate(model, self.concurrency, self.queue)
            return gate


def default_concurrency(*pool_sizes: int) -> int:
    """Half the smallest shared worker pool (at least 1): a saturated model leaves the rest to others."""
    return max(1, min(pool_sizes) // 2)
