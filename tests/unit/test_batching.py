"""nbserve.batching: TF Serving's BatchingParameters and shared batch scheduler, with fake numpy models.

Timing-sensitive cases use a gated run function and ``num_batch_threads=1``: the only batch thread is held
inside a "blocker" batch while the test queues tasks, so batch composition is exact, not a race.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from nbserve.batching import (
    QUEUE_FULL,
    BatchedResult,
    BatchingParameters,
    BatchRecord,
    BatchScheduler,
    parse_batching_parameters,
    read_batching_parameters,
)
from nbserve.batching.stats import RESERVOIR_SIZE, QueueStats
from nbserve.errors import Internal, InvalidArgument, Unavailable

WAIT = 10.0  # generous bound for anything that should happen "soon"


def affine(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The fake model: y = 2x + row-sum(x); raises on the marker value -1."""
    x = inputs["x"]
    if (x == -1).any():
        raise ValueError("marker row")
    return {"y": 2 * x + x.sum(axis=1, keepdims=True), "rows": np.arange(len(x))}


class Recorder:
    """A run function that records every batch it receives and can be held at a gate."""

    def __init__(self, fn: Callable = affine, gated: bool = False) -> None:
        self.fn = fn
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.entered = threading.Event()
        self.lock = threading.Lock()
        self.batches: list[dict[str, np.ndarray]] = []
        self.keys: list[object] = []

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.lock:
            self.batches.append({k: v.copy() for k, v in inputs.items()})
        self.entered.set()
        assert self.gate.wait(WAIT)
        return self.fn(inputs)

    def for_key(self, key: object) -> Callable:
        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with self.lock:
                self.keys.append(key)
            return self(inputs)

        return run

    @property
    def sizes(self) -> list[int]:
        return [len(b["x"]) for b in self.batches]


class Call(threading.Thread):
    """One submit() on its own thread (a request thread)."""

    def __init__(self, sched: BatchScheduler, key: object, run: Callable, inputs: dict, params=None) -> None:
        super().__init__(daemon=True)
        self.args = (key, run, inputs, params)
        self.sched = sched
        self.result: BatchedResult | None = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.sched.submit(*self.args)
        except BaseException as e:
            self.error = e

    def get(self) -> BatchedResult:
        self.join(WAIT)
        assert not self.is_alive(), "submit() did not return"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.002)


def x_of(rows: int, cols: int = 3, start: float = 0.0) -> dict[str, np.ndarray]:
    return {"x": np.arange(rows * cols, dtype=np.float64).reshape(rows, cols) + start}


def expected(inputs: dict[str, np.ndarray]) -> np.ndarray:
    return affine(inputs)["y"]


@pytest.fixture
def make_sched() -> Iterator[Callable[..., BatchScheduler]]:
    made: list[BatchScheduler] = []

    def make(listener=None, **kw) -> BatchScheduler:
        kw.setdefault("num_batch_threads", 1)
        s = BatchScheduler(BatchingParameters(**kw), listener=listener)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


class Gated:
    """A scheduler whose only batch thread is held in a blocker batch of one row on key "blk"."""

    def __init__(self, sched: BatchScheduler, rec: Recorder) -> None:
        self.sched, self.rec = sched, rec
        self.blocker = Call(sched, "blk", rec, x_of(1, start=1000))
        assert rec.entered.wait(WAIT)

    def queue(self, key: object, inputs: dict, params=None, run: Callable | None = None) -> Call:
        """Submit on a thread and return once the task sits in ``key``'s queue."""
        before = self.sched.stats(key)["queued_tasks"]
        call = Call(self.sched, key, run or self.rec, inputs, params)
        wait_until(lambda: self.sched.stats(key)["queued_tasks"] > before or not call.is_alive())
        return call

    def release(self) -> None:
        self.rec.gate.set()
        self.blocker.join(WAIT)


# ------------------------------------------------------------------------------------------ merge / slice


