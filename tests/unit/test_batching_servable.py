"""ServerBatching and BatchingServable with a fake numpy servable: queue keys, per-model parameters (TF's
batching_params.pbtxt), validation at load, stats records and unload."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import pytest

from nbserve.batching import BATCHING_PARAMS_FILE, BatchingParameters, BatchingServable, ServerBatching
from nbserve.errors import InvalidArgument
from nbserve.servables.base import Servable
from nbserve.signature import Signature, TensorInfo

DT_FLOAT = 1


class Doubler(Servable):
    """y = 2x, z = x + 1; records the batch sizes it ran."""

    def __init__(self, name: str = "m", version: int = 1) -> None:
        self.name, self.version = name, version
        info = TensorInfo("t", DT_FLOAT, (-1, 1))
        self.signatures = {
            key: Signature(key, {"x": info}, {"y": info, "z": info}) for key in ("serving_default", "other")
        }
        self.sizes: list[int] = []
        self.unloaded = False

    def run(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_keys: Sequence[str]
    ) -> dict[str, np.ndarray]:
        x = inputs["x"]
        self.sizes.append(len(x))
        return {k: v for k, v in {"y": 2 * x, "z": x + 1}.items() if k in output_keys}

    def unload(self) -> None:
        self.unloaded = True


@pytest.fixture
def batching() -> Iterator[ServerBatching]:
    layer = ServerBatching(
        BatchingParameters(max_batch_size=4, allowed_batch_sizes=(2, 4), num_batch_threads=2)
    )
    yield layer
    layer.close()


def load_doubler(name: str, version: int, path: str) -> Doubler:
    return Doubler(name, version)


def test_runs_go_through_one_queue_per_signature_and_outputs(batching: ServerBatching) -> None:
    servable = batching.loader(load_doubler)("m", 3, "/unused")
    assert isinstance(servable, BatchingServable) and servable.signatures == servable.inner.signatures
    default, other = servable.signatures["serving_default"], servable.signatures["other"]
    x = np.array([[1.0], [2.0], [3.0]])
    assert np.array_equal(servable.run(default, {"x": x}, ["y"])["y"], 2 * x)
    assert set(servable.run(default, {"x": x[:1]}, ["y", "z"])) == {"y", "z"}
    assert np.array_equal(servable.run(other, {"x": x}, ["z"])["z"], x + 1)
    assert servable.inner.sizes == [4, 2, 4]  # padded to allowed_batch_sizes
    records = batching.stats()
    assert [(r["model"], r["version"], r["signature"], r["output_keys"]) for r in records] == [
        ("m", 3, "other", ["z"]),
        ("m", 3, "serving_default", ["y"]),
        ("m", 3, "serving_default", ["y", "z"]),
    ]
    assert records[1]["padding_rows"] == 1 and records[1]["batch_sizes"] == {4: 1}
    assert batching.stats("another") == []


def test_concurrent_runs_get_their_own_rows(batching: ServerBatching) -> None:
    servable = batching.loader(load_doubler)("m", 1, "/unused")
    signature = servable.signatures["serving_default"]
    failures = []

    def client(seed: int) -> None:
        for i in range(20):
            x = np.full((1 + (seed + i) % 3, 1), seed * 100.0 + i)
            if not np.array_equal(servable.run(signature, {"x": x}, ["y"])["y"], 2 * x):
                failures.append(seed)

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not failures
    assert batching.stats("m")[0]["tasks"] == 12 * 20


def test_unload_forgets_the_queues_and_unloads_the_model(batching: ServerBatching) -> None:
    servable = batching.loader(load_doubler)("m", 1, "/unused")
    servable.run(servable.signatures["serving_default"], {"x": np.ones((1, 1))}, ["y"])
    servable.unload()
    assert servable.inner.unloaded and batching.stats() == []


def test_invalid_parameters_fail_the_load(tmp_path) -> None:
    layer = ServerBatching(BatchingParameters(max_batch_size=8, allowed_batch_sizes=(4,)))
    with pytest.raises(InvalidArgument, match="last entry was 4; expected 8 .fix --batching_parameters_file"):
        layer.loader(load_doubler)("m", 1, str(tmp_path))
    layer.close()


def test_per_model_parameters_file(tmp_path) -> None:
    layer = ServerBatching(BatchingParameters(num_batch_threads=1), per_model=True)
    batched, plain, broken, garbled = (tmp_path / name for name in ("batched", "plain", "broken", "garbled"))
    for path in (batched, plain, broken, garbled):
        path.mkdir()
    (batched / BATCHING_PARAMS_FILE).write_text(
        "max_batch_size { value: 16 } batch_timeout_micros { value: 5 }"
    )
    (broken / BATCHING_PARAMS_FILE).write_text("max_batch_size { value: 16 } allowed_batch_sizes: [8]")
    (garbled / BATCHING_PARAMS_FILE).write_text("max_batch_size: 16")
    load = layer.loader(load_doubler)
    servable = load("m", 1, str(batched))
    assert isinstance(servable, BatchingServable)
    assert (servable.params.max_batch_size, servable.params.batch_timeout_micros) == (16, 5)
    assert isinstance(load("m", 1, str(plain)), Doubler)  # no file: not batched, as in TF
    with pytest.raises(InvalidArgument, match=f"expected 16 .fix {broken / BATCHING_PARAMS_FILE}"):
        load("m", 1, str(broken))
    with pytest.raises(InvalidArgument, match=f"Invalid BatchingParameters text in {garbled}"):
        load("m", 1, str(garbled))
    assert layer.scheduler.num_batch_threads == 1
    layer.close()
