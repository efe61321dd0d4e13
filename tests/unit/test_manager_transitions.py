"""Manager state machine with a fake loader: ordering, slow and failing loads, stop, listeners."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from nbserve.errors import DeadlineExceeded, InvalidArgument, Unknown
from nbserve.manager import Manager, ModelConfig, ServableState, VersionPolicy, VersionStatus
from nbserve.servables import Servable

START, LOADING, AVAILABLE, UNLOADING, END = (
    ServableState.START,
    ServableState.LOADING,
    ServableState.AVAILABLE,
    ServableState.UNLOADING,
    ServableState.END,
)


class FakeServable(Servable):
    def __init__(self, name: str, version: int) -> None:
        self.name, self.version, self.signatures = name, version, {}
        self.unloads = 0

    def run(self, signature, inputs, output_keys):
        return {"version": np.asarray(self.version)}

    def unload(self) -> None:
        self.unloads += 1


class FakeLoader:
    """Loads instantly unless a version is gated (held until released) or set to fail."""

    def __init__(self) -> None:
        self.gates: dict[int, threading.Event] = {}
        self.failures: dict[int, Exception] = {}
        self.loaded: list[FakeServable] = []
        self.calls: list[int] = []

    def gate(self, version: int) -> threading.Event:
        self.gates[version] = threading.Event()
        return self.gates[version]

    def __call__(self, name: str, version: int, path: str) -> Servable:
        self.calls.append(version)
        if version in self.gates:
            assert self.gates[version].wait(10)
        if version in self.failures:
            raise self.failures[version]
        servable = FakeServable(name, version)
        self.loaded.append(servable)
        return servable


@pytest.fixture
def loader() -> FakeLoader:
    return FakeLoader()


@pytest.fixture
def manager(loader: FakeLoader) -> Iterator[Manager]:
    m = Manager(file_system_poll_wait_seconds=-1, loader=loader)
    yield m
    m.stop()


def versions(base, *numbers: int) -> None:
    for n in numbers:
        (base / str(n)).mkdir(parents=True, exist_ok=True)


def states(manager: Manager, name: str = "m") -> dict[int, ServableState]:
    return {s.version: s.state for s in manager.status(name)}


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


def test_old_version_serves_during_a_slow_load(tmp_path, loader: FakeLoader, manager: Manager) -> None:
    versions(tmp_path, 1)
    manager.reload_config([ModelConfig("m", str(tmp_path))])
    gate = loader.gate(2)
    versions(tmp_path, 2)
    manager.poll_once()
    wait_until(lambda: states(manager) == {2: LOADING, 1: AVAILABLE})
    held = manager.servable("m")  # an in-flight request keeps this one
    assert held.version == 1
    gate.set()
    wait_until(lambda: states(manager) == {2: AVAILABLE, 1: END})
    assert manager.servable("m").version == 2
    assert held.run(None, {}, [])["version"] == 1  # still usable after its unload
    assert [s.unloads for s in loader.loaded] == [1, 0]


def test_highest_new_version_loads_first(tmp_path, loader: FakeLoader, manager: Manager) -> None:
    versions(tmp_path, 1, 2, 3)
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("all"))])
    wait_until(lambda: states(manager) == {3: AVAILABLE, 2: AVAILABLE, 1: AVAILABLE})
    assert loader.calls == [3, 2, 1]


def test_generic_loader_exception_is_unknown(tmp_path, loader: FakeLoader, manager: Manager) -> None:
    versions(tmp_path, 1)
    loader.failures[1] = RuntimeError("disk on fire")
    with pytest.raises(Unknown, match="disk on fire"):
        manager.reload_config([ModelConfig("m", str(tmp_path))])
    [status] = manager.status("m")
    assert (status.state, status.error_code) == (END, "UNKNOWN")
    assert (
        "Failed to load m version 1 from" in status.error_message and "disk on fire" in status.error_message
    )


def test_serving_error_code_is_kept(tmp_path, loader: FakeLoader, manager: Manager) -> None:
    versions(tmp_path, 1, 2)
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("specific", versions=(1,)))])
    loader.failures[2] = InvalidArgument("bad signature")
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("all"))])
    wait_until(lambda: states(manager).get(2) == END)
    assert manager.status("m", 2) == [VersionStatus(2, END, "INVALID_ARGUMENT", "bad signature")]
    assert states(manager)[1] == AVAILABLE


def test_failed_aspired_version_keeps_only_the_highest_old_one(
    tmp_path, loader: FakeLoader, manager: Manager
) -> None:
    """AvailabilityPreservingPolicy: without a serving aspired version, un-aspired ones unload
    lowest first until one is left."""
    versions(tmp_path, 1, 2, 3, 4)
    loader.failures[4] = InvalidArgument("broken")
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("specific", versions=(1, 2, 3)))])
    wait_until(lambda: states(manager) == {3: AVAILABLE, 2: AVAILABLE, 1: AVAILABLE})
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("specific", versions=(4,)))])
    wait_until(lambda: states(manager) == {4: END, 3: AVAILABLE, 2: END, 1: END})
    assert manager.servable("m").version == 3


def test_removing_a_model_while_it_loads(tmp_path, loader: FakeLoader, manager: Manager) -> None:
    versions(tmp_path / "a", 1)
    versions(tmp_path / "b", 1)
    gate = loader.gate(1)
    manager.reload_config([ModelConfig("a", str(tmp_path / "a"))], wait=False)
    manager.reload_config([ModelConfig("b", str(tmp_path / "b"))], wait=False)
    gate.set()
    wait_until(lambda: states(manager, "a") == {1: END} and states(manager, "b") == {1: AVAILABLE})
    assert manager.model_names() == ["b"]
    a = next(s for s in loader.loaded if s.name == "a")
    assert a.unloads == 1


def test_reload_config_timeout(tmp_path, loader: FakeLoader, manager: Manager) -> None:
    versions(tmp_path, 1)
    gate = loader.gate(1)
    with pytest.raises(DeadlineExceeded):
        manager.reload_config([ModelConfig("m", str(tmp_path))], timeout=0.1)
    gate.set()


def test_stop_during_a_load_discards_it(tmp_path, loader: FakeLoader) -> None:
    versions(tmp_path, 1)
    manager = Manager(loader=loader)
    gate = loader.gate(1)
    manager.reload_config([ModelConfig("m", str(tmp_path))], wait=False)
    threading.Timer(0.1, gate.set).start()
    manager.stop()
    assert states(manager) == {1: END}
    assert loader.loaded[0].unloads == 1


def test_listeners_see_every_transition_in_order(tmp_path, loader: FakeLoader, manager: Manager) -> None:
    seen: list[tuple[str, int, ServableState]] = []

    def broken(name: str, status: VersionStatus) -> None:
        raise RuntimeError("listener bug must not break the manager")

    manager.add_listener(broken)
    manager.add_listener(lambda name, s: seen.append((name, s.version, s.state)))
    versions(tmp_path, 1)
    manager.reload_config([ModelConfig("m", str(tmp_path))])
    versions(tmp_path, 2)
    manager.poll_once()
    wait_until(lambda: ("m", 1, END) in seen)
    assert seen == [
        ("m", 1, START),
        ("m", 1, LOADING),
        ("m", 1, AVAILABLE),
        ("m", 2, START),
        ("m", 2, LOADING),
        ("m", 2, AVAILABLE),
        ("m", 1, UNLOADING),
        ("m", 1, END),
    ]


def test_poll_thread_picks_up_new_versions(tmp_path, loader: FakeLoader) -> None:
    versions(tmp_path, 1)
    with Manager(file_system_poll_wait_seconds=0.02, loader=loader) as manager:
        manager.reload_config([ModelConfig("m", str(tmp_path))])
        versions(tmp_path, 5)
        wait_until(lambda: states(manager) == {5: AVAILABLE, 1: END})


def test_version_and_label_together(tmp_path, manager: Manager) -> None:
    with pytest.raises(InvalidArgument, match="not both"):
        manager.servable("m", 1, "stable")