def test_concurrent_mixed_rows_get_their_own_answers(make_sched) -> None:
    sched = make_sched(
        num_batch_threads=3, max_batch_size=16, batch_timeout_micros=2000, max_enqueued_batches=100
    )
    rec = Recorder()
    failures: list[str] = []
    total_rows = 0
    lock = threading.Lock()

    def client(seed: int) -> None:
        nonlocal total_rows
        rng = np.random.default_rng(seed)
        for _ in range(25):
            inputs = {"x": rng.random((int(rng.integers(1, 8)), 3))}
            res = sched.submit("m", rec, inputs)
            if not np.array_equal(res.outputs["y"], expected(inputs)):
                failures.append(f"client {seed}")
            first = res.outputs["rows"][0]
            if not np.array_equal(res.outputs["rows"], np.arange(first, first + len(inputs["x"]))):
                failures.append(f"client {seed}: rows not contiguous")
            with lock:
                total_rows += len(inputs["x"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 3)
    assert not failures
    st = sched.stats("m")
    assert st["tasks"] == 24 * 25 and st["rows"] == total_rows == sum(rec.sizes)
    assert max(rec.sizes) <= 16 and sum(st["batch_sizes"].values()) == st["batches"] == len(rec.sizes)
    assert st["batches"] < st["tasks"]  # some requests did share a batch


def test_batch_fills_to_max_batch_size_then_closes(make_sched) -> None:
    g = Gated(make_sched(max_batch_size=4), Recorder(gated=True))
    calls = [g.queue("m", x_of(1, start=i)) for i in range(10)]
    assert g.sched.stats("m")["queued_batches"] == 3  # 4 + 4 + 2
    g.release()
    for i, c in enumerate(calls):
        r = c.get()
        assert np.array_equal(r.outputs["y"], expected(x_of(1, start=i)))
    assert g.rec.sizes == [1, 4, 4, 2]
    assert sorted(c.get().batched_with for c in calls) == [1, 1] + [3] * 8


def test_full_batch_runs_without_waiting_for_timeout(make_sched) -> None:
    sched = make_sched(max_batch_size=4, batch_timeout_micros=60_000_000)
    rec = Recorder()
    t0 = time.monotonic()
    calls = [Call(sched, "m", rec, x_of(1, start=i)) for i in range(4)]
    for i, c in enumerate(calls):
        assert np.array_equal(c.get().outputs["y"], expected(x_of(1, start=i)))
    assert time.monotonic() - t0 < WAIT and rec.sizes == [4]


def test_lone_task_runs_after_batch_timeout(make_sched) -> None:
    sched = make_sched(max_batch_size=100, batch_timeout_micros=200_000)
    t0 = time.monotonic()
    r = sched.submit("m", Recorder(), x_of(2))
    elapsed = time.monotonic() - t0
    assert 0.19 <= elapsed < WAIT
    assert r.queue_delay_s >= 0.19 and r.batch_size == 2 and r.batched_with == 0
    assert np.array_equal(r.outputs["y"], expected(x_of(2)))


def test_earlier_deadline_of_another_queue_wakes_the_waiting_thread(make_sched) -> None:
    # The only thread sleeps until the 3 s deadline of "slow"; a later 50 ms batch must not wait for it.
    sched = make_sched()
    slow = Call(sched, "slow", Recorder(), x_of(1), BatchingParameters(batch_timeout_micros=3_000_000))
    wait_until(lambda: sched.stats("slow")["queued_tasks"] == 1)
    time.sleep(0.05)  # let the thread start sleeping on the slow deadline
    t0 = time.monotonic()
    sched.submit("fast", Recorder(), x_of(1), BatchingParameters(batch_timeout_micros=50_000))
    assert time.monotonic() - t0 < 2.0
    assert slow.is_alive()
    sched.close()  # fails the slow one without waiting 3 s
    with pytest.raises(Unavailable):
        slow.get()


def test_deadline_handed_over_after_the_timekeeper_takes_a_batch(make_sched) -> None:
    # Thread 1 sleeps until a's deadline, thread 2 without timeout; while a runs (held at the gate),
    # b's later deadline must still fire on thread 2.
    sched = make_sched(num_batch_threads=2)
    slow = Recorder(gated=True)
    a = Call(sched, "a", slow, x_of(1), BatchingParameters(batch_timeout_micros=100_000))
    b = Call(sched, "b", affine, x_of(2), BatchingParameters(batch_timeout_micros=300_000))
    rb = b.get()
    assert rb.queue_delay_s >= 0.29 and np.array_equal(rb.outputs["y"], expected(x_of(2)))
    assert a.is_alive()
    slow.gate.set()
    assert a.get().queue_delay_s >= 0.09


def test_inputs_as_lists_and_mappings(make_sched) -> None:
    sched = make_sched()
    inputs = {"x": [[1.0, 2.0, 3.0]]}
    r = sched.submit("m", affine, inputs)
    assert isinstance(inputs["x"], list)  # the caller's dict is left alone
    assert np.array_equal(r.outputs["y"], [[8.0, 10.0, 12.0]])


def test_threads_round_robin_across_queues(make_sched) -> None:
    rec = Recorder(gated=True)
    g = Gated(make_sched(max_batch_size=1), rec)
    calls = [g.queue("a", x_of(1), run=rec.for_key("a")) for _ in range(3)]
    calls.append(g.queue("b", x_of(1), run=rec.for_key("b")))
    g.release()
    for c in calls:
        c.get()
    assert rec.keys == ["a", "b", "a", "a"]


# ------------------------------------------------------------------------------------------ padding


def test_allowed_batch_sizes_pad_with_row0_of_last_task(make_sched) -> None:
    g = Gated(make_sched(max_batch_size=8, allowed_batch_sizes=(2, 4, 8)), Recorder(gated=True))
    calls = [g.queue("m", x_of(1, start=10)), g.queue("m", x_of(2, start=20))]
    g.release()
    assert g.rec.sizes == [2, 4]  # blocker 1 -> 2, batch 3 -> 4
    merged = g.rec.batches[1]["x"]
    assert np.array_equal(merged[3], x_of(2, start=20)["x"][0])
    r0, r1 = calls[0].get(), calls[1].get()
    assert np.array_equal(r0.outputs["y"], expected(x_of(1, start=10)))
    assert np.array_equal(r1.outputs["y"], expected(x_of(2, start=20)))
    assert (r1.batch_size, r1.padding, r1.batched_with) == (4, 1, 1)
    assert g.sched.stats("m")["padding_rows"] == 1 and g.sched.stats("blk")["padding_rows"] == 1


def test_different_trailing_shapes_go_to_separate_batches(make_sched) -> None:
    g = Gated(make_sched(max_batch_size=8), Recorder(gated=True))
    a = x_of(1, cols=3)
    b = x_of(1, cols=5)
    c = x_of(2, cols=3, start=7)
    d = {"x": x_of(1, cols=3)["x"].astype(np.float32)}
    calls = [g.queue("m", inp) for inp in (a, b, c, d)]
    assert g.sched.stats("m")["queued_batches"] == 3
    g.release()
    for inp, call in zip((a, b, c, d), calls, strict=True):
        assert np.array_equal(call.get().outputs["y"], expected(inp))
    shapes = sorted((bt["x"].shape, bt["x"].dtype.name) for bt in g.rec.batches[1:])
    assert shapes == [((1, 3), "float32"), ((1, 5), "float64"), ((3, 3), "float64")]


def test_pad_variable_length_inputs(make_sched) -> None:
    g = Gated(
        make_sched(max_batch_size=8, pad_variable_length_inputs=True), Recorder(lambda i: {"y": i["x"]}, True)
    )
    short = {"x": np.array([[1, 2]])}
    long = {"x": np.array([[5, 6, 7, 8], [9, 9, 9, 9]])}
    c1, c2 = g.queue("m", short), g.queue("m", long)
    g.release()
    assert np.array_equal(g.rec.batches[1]["x"], [[1, 2, 1, 1], [5, 6, 7, 8], [9, 9, 9, 9]])
    assert np.array_equal(c1.get().outputs["y"], [[1, 2, 1, 1]])  # TF returns the padded width too
    assert np.array_equal(c2.get().outputs["y"], long["x"])


# ------------------------------------------------------------------------------- splitting and limits


def test_large_batch_splitting_reassembles_in_order(make_sched) -> None:
    params = dict(max_batch_size=10, enable_large_batch_splitting=True, max_execution_batch_size=4)
    g = Gated(make_sched(**params), Recorder(gated=True))
    one = x_of(1, start=100)
    seven = x_of(7, start=200)
    c1, c7 = g.queue("m", one), g.queue("m", seven)
    assert g.sched.stats("m")["queued_batches"] == 2  # [1 + 3 rows], [4 rows]
    g.release()
    assert np.array_equal(c1.get().outputs["y"], expected(one))
    r7 = c7.get()
    assert np.array_equal(r7.outputs["y"], expected(seven))
    assert (r7.num_batches, r7.batch_size, r7.batched_with) == (2, 8, 1)
    assert g.rec.sizes == [1, 4, 4]
    ten = x_of(10, start=300)
    r10 = g.sched.submit("m", g.rec, ten)
    assert np.array_equal(r10.outputs["y"], expected(ten)) and r10.num_batches == 3
    assert g.rec.sizes[-3:] == [4, 4, 2]
    with pytest.raises(InvalidArgument, match="Task size 11 is larger than maximum input batch size 10"):
        g.sched.submit("m", g.rec, x_of(11))


def test_too_large_task_refused_before_queueing(make_sched) -> None:
    sched = make_sched(max_batch_size=4)
    rec = Recorder()
    with pytest.raises(InvalidArgument) as e:
        sched.submit("m", rec, x_of(5))
    assert str(e.value).startswith("Task size 5 is larger than maximum input batch size 4")
    assert "enable_large_batch_splitting" in str(e.value)
    assert rec.batches == [] and sched.stats("m")["tasks"] == 0


def test_full_queue_answers_unavailable_at_once(make_sched) -> None:
    g = Gated(make_sched(max_batch_size=2, max_enqueued_batches=2), Recorder(gated=True))
    calls = [g.queue("m", x_of(2, start=i)) for i in range(2)]
    refused = Call(g.sched, "m", g.rec, x_of(1))
    with pytest.raises(Unavailable, match=QUEUE_FULL) as raised:
        refused.get()  # while the thread is still held: no waiting for room
    assert "max_enqueued_batches=2" in str(raised.value)  # the hint names the knob
    split = BatchingParameters(max_batch_size=2, max_enqueued_batches=2, enable_large_batch_splitting=True)
    with pytest.raises(Unavailable):
        Call(g.sched, "m", g.rec, x_of(1), split).get()
    assert g.sched.stats("m")["rejected"] == 2
    g.release()
    for i, c in enumerate(calls):
        assert np.array_equal(c.get().outputs["y"], expected(x_of(2, start=i)))


def test_bad_inputs_rejected_without_disturbing_queued_tasks(make_sched) -> None:
    g = Gated(make_sched(max_batch_size=8), Recorder(gated=True))
    good = g.queue("m", x_of(2))
    with pytest.raises(InvalidArgument, match="must have at least one dimension") as e:
        g.sched.submit("m", g.rec, {"x": np.float32(3)})
    assert "'x'" in str(e.value)
    with pytest.raises(InvalidArgument, match="must have equal 0th-dimension size") as e:
        g.sched.submit("m", g.rec, {"x": np.zeros((2, 3)), "z": np.zeros((3,))})
    assert "'x': 2" in str(e.value) and "'z': 3" in str(e.value)
    with pytest.raises(InvalidArgument, match="at least one input tensor"):
        g.sched.submit("m", g.rec, {})
    assert g.sched.stats("m")["queued_tasks"] == 1
    g.release()
    assert np.array_equal(good.get().outputs["y"], expected(x_of(2)))
    assert g.sched.stats("m")["tasks"] == 1


# ------------------------------------------------------------------------------------------ errors


def test_failing_batch_fails_only_its_own_tasks(make_sched) -> None:
    g = Gated(make_sched(max_batch_size=2), Recorder(gated=True))
    bad = {"x": np.array([[-1.0, 0.0, 0.0]])}
    calls = [
        g.queue("m", x_of(1)),
        g.queue("m", bad),
        g.queue("m", x_of(1, start=5)),
        g.queue("m", x_of(1, start=6)),
    ]
    g.release()
    errors = []
    for c in calls[:2]:
        with pytest.raises(ValueError, match="marker row") as e:
            c.get()
        errors.append(e.value)
    assert errors[0] is errors[1]  # the same error, unchanged
    for c, start in zip(calls[2:], (5, 6), strict=True):
        assert np.array_equal(c.get().outputs["y"], expected(x_of(1, start=start)))
    st = g.sched.stats("m")
    assert (st["failed_batches"], st["failed_tasks"], st["tasks"]) == (1, 2, 4)


def test_serving_error_from_run_passes_through(make_sched) -> None:
    sched = make_sched()

    def run(inputs):
        raise InvalidArgument("bad feature")

    with pytest.raises(InvalidArgument, match="^bad feature$"):
        sched.submit("m", run, x_of(1))


def test_output_without_batch_dimension_is_internal(make_sched) -> None:
    g = Gated(make_sched(max_batch_size=8), Recorder(lambda i: {"y": i["x"], "total": i["x"].sum()}, True))
    calls = [g.queue("m", x_of(1)), g.queue("m", x_of(2))]
    g.release()
    for c in calls:
        with pytest.raises(Internal, match="output tensor 'total'"):
            c.get()


# ------------------------------------------------------------------------------------------ visibility


def test_stats_match_the_results(make_sched) -> None:
    records: list[BatchRecord] = []
    sched = make_sched(max_batch_size=8, allowed_batch_sizes=(4, 8), listener=records.append)
    g = Gated(sched, Recorder(gated=True))
    calls = [g.queue("m", x_of(n)) for n in (1, 2, 1)]
    g.release()
    results = [c.get() for c in calls]
    st = sched.stats("m")
    assert {k: st[k] for k in ("tasks", "batches", "rows", "padding_rows", "failed_batches", "rejected")} == {
        "tasks": 3,
        "batches": 1,
        "rows": 4,
        "padding_rows": 0,
        "failed_batches": 0,
        "rejected": 0,
    }
    assert st["batch_sizes"] == {4: 1} and st["queued_batches"] == st["queued_tasks"] == 0
    assert st["batched_with"] == {2: 3} and st["padding_waste"] == 0.0 and st["params"].max_batch_size == 8
    assert st["last_batch"] == {
        "batch_size": 4,
        "padding": 0,
        "batched_with": 2,
        "max_queue_delay_s": max(r.queue_delay_s for r in results),
    }
    delays = sorted(r.queue_delay_s for r in results)
    qd = st["queue_delay_s"]
    assert qd["count"] == 3 and qd["mean"] == pytest.approx(sum(delays) / 3)
    assert (qd["p50"], qd["p99"], qd["max"]) == (delays[1], delays[2], delays[2])
    blk = sched.stats()["blk"]
    assert (blk["tasks"], blk["batch_sizes"], blk["padding_rows"], blk["padding_waste"]) == (
        1,
        {4: 1},
        3,
        0.75,
    )
    assert set(sched.stats()) == {"blk", "m"}
    assert sched.stats("unknown")["tasks"] == 0 and sched.stats("unknown")["last_batch"] is None
    wait_until(lambda: len(records) == 2)
    rec_m = next(r for r in records if r.key == "m")
    assert (rec_m.batch_size, rec_m.padding, rec_m.num_tasks, rec_m.error) == (4, 0, 3, None)
    assert sorted(rec_m.queue_delays_s) == delays


def test_reservoir_is_bounded() -> None:
    import random

    st = QueueStats(random.Random(1))
    for _ in range(5):
        st.add_batch(1000, 0, [i / 1000 for i in range(1000)])
    snap = st.snapshot()
    assert len(st._reservoir) == RESERVOIR_SIZE
    assert snap["queue_delay_s"]["count"] == 5000 and snap["tasks"] == 5000
    assert snap["queue_delay_s"]["mean"] == pytest.approx(0.4995)
    assert 0.4 < snap["queue_delay_s"]["p50"] < 0.6 and snap["queue_delay_s"]["p99"] > 0.95


def test_listener_errors_are_ignored(make_sched) -> None:
    def listener(record):
        raise RuntimeError("metrics down")

    sched = make_sched(listener=listener)
    assert np.array_equal(sched.submit("m", affine, x_of(1)).outputs["y"], expected(x_of(1)))
    assert np.array_equal(sched.submit("m", affine, x_of(2)).outputs["y"], expected(x_of(2)))


def test_per_key_parameters(make_sched) -> None:
    sched = make_sched(max_batch_size=2)
    with pytest.raises(InvalidArgument, match="maximum input batch size 2"):
        sched.submit("small", affine, x_of(3))
    big = BatchingParameters(max_batch_size=64)
    assert sched.submit("big", affine, x_of(3), big).batch_size == 3
    assert sched.submit("big", affine, x_of(5)).batch_size == 5  # the queue keeps its parameters
    with pytest.raises(InvalidArgument, match="Last entry in allowed_batch_sizes"):
        sched.submit("bad", affine, x_of(1), BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4,)))
    sched.remove("big")
    assert "big" not in sched.stats()


