"""TF Serving's shared batch scheduler: one pool of batch threads serving many batching queues.

Threading model: every piece of scheduler state (queues, the round-robin list of queues with work,
statistics) is guarded by one ``threading.Condition``. Submitters validate their inputs without the lock,
then take it once to place the task (or its chunks) into a batch and ``notify()`` one worker when a batch
opened or closed. Each task owns a raw lock held until its batch is done; the worker releases them all at
once, so every submitter of the batch becomes runnable together (a lock shared by the batch and handed on
waiter to waiter would wake them one after another, each behind a context switch). Submitters slice their
rows out of the batch outputs themselves. Workers pick ready batches round-robin across queues (oldest first
within a queue) and run them without the lock.

Timeouts: an idle worker computes the earliest deadline (first task's enqueue time + batch_timeout_micros)
among open batches. One worker at a time, the *timekeeper*, sleeps on the condition until that deadline;
the others sleep without a timeout, so a deadline wakes one thread, not the whole pool. A new open batch
notifies a worker, which becomes the timekeeper if its deadline is earlier; a worker that takes a batch while
others are pending and no timekeeper is left notifies another one. No polling, no per-task threads.
"""

from __future__ import annotations

import bisect
import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nbserve.batching.params import BatchingParameters
from nbserve.batching.stats import QueueStats
from nbserve.batching.tensors import check_outputs, concat_outputs, inspect_inputs, merge_inputs
from nbserve.errors import InvalidArgument, Unavailable

__all__ = ["BatchScheduler", "BatchedResult", "BatchRecord", "RunFn"]

RunFn = Callable[[dict[str, np.ndarray]], Mapping[str, np.ndarray]]

QUEUE_FULL = "The batch scheduling queue to which this task was submitted is full"
SHUTTING_DOWN = "Batch scheduler is closed: server is shutting down"

_log = logging.getLogger(__name__)
_now = time.monotonic
_allocate_lock = threading.Lock


@dataclass(frozen=True, slots=True)
class BatchedResult:
    """One request's outputs and how it was batched.

    ``batch_size`` counts the rows executed (padding included), ``padding`` the padding rows,
    ``batched_with`` the other tasks in the same batch; ``queue_delay_s`` is enqueue-to-batch-start.
    A request split across ``num_batches`` batches reports the sums (the maximum for the delay).
    """

    outputs: dict[str, np.ndarray]
    batch_size: int
    padding: int
    batched_with: int
    queue_delay_s: float
    num_batches: int = 1


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """What the ``listener`` hook receives after each executed batch."""

    key: Hashable
    batch_size: int
    padding: int
    num_tasks: int
    queue_delays_s: tuple[float, ...]  # per task, enqueue to batch start
    run_s: float
    error: BaseException | None


class _Task:
    __slots__ = ("inputs", "size", "t_enq", "batch", "offset", "done")

    def __init__(self, inputs: dict[str, np.ndarray], size: int, t_enq: float) -> None:
        self.inputs = inputs
        self.size = size
        self.t_enq = t_enq
        self.batch: _Batch
        self.offset = 0
        # A raw lock is far cheaper to create and wait on than a threading.Event (a pure-Python Condition).
        self.done = _allocate_lock()
        self.done.acquire()


class _Batch:
    __slots__ = (
        "queue",
        "params",
        "run",
        "sig",
        "tasks",
        "size",
        "t0",
        "deadline",
        "exec_size",
        "t_start",
        "delays",
        "outputs",
        "error",
    )

    def __init__(self, queue: _Queue, run: RunFn, sig: tuple, t0: float) -> None:
        self.queue = queue
        self.params = queue.params
        self.run = run
        self.sig = sig
        self.tasks: list[_Task] = []
        self.size = 0
        self.t0 = t0
        self.deadline = t0 + queue.params.batch_timeout_micros * 1e-6
        self.exec_size = 0
        self.t_start = 0.0
        self.delays: tuple[float, ...] = ()
        self.outputs: dict[str, np.ndarray] = {}
        self.error: BaseException | None = None

    def finish(self) -> None:
        for task in self.tasks:
            task.done.release()

    def add(self, task: _Task) -> None:
        task.batch = self
        task.offset = self.size
        self.size += task.size
        self.tasks.append(task)


