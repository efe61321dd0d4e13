"""--enable_batching on real servers: concurrent clients get exactly their unbatched answers, a full queue
answers 503 / UNAVAILABLE at once, too-large and unbatchable requests are refused with TF's messages, and
per-model batching_params.pbtxt files apply (or fail the load) as in TF Serving.

Batch composition is made exact, not a race: the test holds every batch thread in a "blocker" batch it
submits itself, queues the requests (watching ``batching_stats``), then lets the threads go.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc

from nbserve.batching import QUEUE_FULL
from nbserve.cli import parse_options
from nbserve.demo import digits_images
from nbserve.errors import InvalidArgument, ServingError
from nbserve.server.runtime import Server

WAIT = 30.0


def write(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def queued(server: Server, model: str) -> int:
    return sum(q["queued_tasks"] for q in server.batching_stats(model))


@contextmanager
def held_batch_threads(server: Server) -> Iterator[None]:
    """Occupy every batch thread with a blocker batch until the block ends."""
    scheduler = server.batching.scheduler
    gate, entered = threading.Event(), threading.Semaphore(0)

    def blocker(inputs: dict) -> dict:
        entered.release()
        gate.wait(WAIT)
        return inputs

    threads = [
        threading.Thread(
            target=scheduler.submit, args=(("blocker", i, "", ()), blocker, {"x": np.zeros(1)}), daemon=True
        )
        for i in range(scheduler.num_batch_threads)
    ]
    for thread in threads:
        thread.start()
    for _ in threads:
        assert entered.acquire(timeout=WAIT)
    try:
        yield
    finally:
        gate.set()
        for thread in threads:
            thread.join(WAIT)


class Call(threading.Thread):
    """A client request on its own thread."""

    def __init__(self, send: Callable[[], object]) -> None:
        super().__init__(daemon=True)
        self.send, self.result, self.error = send, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.send()
        except Exception as error:  # noqa: BLE001 - re-raised by get()
            self.error = error

    def get(self) -> object:
        self.join(WAIT)
        if self.error is not None:
            raise self.error
        return self.result


def rest_predict(server: Server, model: str, body: dict) -> requests.Response:
    return requests.post(f"{server.rest_url}/v1/models/{model}:predict", json=body, timeout=WAIT)


def grpc_predict(server: Server, model: str, x: np.ndarray) -> np.ndarray:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["images" if model == "digits" else "x"].CopyFrom(tf.make_tensor_proto(x))
    with grpc.insecure_channel(server.grpc_address) as channel:
        response = tfs_grpc.PredictionServiceStub(channel).Predict(request, timeout=WAIT)
    return tf.make_ndarray(response.outputs["scores" if model == "digits" else "y"])


def predict_via(transport: str, model: str, x: np.ndarray) -> Callable[[Server], np.ndarray]:
    """The request ``x`` to ``model``, ready to send to a server; returns its outputs."""
    if transport == "grpc":
        return lambda server: grpc_predict(server, model, x)
    return lambda server: np.array(
        rest_predict(server, model, {"instances": x.tolist()}).json()["predictions"]
    )


# ------------------------------------------------------------------------------ server-wide parameters


@pytest.fixture(scope="module")
def batched(models, tmp_path_factory) -> Iterator[Server]:
    params = write(
        str(tmp_path_factory.mktemp("batching") / "batching.pbtxt"),
        "max_batch_size { value: 8 } batch_timeout_micros { value: 1000 } max_enqueued_batches { value: 64 }"
        " num_batch_threads { value: 2 } allowed_batch_sizes: [2, 4, 8]",
    )
    with Server(
        model_config_file=models.config_file,
        port=0,
        rest_api_port=0,
        allow_version_labels_for_unavailable_models=True,
        enable_batching=True,
        batching_parameters_file=params,
        grpc_max_threads=48,
        rest_api_num_threads=48,
    ) as running:
        yield running


def test_concurrent_clients_get_their_unbatched_answers(batched: Server, server: Server) -> None:
    images, _ = digits_images(40)
    cases = []
    for i in range(36):
        rows = 1 + i % 3
        transport = "grpc" if i % 4 < 2 else "rest"
        if i % 2:
            cases.append(predict_via(transport, "digits", images[i : i + rows]))
        else:
            x = np.arange(i, i + rows, dtype=np.float32).reshape(rows, 1) / 7
            cases.append(predict_via(transport, "half_plus_two", x))
    with held_batch_threads(batched):
        calls = [Call(lambda send=send: send(batched)) for send in cases]
        wait_until(lambda: queued(batched, "digits") + queued(batched, "half_plus_two") == len(calls))
    for call, send in zip(calls, cases, strict=True):
        np.testing.assert_allclose(call.get(), send(server), rtol=1e-6, atol=1e-7)
    stats = batched.batching_stats("digits") + batched.batching_stats("half_plus_two")
    assert sum(q["tasks"] for q in stats) == len(calls)
    assert all(max(q["batched_with"]) > 0 for q in stats)  # queued together, run together
    assert all(set(q["batch_sizes"]) <= {2, 4, 8} for q in stats)


def test_classify_and_regress_are_batched(batched: Server) -> None:
    feature = tf.train.Feature(float_list=tf.train.FloatList(value=[3.0]))
    example = tf.train.Example(features=tf.train.Features(feature={"x": feature}))
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name, request.model_spec.signature_name = "half_plus_two", "classify_x_to_y"
    request.input.example_list.examples.add().CopyFrom(example)
    with grpc.insecure_channel(batched.grpc_address) as channel:
        response = tfs_grpc.PredictionServiceStub(channel).Classify(request, timeout=WAIT)
    assert response.result.classifications[0].classes[0].score == pytest.approx(7.0)  # version 124: 2x + 1
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 3.0}, {"x": 5.0}]}
    answer = requests.post(f"{batched.rest_url}/v1/models/half_plus_two:regress", json=body, timeout=WAIT)
    assert answer.json() == {"results": [7.0, 11.0]}
    signatures = {q["signature"] for q in batched.batching_stats("half_plus_two")}
    assert {"classify_x_to_y", "regress_x_to_y"} <= signatures


def test_too_large_and_unbatchable_requests_are_refused(batched: Server) -> None:
    answer = rest_predict(batched, "half_plus_two", {"instances": [[1.0]] * 9})
    assert answer.status_code == 400
    assert "Task size 9 is larger than maximum input batch size 8" in answer.json()["error"]
    body = {"signature_name": "two_inputs", "inputs": {"a": [1.0, 2.0], "b": [1]}}
    answer = rest_predict(batched, "half_plus_two", body)
    assert answer.status_code == 400
    assert "Batching Run() input tensors must have equal 0th-dimension size" in answer.json()["error"]
    assert rest_predict(batched, "half_plus_two", {"instances": [[2.0]]}).json() == {"predictions": [[5.0]]}


def test_stop_closes_the_scheduler(models) -> None:
    server = Server(models.half_plus_two, "half_plus_two", port=None, rest_api_port=0, enable_batching=True)
    with server:
        assert rest_predict(server, "half_plus_two", {"instances": [[2.0]]}).json() == {
            "predictions": [[5.0]]
        }
        assert server.batching.params.thread_pool_name == "model_server_batch_threads"  # TF's, without a file
    assert server.batching.scheduler.closed


def test_parameters_file_needs_enable_batching(tmp_path) -> None:
    params = write(str(tmp_path / "b.pbtxt"), "max_batch_size { value: 8 }")
    with pytest.raises(InvalidArgument, match="Batching parameter file provided without batching enabled"):
        Server(str(tmp_path), "m", port=0, rest_api_port=0, batching_parameters_file=params).start()


# ------------------------------------------------------------------------------ per-model parameters


def models_config(root: str, names: tuple[str, ...]) -> str:
    entries = "".join(
        f' config {{ name: "{name}" base_path: "{os.path.join(root, name)}" model_platform: "tensorflow" }}'
        for name in names
    )
    return "model_config_list {" + entries + " }"


@pytest.fixture(scope="module")
def per_model_root(models, tmp_path_factory) -> str:
    """half_plus_two (0.5x + 2) as "tight" (batched, tiny queue), "plain" (no file) and "broken"."""
    root = tmp_path_factory.mktemp("per_model")
    for name in ("tight", "plain", "broken"):
        shutil.copytree(os.path.join(models.half_plus_two, "123"), root / name / "1")
    write(
        str(root / "tight" / "1" / "batching_params.pbtxt"),
        "max_batch_size { value: 4 } max_enqueued_batches { value: 1 } allowed_batch_sizes: [2, 4]",
    )
    write(
        str(root / "broken" / "1" / "batching_params.pbtxt"),
        "max_batch_size { value: 4 } allowed_batch_sizes: [2]",
    )
    return str(root)


@pytest.fixture(scope="module")
def per_model(per_model_root: str) -> Iterator[Server]:
    pool = write(
        os.path.join(per_model_root, "pool.pbtxt"),
        "num_batch_threads { value: 1 } max_batch_size { value: 1 }",
    )
    with Server(
        model_config_file=write(
            os.path.join(per_model_root, "models.config"), models_config(per_model_root, ("tight", "plain"))
        ),
        port=0,
        rest_api_port=0,
        enable_batching=True,
        batching_parameters_file=pool,
        enable_per_model_batching_parameters=True,
    ) as running:
        yield running


def test_per_model_file_batches_only_its_model(per_model: Server) -> None:
    assert per_model.batching.scheduler.num_batch_threads == 1  # the global file's pool
    assert rest_predict(per_model, "plain", {"instances": [[2.0]] * 3}).json() == {"predictions": [[3.0]] * 3}
    assert rest_predict(per_model, "tight", {"instances": [[2.0]] * 3}).json() == {"predictions": [[3.0]] * 3}
    assert per_model.batching_stats("plain") == []
    (tight,) = per_model.batching_stats("tight")
    assert (tight["batch_sizes"], tight["padding_rows"], tight["params"].max_batch_size) == ({4: 1}, 1, 4)
    last = tight["last_batch"]
    assert (last["batch_size"], last["padding"], last["batched_with"]) == (4, 1, 0)
    answer = rest_predict(per_model, "tight", {"instances": [[2.0]] * 5})
    assert answer.status_code == 400
    assert "Task size 5 is larger than maximum input batch size 4" in answer.json()["error"]


def test_full_queue_answers_unavailable_and_keeps_serving(per_model: Server) -> None:
    with held_batch_threads(per_model):
        first = Call(lambda: rest_predict(per_model, "tight", {"instances": [[1.0]] * 4}))  # a full batch
        wait_until(lambda: queued(per_model, "tight") == 1)
        refused = rest_predict(per_model, "tight", {"instances": [[2.0]]})
        assert refused.status_code == 503
        assert refused.json()["error"].startswith(QUEUE_FULL)
        with pytest.raises(grpc.RpcError) as raised:
            grpc_predict(per_model, "tight", np.ones((1, 1), np.float32))
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert QUEUE_FULL in raised.value.details()
    assert first.get().json() == {"predictions": [[2.5]] * 4}
    assert rest_predict(per_model, "tight", {"instances": [[2.0]]}).json() == {"predictions": [[3.0]]}
    assert per_model.batching_stats("tight")[0]["rejected"] == 2


def test_invalid_per_model_file_fails_that_load(per_model: Server, per_model_root: str) -> None:
    with pytest.raises(ServingError, match="Last entry in allowed_batch_sizes must match max_batch_size"):
        per_model.reload_config(models_config(per_model_root, ("tight", "plain", "broken")))
    (status,) = per_model.dataplane.status("broken")
    assert status.error_code == "INVALID_ARGUMENT"
    assert "last entry was 2; expected 4" in status.error_message
    assert "batching_params.pbtxt" in status.error_message
    assert rest_predict(per_model, "tight", {"instances": [[2.0]]}).status_code == 200


def test_flags() -> None:
    options = parse_options(
        [
            "--enable_batching",
            "--batching_parameters_file=/b.pbtxt",
            "--enable_per_model_batching_parameters=true",
            "--monitoring_config_file=/m.pbtxt",
        ]
    )
    assert (options.enable_batching, options.enable_per_model_batching_parameters) == (True, True)
    assert (options.batching_parameters_file, options.monitoring_config_file) == ("/b.pbtxt", "/m.pbtxt")
    defaults = parse_options([])
    assert (defaults.enable_batching, defaults.enable_per_model_batching_parameters) == (False, False)
    assert defaults.batching_parameters_file is None and defaults.monitoring_config_file is None
    assert defaults.batching_parameters() is None