# ------------------------------------------------------------------------------------------ lifecycle


def test_close_fails_pending_tasks_and_stops_threads(make_sched) -> None:
    g = Gated(make_sched(max_batch_size=1, num_batch_threads=2), Recorder(gated=True))
    second = Call(g.sched, "other", g.rec, x_of(1))  # occupies the second thread
    wait_until(lambda: len(g.rec.batches) == 2)
    pending = [g.queue("m", x_of(1)) for _ in range(3)]
    closer = threading.Thread(target=g.sched.close)
    closer.start()
    for c in pending:
        with pytest.raises(Unavailable, match="shutting down"):
            c.get()
    assert closer.is_alive()  # waits for the running batches
    g.rec.gate.set()
    closer.join(WAIT)
    assert not closer.is_alive()
    assert np.array_equal(g.blocker.get().outputs["y"], expected(x_of(1, start=1000)))
    assert np.array_equal(second.get().outputs["y"], expected(x_of(1)))
    assert not [t for t in threading.enumerate() if t.name.startswith("batch_threads")]
    g.sched.close()  # idempotent
    with pytest.raises(Unavailable, match="shutting down"):
        g.sched.submit("m", affine, x_of(1))


def test_no_threads_until_first_submit() -> None:
    sched = BatchScheduler(BatchingParameters(num_batch_threads=2, thread_pool_name="lazy_pool"))
    assert not [t for t in threading.enumerate() if t.name.startswith("lazy_pool")]
    with sched:
        sched.submit("m", affine, x_of(1))
        assert len([t for t in threading.enumerate() if t.name.startswith("lazy_pool")]) == 2
    assert sched.closed and not [t for t in threading.enumerate() if t.name.startswith("lazy_pool")]


