"""Manager with real SavedModels: loading, availability-preserving swaps, failures, labels, status."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

import model_factory as mf  # noqa: E402

from nbserve.errors import FailedPrecondition, InvalidArgument, NotFound, Unknown  # noqa: E402
from nbserve.manager import Manager, ModelConfig, ServableState, VersionPolicy, VersionStatus  # noqa: E402

AVAILABLE, END = ServableState.AVAILABLE, ServableState.END
X = np.array([[2.0]], np.float32)


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[int, str]:
    """Model dirs written once; version v computes y = v*x + 1, so outputs tell versions apart."""
    root = tmp_path_factory.mktemp("sources")
    return {v: mf.write_affine(str(root / f"affine{v}"), a=float(v), b=1.0) for v in (1, 2, 3)}


@pytest.fixture
def manager() -> Iterator[Manager]:
    m = Manager(file_system_poll_wait_seconds=0.05)
    yield m
    m.stop()


def install(base, version: int, sources: dict[int, str]) -> str:
    return mf.install_version(str(base), version, sources[version])


def predict(manager: Manager, name: str = "m", **spec) -> float:
    servable = manager.servable(name, **spec)
    return float(servable.run(servable.signatures["serving_default"], {"x": X}, ["y"])["y"][0, 0])


def states(manager: Manager, name: str = "m") -> dict[int, ServableState]:
    return {s.version: s.state for s in manager.status(name)}


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_model_becomes_available(tmp_path, sources, manager: Manager) -> None:
    install(tmp_path / "m", 1, sources)
    manager.reload_config([ModelConfig("m", str(tmp_path / "m"))])
    assert manager.status("m") == [VersionStatus(1, AVAILABLE)]
    assert manager.model_names() == ["m"]
    assert predict(manager) == 3.0  # 1*2 + 1
    assert manager.servable("m", 1) is manager.servable("m")
    assert manager.servable("m").version == 1


def test_new_version_swaps_in_without_failing_requests(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    install(base, 1, sources)
    manager.reload_config([ModelConfig("m", str(base))])
    events: list[tuple[int, ServableState]] = []
    manager.add_listener(lambda name, status: events.append((status.version, status.state)))
    seen: list[float] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                seen.append(predict(manager))
            except BaseException as e:  # noqa: BLE001 - any failure fails the test
                failures.append(e)

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        manager.start()
        install(base, 2, sources)
        started = time.monotonic()
        wait_until(lambda: states(manager) == {2: AVAILABLE, 1: END})
        elapsed = time.monotonic() - started
        time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not failures
    assert {3.0, 5.0} <= set(seen) <= {3.0, 5.0}  # v1 gives 3, v2 gives 5
    assert predict(manager) == 5.0
    # Version 2 was AVAILABLE before version 1 started unloading.
    assert events.index((2, AVAILABLE)) < events.index((1, ServableState.UNLOADING)) < events.index((1, END))
    assert [s for v, s in events if v == 2][:3] == [ServableState.START, ServableState.LOADING, AVAILABLE]
    assert elapsed < 10


def test_corrupt_version_fails_while_previous_keeps_serving(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    install(base, 1, sources)
    manager.reload_config([ModelConfig("m", str(base))])
    bad = mf.install_corrupt_version(str(base), 2)
    manager.poll_once()
    wait_until(lambda: states(manager).get(2) == END)
    [status] = manager.status("m", 2)
    assert status.error_code == "DATA_LOSS"
    assert f"Can't parse {bad}/saved_model.pb as binary proto" in status.error_message
    assert states(manager) == {2: END, 1: AVAILABLE}
    assert predict(manager) == 3.0
    with pytest.raises(NotFound, match=r"Specific\(m, 2\)"):
        manager.servable("m", 2)

    # Not retried on every poll ...
    events: list[VersionStatus] = []
    manager.add_listener(lambda name, s: events.append(s))
    for _ in range(3):
        manager.poll_once()
    time.sleep(0.1)
    assert events == []

    # ... but once the directory changes: a fixed model replaces the broken one.
    shutil.rmtree(bad)
    install(base, 2, sources)
    manager.poll_once()
    wait_until(lambda: states(manager) == {2: AVAILABLE, 1: END})
    assert manager.status("m", 2) == [VersionStatus(2, AVAILABLE)]
    assert predict(manager) == 5.0


def test_rewritten_corrupt_file_is_retried(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    install(base, 1, sources)
    manager.reload_config([ModelConfig("m", str(base))])
    bad = mf.install_corrupt_version(str(base), 2)
    manager.poll_once()
    wait_until(lambda: states(manager).get(2) == END)
    attempts: list[ServableState] = []
    manager.add_listener(lambda name, s: attempts.append(s.state) if s.version == 2 else None)
    with open(os.path.join(bad, "saved_model.pb"), "wb") as f:
        f.write(b"still garbage, but different garbage")
    manager.poll_once()
    wait_until(lambda: attempts[-1:] == [END])
    assert attempts == [ServableState.START, ServableState.LOADING, END]
    assert manager.status("m", 2)[0].error_code == "DATA_LOSS"


def test_failed_version_reappearing_is_retried(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    install(base, 1, sources)
    manager.reload_config([ModelConfig("m", str(base))])
    mf.install_corrupt_version(str(base), 2)
    manager.poll_once()
    wait_until(lambda: states(manager).get(2) == END)
    shutil.rmtree(base / "2")
    manager.poll_once()  # forgets the failed version
    install(base, 2, sources)
    manager.poll_once()
    wait_until(lambda: states(manager) == {2: AVAILABLE, 1: END})


def test_removed_directory_unloads(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    for v in (1, 2):
        install(base, v, sources)
    manager.reload_config([ModelConfig("m", str(base), VersionPolicy("all"))])
    # reload_config waits for the highest version only (TF waits for Latest(m)).
    assert states(manager)[2] == AVAILABLE
    wait_until(lambda: states(manager) == {2: AVAILABLE, 1: AVAILABLE})
    shutil.rmtree(base / "1")
    manager.poll_once()
    with pytest.raises(NotFound, match=r"Servable not found for request: Specific\(m, 1\)"):
        manager.servable("m", 1)
    wait_until(lambda: states(manager) == {2: AVAILABLE, 1: END})
    assert predict(manager) == 5.0


def test_removing_the_latest_falls_back_to_the_previous(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    install(base, 1, sources)
    install(base, 2, sources)
    manager.reload_config([ModelConfig("m", str(base))])
    assert states(manager) == {2: AVAILABLE}
    shutil.rmtree(base / "2")
    manager.poll_once()
    # Version 2 keeps serving until version 1 is back.
    wait_until(lambda: states(manager) == {2: END, 1: AVAILABLE})
    assert predict(manager) == 3.0


def test_no_versions_left_unloads_everything(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    install(base, 1, sources)
    manager.reload_config([ModelConfig("m", str(base))])
    shutil.rmtree(base / "1")
    manager.poll_once()
    wait_until(lambda: states(manager) == {1: END})
    with pytest.raises(NotFound, match=r"Servable not found for request: Latest\(m\)"):
        manager.servable("m")


def test_missing_base_path_freezes_every_model(tmp_path, sources, manager: Manager) -> None:
    install(tmp_path / "a", 1, sources)
    install(tmp_path / "b", 1, sources)
    manager.reload_config([ModelConfig("a", str(tmp_path / "a")), ModelConfig("b", str(tmp_path / "b"))])
    shutil.rmtree(tmp_path / "b")
    install(tmp_path / "a", 2, sources)
    with pytest.raises(InvalidArgument, match=f"Could not find base path {tmp_path / 'b'} for servable b"):
        manager.poll_once()
    assert manager.last_poll_error is not None
    time.sleep(0.1)
    assert states(manager, "a") == {1: AVAILABLE}
    assert states(manager, "b") == {1: AVAILABLE}
    install(tmp_path / "b", 1, sources)
    manager.poll_once()
    assert manager.last_poll_error is None
    wait_until(lambda: states(manager, "a") == {2: AVAILABLE, 1: END})


def test_specific_and_all_policies(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    for v in (1, 2, 3):
        install(base, v, sources)
    manager.reload_config([ModelConfig("m", str(base), VersionPolicy("specific", versions=(1, 3, 7)))])
    wait_until(lambda: states(manager) == {3: AVAILABLE, 1: AVAILABLE})
    assert manager.servable("m").version == 3
    assert predict(manager, version=1) == 3.0
    with pytest.raises(NotFound, match=r"Specific\(m, 2\)"):
        manager.servable("m", 2)
    manager.reload_config([ModelConfig("m", str(base), VersionPolicy("all"))])
    wait_until(lambda: states(manager) == {3: AVAILABLE, 2: AVAILABLE, 1: AVAILABLE})
    manager.reload_config([ModelConfig("m", str(base), VersionPolicy("latest", num_versions=2))])
    wait_until(lambda: states(manager) == {3: AVAILABLE, 2: AVAILABLE, 1: END})


def test_reload_config_adds_and_removes_models(tmp_path, sources, manager: Manager) -> None:
    install(tmp_path / "a", 1, sources)
    install(tmp_path / "b", 2, sources)
    a, b = ModelConfig("a", str(tmp_path / "a")), ModelConfig("b", str(tmp_path / "b"))
    manager.reload_config([a])
    manager.reload_config([a, b])
    assert manager.model_names() == ["a", "b"]
    assert predict(manager, "b") == 5.0
    manager.reload_config([b])
    assert manager.model_names() == ["b"]
    assert manager.configs() == [b]
    with pytest.raises(NotFound, match=r"Latest\(a\)"):
        manager.servable("a")
    wait_until(lambda: states(manager, "a") == {1: END})  # status remembers removed models
    manager.reload_config([b, a])  # and a model can come back
    assert states(manager, "a") == {1: AVAILABLE}
    assert predict(manager, "a") == 3.0


def test_reload_config_reports_models_that_fail(tmp_path, sources, manager: Manager) -> None:
    bad = mf.install_corrupt_version(str(tmp_path / "bad"), 1)
    with pytest.raises(Unknown) as info:
        manager.reload_config([ModelConfig("bad", str(tmp_path / "bad"))])
    assert info.value.message.startswith(
        "1 model(s) did not become available: {{{name: bad version: 1} due to error: DATA_LOSS: "
        f"Can't parse {bad}/saved_model.pb as binary proto"
    )
    assert info.value.message.endswith("}, }")
    assert manager.model_names() == ["bad"]  # the config stays, as in TF Serving
    assert manager.status("bad")[0].state == END


def test_reload_config_without_versions_or_base_path(tmp_path, manager: Manager) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(Unknown, match=r"\{\{name: empty\} due to error: NOT_FOUND: No versions of servable"):
        manager.reload_config([ModelConfig("empty", str(tmp_path / "empty"))])
    with pytest.raises(Unknown, match="INVALID_ARGUMENT: Could not find base path"):
        manager.reload_config([ModelConfig("gone", str(tmp_path / "gone"))])


def test_reload_config_validation(tmp_path, manager: Manager) -> None:
    with pytest.raises(InvalidArgument, match="Illegal to list model m multiple times in config list"):
        manager.reload_config([ModelConfig("m", str(tmp_path)), ModelConfig("m", str(tmp_path))])
    with pytest.raises(InvalidArgument, match=r"got base_path\(\)=rel/m"):
        manager.reload_config([ModelConfig("m", "rel/m")])
    assert manager.model_names() == []


def test_labels(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    for v in (1, 2):
        install(base, v, sources)
    plain = ModelConfig("m", str(base), VersionPolicy("all"))
    labelled = ModelConfig("m", str(base), VersionPolicy("all"), {"stable": 1, "canary": 2})
    # Labels are checked before any model loads: a new model cannot have them yet.
    with pytest.raises(FailedPrecondition) as info:
        manager.reload_config([labelled])
    assert info.value.message == (
        "Request to assign label to version 1 of model m, which is not currently available for inference"
    )
    assert manager.model_names() == []
    manager.reload_config([plain])
    wait_until(lambda: states(manager) == {2: AVAILABLE, 1: AVAILABLE})
    manager.reload_config([labelled])
    assert manager.labels("m") == {"stable": 1, "canary": 2}
    assert predict(manager, label="stable") == 3.0
    assert predict(manager, label="canary") == 5.0
    with pytest.raises(InvalidArgument, match="^Unrecognized servable version label: beta$"):
        manager.servable("m", label="beta")
    with pytest.raises(InvalidArgument, match="Unrecognized servable version label: stable"):
        manager.servable("other", label="stable")
    with pytest.raises(FailedPrecondition, match="version 9 of model m"):
        manager.set_label("m", "beta", 9)
    manager.set_label("m", "stable", 2)
    assert manager.servable("m", label="stable").version == 2
    assert manager.configs()[0].version_labels == {"stable": 2, "canary": 2}
    manager.remove_label("m", "canary")
    assert manager.labels("m") == {"stable": 2}
    # A label whose version unloads resolves to Specific(m, v) and fails with NOT_FOUND.
    shutil.rmtree(base / "2")
    manager.poll_once()
    wait_until(lambda: states(manager)[2] == END)
    with pytest.raises(NotFound, match=r"^Servable not found for request: Specific\(m, 2\)$"):
        manager.servable("m", label="stable")


def test_labels_for_unavailable_versions_with_the_flag(tmp_path, sources) -> None:
    base = tmp_path / "m"
    install(base, 1, sources)
    manager = Manager(allow_version_labels_for_unavailable_models=True)
    try:
        manager.reload_config([ModelConfig("m", str(base), version_labels={"next": 2, "stable": 1})])
        assert manager.labels("m") == {"next": 2, "stable": 1}
        with pytest.raises(NotFound, match=r"Specific\(m, 2\)"):
            manager.servable("m", label="next")
        manager.set_label("m", "next", 2)  # keeps its version: fine
        # Moving an existing label still needs an AVAILABLE target.
        with pytest.raises(FailedPrecondition, match="version 3 of model m"):
            manager.set_label("m", "stable", 3)
        install(base, 2, sources)
        manager.poll_once()
        wait_until(lambda: states(manager) == {2: AVAILABLE, 1: END})
        assert predict(manager, label="next") == 5.0
    finally:
        manager.stop()


def test_status_texts(tmp_path, sources, manager: Manager) -> None:
    base = tmp_path / "m"
    install(base, 1, sources)
    manager.reload_config([ModelConfig("m", str(base))])
    install(base, 3, sources)
    manager.poll_once()
    wait_until(lambda: states(manager) == {3: AVAILABLE, 1: END})
    assert manager.status("m") == [VersionStatus(3, AVAILABLE), VersionStatus(1, END)]
    assert manager.status("m", 1) == [VersionStatus(1, END, "OK", "")]
    with pytest.raises(NotFound, match="^Could not find any versions of model nope$"):
        manager.status("nope")
    with pytest.raises(NotFound, match="^Could not find version 2 of model m$"):
        manager.status("m", 2)
    with pytest.raises(NotFound, match=r"^Servable not found for request: Latest\(nope\)$"):
        manager.servable("nope")


def test_stop_unloads_everything(tmp_path, sources) -> None:
    install(tmp_path / "m", 1, sources)
    before = set(threading.enumerate())
    manager = Manager(file_system_poll_wait_seconds=0.05)
    manager.start()
    manager.reload_config([ModelConfig("m", str(tmp_path / "m"))])
    servable = manager.servable("m")
    manager.stop()
    manager.stop()  # idempotent
    assert servable.unloaded
    assert manager.status("m") == [VersionStatus(1, END)]
    with pytest.raises(NotFound):
        manager.servable("m")
    assert not [t for t in set(threading.enumerate()) - before if t.name.startswith("nbserve-")]