class _Queue:
    """Batches of one key. ``open`` holds at most one open batch per input signature (dtypes and trailing
    shapes), in creation order; ``closed`` holds full/superseded batches in FIFO order."""

    __slots__ = ("key", "params", "open", "closed", "stats", "in_rr")

    def __init__(self, key: Hashable, params: BatchingParameters, stats: QueueStats) -> None:
        self.key = key
        self.params = params
        self.open: dict[tuple, _Batch] = {}
        self.closed: deque[_Batch] = deque()
        self.stats = stats
        self.in_rr = False

    def count(self) -> int:
        return len(self.open) + len(self.closed)

    def close(self, b: _Batch) -> None:
        del self.open[b.sig]
        self.closed.append(b)

    def pop_ready(self, now: float) -> _Batch | float | None:
        """The oldest runnable batch, else the earliest open-batch deadline, else None."""
        first_closed = self.closed[0] if self.closed else None
        if self.open:
            if len(self.open) == 1:
                o = next(iter(self.open.values()))
            else:  # one open batch per input signature; parameters may have changed in between
                o = min(self.open.values(), key=_deadline)
            if o.deadline <= now and (first_closed is None or o.t0 < first_closed.t0):
                del self.open[o.sig]
                return o
            if first_closed is None:
                return o.deadline
        if first_closed is not None:
            return self.closed.popleft()
        return None


def _deadline(b: _Batch) -> float:
    return b.deadline