# ------------------------------------------------------------------------------------------ parameters


def test_defaults_match_tf_serving() -> None:
    import os

    p = BatchingParameters()
    assert (p.max_batch_size, p.batch_timeout_micros, p.max_enqueued_batches) == (1000, 0, 10)
    assert p.num_batch_threads == os.cpu_count() and p.allowed_batch_sizes == ()
    assert not p.pad_variable_length_inputs and not p.enable_large_batch_splitting
    assert p.max_execution_batch_size is None and p.batch_cap == 1000
    assert parse_batching_parameters("") == p


def test_parse_text_proto(tmp_path) -> None:
    text = """
        # serving_config.md example, plus the rest
        max_batch_size { value: 128 }
        batch_timeout_micros { value: 0 }
        max_enqueued_batches { value: 1000000 }
        num_batch_threads { value: 8 }
        thread_pool_name { value: "pool" }
        allowed_batch_sizes: 32
        allowed_batch_sizes: 64
        allowed_batch_sizes: 128
        pad_variable_length_inputs: true
        enable_large_batch_splitting { value: true }
        max_execution_batch_size { value: 128 }
    """
    p = parse_batching_parameters(text)
    assert p == BatchingParameters(
        max_batch_size=128,
        batch_timeout_micros=0,
        max_enqueued_batches=1_000_000,
        num_batch_threads=8,
        thread_pool_name="pool",
        allowed_batch_sizes=(32, 64, 128),
        pad_variable_length_inputs=True,
        enable_large_batch_splitting=True,
        max_execution_batch_size=128,
    )
    assert p.validate() is p
    assert BatchingParameters.from_proto(p.to_proto()) == p
    path = tmp_path / "batching.txt"
    path.write_text(text)
    assert read_batching_parameters(path) == p


