"""Manager state machine loading real SavedModels through a gated loader: ordering, slow and failing
loads, stop, listeners. The loader is ``SavedModelServable.load`` held on an event (slow) or raising
for a chosen version (failed); waits follow the manager's own state-change events."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from nbserve.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unknown
from nbserve.manager import Manager, ModelConfig, ServableState, VersionPolicy, VersionStatus
from nbserve.servables import SavedModelServable

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from model_factory import install_corrupt_version, install_version, write_affine  # noqa: E402

START, LOADING, AVAILABLE, UNLOADING, END = (
    ServableState.START,
    ServableState.LOADING,
    ServableState.AVAILABLE,
    ServableState.UNLOADING,
    ServableState.END,
)


class GatedLoader:
    """Loads the real SavedModel, unless a version is gated (held until released) or set to fail."""

    def __init__(self) -> None:
        self.gates: dict[int, threading.Event] = {}
        self.entered: dict[int, threading.Event] = {}
        self.failures: dict[int, Exception] = {}
        self.loaded: list[SavedModelServable] = []
        self.calls: list[int] = []

    def gate(self, version: int) -> threading.Event:
        self.entered[version] = threading.Event()
        self.gates[version] = threading.Event()
        return self.gates[version]

    def __call__(self, name: str, version: int, path: str) -> SavedModelServable:
        self.calls.append(version)
        if version in self.gates:
            self.entered[version].set()
            assert self.gates[version].wait(10)
        if version in self.failures:
            raise self.failures[version]
        servable = SavedModelServable.load(name, version, path)
        self.loaded.append(servable)
        return servable


class Watch:
    """Waits for a condition on the manager, re-checked at each state change it reports."""

    def __init__(self, manager: Manager) -> None:
        self._changed = threading.Condition()
        self._count = 0
        manager.add_listener(self._on_change)

    def _on_change(self, name: str, status: VersionStatus) -> None:
        with self._changed:
            self._count += 1
            self._changed.notify_all()

    def until(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        while True:
            with self._changed:
                seen = self._count
            if condition():
                return
            with self._changed:
                changed = self._changed.wait_for(lambda seen=seen: self._count != seen, timeout)
                assert changed, "condition not reached"


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Callable[[int], str]:
    """A real SavedModel per version number: y = version * x (the answer names the version)."""
    root = tmp_path_factory.mktemp("sources")
    written: dict[int, str] = {}

    def source(version: int) -> str:
        if version not in written:
            written[version] = write_affine(str(root / str(version)), a=float(version), b=0.0)
        return written[version]

    return source


@pytest.fixture
def versions(sources: Callable[[int], str]) -> Callable[..., None]:
    def install(base: Path, *numbers: int) -> None:
        for n in numbers:
            install_version(str(base), n, sources(n))

    return install


@pytest.fixture
def loader() -> GatedLoader:
    return GatedLoader()


@pytest.fixture
def manager(loader: GatedLoader) -> Iterator[Manager]:
    m = Manager(file_system_poll_wait_seconds=-1, loader=loader)
    yield m
    for gate in loader.gates.values():
        gate.set()
    m.stop()


@pytest.fixture
def watch(manager: Manager) -> Watch:
    return Watch(manager)


def states(manager: Manager, name: str = "m") -> dict[int, ServableState]:
    return {s.version: s.state for s in manager.status(name)}


def answer(servable: SavedModelServable) -> float:
    signature = servable.signatures["serving_default"]
    return float(servable.run(signature, {"x": np.array([[1.0]], np.float32)}, ["y"])["y"][0, 0])


def test_old_version_serves_during_a_slow_load(
    tmp_path, versions, loader: GatedLoader, manager: Manager, watch: Watch
) -> None:
    versions(tmp_path, 1)
    manager.reload_config([ModelConfig("m", str(tmp_path))])
    gate = loader.gate(2)
    versions(tmp_path, 2)
    manager.poll_once()
    watch.until(lambda: states(manager) == {2: LOADING, 1: AVAILABLE})
    assert loader.entered[2].wait(10)
    held = manager.servable("m")  # an in-flight request keeps this one
    assert held.version == 1
    gate.set()
    watch.until(lambda: states(manager) == {2: AVAILABLE, 1: END})
    assert manager.servable("m").version == 2
    assert answer(manager.servable("m")) == 2.0
    assert answer(held) == 1.0  # still usable after its unload
    assert [(s.version, s.unloaded) for s in loader.loaded] == [(1, True), (2, False)]


def test_highest_new_version_loads_first(
    tmp_path, versions, loader: GatedLoader, manager: Manager, watch: Watch
) -> None:
    versions(tmp_path, 1, 2, 3)
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("all"))])
    watch.until(lambda: states(manager) == {3: AVAILABLE, 2: AVAILABLE, 1: AVAILABLE})
    assert loader.calls == [3, 2, 1]
    assert [answer(manager.servable("m", v)) for v in (1, 2, 3)] == [1.0, 2.0, 3.0]


def test_generic_loader_exception_is_unknown(
    tmp_path, versions, loader: GatedLoader, manager: Manager
) -> None:
    versions(tmp_path, 1)
    loader.failures[1] = RuntimeError("disk on fire")
    with pytest.raises(Unknown, match="disk on fire"):
        manager.reload_config([ModelConfig("m", str(tmp_path))])
    [status] = manager.status("m")
    assert (status.state, status.error_code) == (END, "UNKNOWN")
    assert (
        "Failed to load m version 1 from" in status.error_message and "disk on fire" in status.error_message
    )


def test_serving_error_code_is_kept(
    tmp_path, versions, loader: GatedLoader, manager: Manager, watch: Watch
) -> None:
    versions(tmp_path, 1, 2)
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("specific", versions=(1,)))])
    loader.failures[2] = InvalidArgument("bad signature")
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("all"))])
    watch.until(lambda: states(manager).get(2) == END)
    assert manager.status("m", 2) == [VersionStatus(2, END, "INVALID_ARGUMENT", "bad signature")]
    assert states(manager)[1] == AVAILABLE


def test_failed_aspired_version_keeps_only_the_highest_old_one(
    tmp_path, versions, manager: Manager, watch: Watch
) -> None:
    """AvailabilityPreservingPolicy: without a serving aspired version, un-aspired ones unload
    lowest first until one is left. Version 4 is a real corrupt saved_model.pb."""
    versions(tmp_path, 1, 2, 3)
    install_corrupt_version(str(tmp_path), 4)
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("specific", versions=(1, 2, 3)))])
    watch.until(lambda: states(manager) == {3: AVAILABLE, 2: AVAILABLE, 1: AVAILABLE})
    manager.reload_config([ModelConfig("m", str(tmp_path), VersionPolicy("specific", versions=(4,)))])
    watch.until(lambda: states(manager) == {4: END, 3: AVAILABLE, 2: END, 1: END})
    assert manager.status("m", 4)[0].error_code not in (None, "")
    assert manager.servable("m").version == 3


def test_removing_a_model_while_it_loads(
    tmp_path, versions, loader: GatedLoader, manager: Manager, watch: Watch
) -> None:
    versions(tmp_path / "a", 1)
    versions(tmp_path / "b", 1)
    gate = loader.gate(1)
    manager.reload_config([ModelConfig("a", str(tmp_path / "a"))], wait=False)
    assert loader.entered[1].wait(10)  # a's load is under way
    manager.reload_config([ModelConfig("b", str(tmp_path / "b"))], wait=False)
    gate.set()
    watch.until(lambda: states(manager, "a") == {1: END} and states(manager, "b") == {1: AVAILABLE})
    assert manager.model_names() == ["b"]
    a = next(s for s in loader.loaded if s.name == "a")
    assert a.unloaded
    assert not next(s for s in loader.loaded if s.name == "b").unloaded


def test_reload_config_timeout(tmp_path, versions, loader: GatedLoader, manager: Manager) -> None:
    versions(tmp_path, 1)
    gate = loader.gate(1)
    with pytest.raises(DeadlineExceeded):
        manager.reload_config([ModelConfig("m", str(tmp_path))], timeout=0.1)
    gate.set()


def test_stop_during_a_load_discards_it(tmp_path, versions, loader: GatedLoader) -> None:
    versions(tmp_path, 1)
    manager = Manager(file_system_poll_wait_seconds=-1, loader=loader)
    gate = loader.gate(1)
    manager.reload_config([ModelConfig("m", str(tmp_path))], wait=False)
    assert loader.entered[1].wait(10)
    stopper = threading.Thread(target=manager.stop)
    stopper.start()
    stopped = threading.Event()
    while not stopped.is_set():  # start() refuses once stop() has begun (it waits for the load)
        try:
            manager.start()
        except FailedPrecondition:
            stopped.set()
        else:
            stopped.wait(0.001)
    gate.set()
    stopper.join(20)
    assert not stopper.is_alive()
    assert states(manager) == {1: END}
    assert [s.unloaded for s in loader.loaded] == [True]


def test_listeners_see_every_transition_in_order(tmp_path, versions, manager: Manager) -> None:
    seen: list[tuple[str, int, ServableState]] = []
    old_version_ended = threading.Event()

    def broken(name: str, status: VersionStatus) -> None:
        raise RuntimeError("listener bug must not break the manager")

    def record(name: str, status: VersionStatus) -> None:
        seen.append((name, status.version, status.state))
        if (status.version, status.state) == (1, END):
            old_version_ended.set()

    manager.add_listener(broken)
    manager.add_listener(record)
    versions(tmp_path, 1)
    manager.reload_config([ModelConfig("m", str(tmp_path))])
    versions(tmp_path, 2)
    manager.poll_once()
    assert old_version_ended.wait(20)
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


def test_poll_thread_picks_up_new_versions(tmp_path, versions, loader: GatedLoader) -> None:
    versions(tmp_path, 1)
    with Manager(file_system_poll_wait_seconds=0.02, loader=loader) as manager:
        watch = Watch(manager)
        manager.reload_config([ModelConfig("m", str(tmp_path))])
        versions(tmp_path, 5)
        watch.until(lambda: states(manager) == {5: AVAILABLE, 1: END})
        assert answer(manager.servable("m")) == 5.0


def test_version_and_label_together(manager: Manager) -> None:
    with pytest.raises(InvalidArgument, match="not both"):
        manager.servable("m", 1, "stable")
