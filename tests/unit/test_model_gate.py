"""ModelGate: bounded slots, FIFO hand-over, a bounded queue, and waiters that give up."""

from __future__ import annotations

import asyncio
import threading

import pytest

from nbserve.errors import DeadlineExceeded, Unavailable
from nbserve.isolation import Isolation, ModelGate, default_concurrency


def test_slots_queue_and_refusal() -> None:
    gate = ModelGate("m", concurrency=1, queue=1)
    entered = threading.Event()
    order: list[str] = []

    def second() -> None:
        entered.set()
        with gate.admit(timeout=10):
            order.append("second")

    with gate.admit():
        thread = threading.Thread(target=second)
        thread.start()
        entered.wait()
        while gate.in_flight < 2:
            pass
        with pytest.raises(Unavailable, match="model m is overloaded: 2 requests in flight"):
            with gate.admit():
                pass
        order.append("first")
    thread.join(10)
    assert order == ["first", "second"] and gate.in_flight == 0


def test_waiters_that_give_up_leave_the_queue() -> None:
    gate = ModelGate("m", concurrency=1, queue=2)
    with gate.admit():
        with pytest.raises(DeadlineExceeded):
            with gate.admit(timeout=0.01):
                pass

        async def cancelled() -> None:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(gate.admit_async(), 0.01)

        asyncio.run(cancelled())
        assert gate.in_flight == 1
    assert gate.in_flight == 0


def test_unknown_models_get_no_gate_and_defaults() -> None:
    isolation = Isolation(2, 4, lambda name: name == "known")
    assert isolation.gate("made-up") is None
    assert isolation.gate("known") is isolation.gate("known")
    assert default_concurrency(8, 16) == 4 and default_concurrency(1, 1) == 1