def test_parse_errors_name_the_file_and_field(tmp_path) -> None:
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_size { value: 128 }\nmax_batch_sise { value: 1 }\n")
    with pytest.raises(InvalidArgument) as e:
        read_batching_parameters(path)
    assert str(path) in str(e.value) and "max_batch_sise" in str(e.value) and "2:" in str(e.value)
    with pytest.raises(InvalidArgument, match="max_batch_size"):
        parse_batching_parameters("max_batch_size: 128")  # a wrapper needs { value: ... }
    with pytest.raises(InvalidArgument, match="Cannot read batching parameters file"):
        read_batching_parameters(tmp_path / "missing.txt")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            dict(max_batch_size=100, allowed_batch_sizes=(8, 64)),
            "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 64; expected 100",
        ),
        (
            dict(max_batch_size=64, allowed_batch_sizes=(8, 8, 64)),
            "allowed_batch_sizes entries must be monotonically increasing",
        ),
        (
            dict(max_batch_size=64, allowed_batch_sizes=(0, 64)),
            "allowed_batch_sizes entries must be positive",
        ),
        (dict(max_batch_size=0), "max_batch_size must be positive; was 0"),
        (dict(num_batch_threads=0), "num_batch_threads must be positive"),
        (dict(max_enqueued_batches=-1), "max_enqueued_batches must be positive"),
        (dict(batch_timeout_micros=-5), "batch_timeout_micros must be non-negative; was -5"),
        (
            dict(max_batch_size=8, enable_large_batch_splitting=True, max_execution_batch_size=16),
            "max_batch_size must be greater than or equal to max_execution_batch_size",
        ),
        (
            dict(
                max_batch_size=64,
                enable_large_batch_splitting=True,
                max_execution_batch_size=16,
                allowed_batch_sizes=(8, 64),
            ),
            "Last entry in allowed_batch_sizes must match max_execution_batch_size; last entry was 64; "
            "expected 16",
        ),
    ],
)
def test_validation_errors(kwargs, message) -> None:
    with pytest.raises(InvalidArgument) as e:
        BatchingParameters(**kwargs).validate()
    assert message in str(e.value)


def test_allowed_sizes_list_is_normalized() -> None:
    p = BatchingParameters(max_batch_size=4, allowed_batch_sizes=[2, 4])  # type: ignore[arg-type]
    assert p.allowed_batch_sizes == (2, 4) and hash(p) == hash(
        BatchingParameters(max_batch_size=4, allowed_batch_sizes=(2, 4))
    )