class BatchScheduler:
    """A shared batch scheduler: ``num_batch_threads`` worker threads round-robin across per-key queues.

    ``params`` are the defaults for queues created without their own parameters (and give the thread
    count and pool name unless ``num_batch_threads`` is passed; per-queue parameters never change the
    shared pool, as in TF Serving). ``listener(BatchRecord)`` is called on a batch thread after each batch;
    it must be quick and its exceptions are logged and ignored.

    Deviation from TF (an improvement): without ``pad_variable_length_inputs``, TF fails every task of a
    batch whose tasks have different trailing shapes (FAILED_PRECONDITION). Here a task only joins an open
    batch with the same input names, dtypes and trailing shapes (with padding on: the same ranks); other
    tasks go to their own batch of the same queue, so nobody fails for a neighbour's shape.
    """

    def __init__(
        self,
        params: BatchingParameters | None = None,
        *,
        num_batch_threads: int | None = None,
        listener: Callable[[BatchRecord], None] | None = None,
    ) -> None:
        self._params = (params if params is not None else BatchingParameters()).validate()
        self._num_threads = (
            num_batch_threads if num_batch_threads is not None else self._params.num_batch_threads
        )
        if self._num_threads < 1:
            raise InvalidArgument(f"num_batch_threads must be positive; was {self._num_threads}")
        self._listener = listener
        self._cond = threading.Condition(threading.Lock())
        self._queues: dict[Hashable, _Queue] = {}
        self._rr: deque[_Queue] = deque()  # queues holding batches, in round-robin order
        self._timer: float | None = None  # the deadline the timekeeper thread sleeps until
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._rng = random.Random(0)

    @property
    def num_batch_threads(self) -> int:
        return self._num_threads

    @property
    def closed(self) -> bool:
        return self._closed

    # ---------------------------------------------------------------- submit (request threads)

    def submit(
        self,
        key: Hashable,
        run: RunFn,
        inputs: Mapping[str, np.ndarray],
        params: BatchingParameters | None = None,
    ) -> BatchedResult:
        """Batch ``inputs`` with other tasks of ``key``'s queue; block until this task's outputs are ready.

        ``run(merged_inputs) -> outputs`` executes a whole batch on a batch thread; all submits for one
        key must pass an equivalent ``run``. ``params`` (validated when they first apply) become the
        queue's parameters from the next batch on; ``None`` keeps the queue's, or the scheduler defaults.
        Raises InvalidArgument for unbatchable inputs, Unavailable when the queue is full or the scheduler
        is closed, and whatever ``run`` raised for this task's batch (the same exception object for
        every task in that batch).
        """
        q = self._queues.get(key)
        p = params if params is not None else (q.params if q is not None else self._params)
        size, sig, inputs = inspect_inputs(inputs, p)
        now = _now()
        with self._cond:
            if self._closed:
                raise Unavailable(SHUTTING_DOWN)
            q = self._queues.get(key)
            if q is None:
                q = self._queues[key] = _Queue(key, p.validate(), QueueStats(self._rng))
            elif params is not None and params is not q.params and params != q.params:
                q.params = params.validate()
            if q.params is not p:  # raced with a parameter change: check against what applies now
                p = q.params
                size, sig, inputs = inspect_inputs(inputs, p)
            if not self._threads:
                self._start_threads()
            tasks = self._enqueue(q, run, inputs, size, sig, now)
        if len(tasks) == 1:
            return _result(tasks[0])
        return _split_result(tasks)

    def _enqueue(
        self, q: _Queue, run: RunFn, inputs: dict[str, np.ndarray], size: int, sig: tuple, now: float
    ) -> list[_Task]:
        p = q.params
        cap = p.batch_cap
        b = q.open.get(sig)
        room = cap - b.size if b is not None else 0
        if size <= room and b is not None:
            task = _Task(inputs, size, now)
            b.add(task)
            if b.size == cap:
                q.close(b)
                self._cond.notify()
            return [task]
        if not p.enable_large_batch_splitting or size == 0:
            if q.count() >= p.max_enqueued_batches:
                q.stats.rejected += 1
                raise _queue_full(p)
            if b is not None:
                q.close(b)
            task = _Task(inputs, size, now)
            self._new_batch(q, run, sig, now).add(task)
            if size == cap:
                q.close(task.batch)
            self._cond.notify()
            return [task]
        # Splitting (TF): fill the open batch's room, then whole new batches of at most `cap` rows.
        if q.count() + math.ceil((size - room) / cap) > p.max_enqueued_batches:
            q.stats.rejected += 1
            raise _queue_full(p)
        tasks = []
        start = 0
        while start < size:
            n = min(size - start, room if start == 0 and room else cap)
            target = b if start == 0 and room else self._new_batch(q, run, sig, now)
            task = _Task({k: v[start : start + n] for k, v in inputs.items()}, n, now)
            target.add(task)
            if target.size == cap:
                q.close(target)
            tasks.append(task)
            start += n
        self._cond.notify(len(tasks))
        return tasks

    def _new_batch(self, q: _Queue, run: RunFn, sig: tuple, now: float) -> _Batch:
        b = q.open[sig] = _Batch(q, run, sig, now)
        if not q.in_rr:
            q.in_rr = True
            self._rr.append(q)
        return b

    def _start_threads(self) -> None:
        name = self._params.thread_pool_name
        for i in range(self._num_threads):
            t = threading.Thread(target=self._worker, name=f"{name}_{i}", daemon=True)
            t.start()
            self._threads.append(t)

    # ---------------------------------------------------------------- batch threads

    def _worker(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._closed:
                        return
                    now = _now()
                    b, deadline = self._take(now)
                    if b is not None:
                        break
                    if deadline is None:
                        cond.wait()
                    elif self._timer is None or deadline < self._timer:
                        self._timer = deadline
                        cond.wait(deadline - now)
                        if self._timer == deadline:
                            self._timer = None
                    else:
                        cond.wait()
                if self._rr and self._timer is None:  # hand the remaining deadlines to an idle thread
                    cond.notify()
            self._execute(b)

    def _take(self, now: float) -> tuple[_Batch | None, float | None]:
        """Under the lock: pop the next runnable batch round-robin across queues and account for it."""
        rr = self._rr
        earliest = None
        for _ in range(len(rr)):
            q = rr[0]
            got = q.pop_ready(now)
            if isinstance(got, _Batch):
                if q.count():
                    rr.rotate(-1)
                else:
                    rr.popleft()
                    q.in_rr = False
                self._start(got, now)
                return got, None
            if got is None:  # emptied by close() or remove(); not expected otherwise
                rr.popleft()
                q.in_rr = False
                continue
            rr.rotate(-1)
            if earliest is None or got < earliest:
                earliest = got
        return None, earliest

    @staticmethod
    def _start(b: _Batch, now: float) -> None:
        sizes = b.params.allowed_batch_sizes
        b.exec_size = b.size
        if sizes and b.size:
            i = bisect.bisect_left(sizes, b.size)
            if i < len(sizes):
                b.exec_size = sizes[i]
        b.t_start = now
        b.delays = tuple(now - t.t_enq for t in b.tasks)
        b.queue.stats.add_batch(b.exec_size, b.exec_size - b.size, b.delays)

    def _execute(self, b: _Batch) -> None:
        t0 = time.perf_counter()
        try:
            tasks = b.tasks
            if len(tasks) == 1 and b.exec_size == b.size:
                merged = tasks[0].inputs
            else:
                merged = merge_inputs(
                    [t.inputs for t in tasks],
                    [t.size for t in tasks],
                    b.exec_size,
                    b.params.pad_variable_length_inputs,
                )
            b.outputs = check_outputs(b.run(merged), b.exec_size)
        except BaseException as e:  # noqa: BLE001 - delivered to the batch's submitters
            b.error = e
        run_s = time.perf_counter() - t0
        with self._cond:  # before the results: a caller holding its answer sees it counted
            b.queue.stats.add_run(run_s, len(b.tasks) if b.error is not None else 0)
        b.finish()
        if self._listener is not None:
            record = BatchRecord(
                b.queue.key,
                b.exec_size,
                b.exec_size - b.size,
                len(b.tasks),
                b.delays,
                run_s,
                b.error,
            )
            try:
                self._listener(record)
            except Exception:
                _log.exception("batching listener failed")

    # ---------------------------------------------------------------- visibility and lifecycle

    def stats(self, key: Hashable | None = None) -> dict[Any, Any]:
        """Statistics of one key's queue, or ``{key: stats}`` for every queue when ``key`` is None.

        Per queue: ``tasks`` and ``batches`` executed (a split request counts once per chunk), ``rows`` and
        ``padding_rows`` executed, ``padding_waste`` (padding share of the executed rows),
        ``failed_batches`` / ``failed_tasks``, ``rejected`` (queue full), ``batch_sizes`` (executed size
        incl. padding -> count), ``batched_with`` (N -> tasks that shared their batch with N others),
        ``last_batch`` (batch_size, padding, batched_with, max_queue_delay_s; None before the first),
        ``queue_delay_s`` (count, mean, p50, p99 from a 1024-sample reservoir, max), and
        ``run_s`` (count, mean, max seconds a batch ran), ``queued_batches`` / ``queued_tasks`` waiting now,
        and the queue's ``params``.
        """
        with self._cond:
            if key is not None:
                q = self._queues.get(key)
                return (
                    _snapshot(q)
                    if q is not None
                    else _snapshot(_Queue(key, self._params, QueueStats(self._rng)))
                )
            return {k: _snapshot(q) for k, q in self._queues.items()}

    def remove(self, key: Hashable) -> None:
        """Forget ``key``'s queue and its statistics (e.g. its model version unloaded). Batches already
        queued still run; a later submit for ``key`` starts a fresh queue."""
        with self._cond:
            self._queues.pop(key, None)

    def close(self) -> None:
        """Stop the batch threads; queued tasks fail with Unavailable. Running batches finish first.
        Idempotent."""
        with self._cond:
            pending: list[_Batch] = []
            if not self._closed:
                self._closed = True
                for q in self._rr:
                    pending.extend(q.closed)
                    pending.extend(q.open.values())
                    q.closed.clear()
                    q.open.clear()
                    q.in_rr = False
                self._rr.clear()
                self._cond.notify_all()
            threads = list(self._threads)
        for b in pending:
            b.error = Unavailable(SHUTTING_DOWN)
            b.finish()
        current = threading.current_thread()
        for t in threads:
            if t is not current:
                t.join()

    def __enter__(self) -> BatchScheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._queues)} queues"
        return f"<BatchScheduler {self._num_threads} threads, {state}>"


def _queue_full(p: BatchingParameters) -> Unavailable:
    return Unavailable(
        f"{QUEUE_FULL} (it holds max_enqueued_batches={p.max_enqueued_batches} batches of up to "
        f"{p.batch_cap} rows: retry later, or raise max_enqueued_batches or num_batch_threads)"
    )


def _result(task: _Task) -> BatchedResult:
    task.done.acquire()
    b = task.batch
    if b.error is not None:
        raise b.error
    lo, hi = task.offset, task.offset + task.size
    return BatchedResult(
        {k: v[lo:hi] for k, v in b.outputs.items()},
        b.exec_size,
        b.exec_size - b.size,
        len(b.tasks) - 1,
        b.t_start - task.t_enq,
    )


def _split_result(tasks: list[_Task]) -> BatchedResult:
    parts = [_result(t) for t in tasks]
    return BatchedResult(
        concat_outputs([r.outputs for r in parts]),
        sum(r.batch_size for r in parts),
        sum(r.padding for r in parts),
        sum(r.batched_with for r in parts),
        max(r.queue_delay_s for r in parts),
        len(parts),
    )


def _snapshot(q: _Queue) -> dict[str, Any]:
    snap = q.stats.snapshot()
    snap["queued_batches"] = q.count()
    snap["queued_tasks"] = sum(len(b.tasks) for b in (*q.closed, *q.open.values()))
    snap["params"] = q.params
    return snap
