"""Faults: version directories vanishing under traffic, broken SavedModels, models that raise or run
too long, bad config reloads. No failed or lost request where TF Serving would answer, no hung
worker, no thread left behind."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator

import grpc
import pytest
import requests
import tensorflow as tf
from google.protobuf import text_format
from models import write_faulty, write_half_plus_two
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc
from traffic import Traffic, states, wait_for

from nbserve.errors import Unknown
from nbserve.server.runtime import Server

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from model_factory import install_corrupt_version  # noqa: E402

TIMEOUT_MS = 300
FOREVER = 10**10  # spin iterations: hours of work


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> str:
    base = str(tmp_path_factory.mktemp("faulty") / "faulty")
    os.makedirs(base)
    write_faulty(base, 1)
    return base


@pytest.fixture(scope="module")
def faulty_server(faulty: str) -> Iterator[Server]:
    # One worker per transport: a later request is answered only if a given-up run was stopped.
    with Server(
        faulty,
        "faulty",
        port=0,
        rest_api_port=0,
        rest_api_timeout_in_ms=TIMEOUT_MS,
        rest_api_num_threads=1,
        grpc_max_threads=1,
    ) as running:
        yield running


def _rest(server: Server, body: dict, model: str = "faulty") -> requests.Response:
    return requests.post(f"{server.rest_url}/v1/models/{model}:predict", json=body, timeout=30)


def _grpc_predict(server: Server, timeout: float = 30, signature: str = "", **inputs: tf.Tensor):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "faulty"
    request.model_spec.signature_name = signature
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    with grpc.insecure_channel(server.grpc_address) as channel:
        return tfs_grpc.PredictionServiceStub(channel).Predict(request, timeout=timeout)


def test_model_raising_on_some_inputs_fails_only_those_requests(faulty_server: Server) -> None:
    def call(index: int) -> tuple[bool, object]:
        x = float(index) if index % 3 else -1.0 - index
        if index % 2:
            answer = _rest(faulty_server, {"inputs": [x]})
            return x >= 0, (answer.status_code, answer.json())
        try:
            outputs = _grpc_predict(faulty_server, x=tf.constant([x], tf.float32)).outputs
            return x >= 0, (200, {"outputs": tf.make_ndarray(outputs["y"]).tolist()})
        except grpc.RpcError as error:
            return x >= 0, (error.code(), {"error": error.details()})

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(48)))
    for index, (good, (status, body)) in enumerate(results):
        if good:
            assert status == 200 and body == {"outputs": [pytest.approx(index**0.5)]}, (index, body)
        else:
            assert status in (400, grpc.StatusCode.INVALID_ARGUMENT), (index, status, body)
            assert "x must be >= 0" in body["error"]


def test_slow_model_times_out_and_frees_its_worker(faulty_server: Server) -> None:
    assert _rest(faulty_server, {"signature_name": "spin", "inputs": 1000}).json() == {"outputs": 1000}

    answer = _rest(faulty_server, {"signature_name": "spin", "inputs": FOREVER})
    assert answer.status_code == 504
    assert f"--rest_api_timeout_in_ms={TIMEOUT_MS}" in answer.json()["error"]
    # the only REST worker was running the endless loop: this answer needs it stopped
    assert _rest(faulty_server, {"inputs": [4.0]}).json() == {"outputs": [2.0]}

    with pytest.raises(grpc.RpcError) as raised:
        _grpc_predict(faulty_server, 0.5, "spin", n=tf.constant(FOREVER, tf.int64))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the same for the only gRPC worker (a stuck one would make this miss its deadline too)
    answer = _grpc_predict(faulty_server, 10, x=tf.constant([9.0], tf.float32))
    assert tf.make_ndarray(answer.outputs["y"]).tolist() == [3.0]


def test_version_directory_deleted_under_traffic(tmp_path) -> None:
    base = str(tmp_path / "hpt")
    os.makedirs(base)
    write_half_plus_two(base, 1)
    write_half_plus_two(base, 2, a=3.0, b=0.0)
    with Server(base, "hpt", port=0, rest_api_port=0, file_system_poll_wait_seconds=0.2) as server:
        assert states(server, "hpt") == {"2": "AVAILABLE"}
        # TF semantics (latest {1}): removing the serving version's directory un-aspires it and
        # aspires 1; 2 keeps serving (its graph is in memory) until 1 is AVAILABLE, then unloads.
        with Traffic(server, "hpt", clients=2) as traffic:
            time.sleep(0.3)
            shutil.rmtree(os.path.join(base, "2"))
            assert wait_for(lambda: states(server, "hpt") == {"2": "END", "1": "AVAILABLE"}, timeout=30)
            time.sleep(0.3)
        assert traffic.failures == []
        assert traffic.versions == {"1", "2"}

        # Removing the last version leaves nothing aspired: it unloads and requests get TF's 404.
        shutil.rmtree(os.path.join(base, "1"))
        assert wait_for(lambda: states(server, "hpt")["1"] == "END", timeout=30)
        answer = requests.post(f"{server.rest_url}/v1/models/hpt:predict", json={"instances": [[2.0]]})
        assert answer.status_code == 404
        assert "Servable not found for request: Latest(hpt)" in answer.json()["error"]
        assert "hpt has no AVAILABLE version now" in answer.json()["error"]

        write_half_plus_two(base, 3, a=1.0, b=1.0)
        assert wait_for(lambda: states(server, "hpt").get("3") == "AVAILABLE", timeout=30)
        answer = requests.post(f"{server.rest_url}/v1/models/hpt:predict", json={"instances": [[2.0]]})
        assert answer.json() == {"predictions": [[3.0]]}


def _extra_threads(before: set[threading.Thread]) -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t not in before and t.is_alive())


def test_corrupt_saved_model_fails_startup_cleanly(tmp_path) -> None:
    base = str(tmp_path / "broken")
    install_corrupt_version(base, 1)
    before = set(threading.enumerate())
    with pytest.raises(Unknown) as raised:
        Server(base, "broken", port=0, rest_api_port=0).start()
    message = raised.value.message
    assert "did not become available" in message
    assert "{name: broken version: 1} due to error: DATA_LOSS" in message and "saved_model.pb" in message
    assert wait_for(lambda: not _extra_threads(before), timeout=10), _extra_threads(before)


def test_load_that_raises_keeps_the_old_version_serving(tmp_path) -> None:
    base, staging = str(tmp_path / "hpt"), str(tmp_path / "staging")
    os.makedirs(base)
    os.makedirs(staging)
    write_half_plus_two(base, 1)
    broken = write_half_plus_two(staging, 2)
    for name in os.listdir(os.path.join(broken, "variables")):
        if name.startswith("variables.data"):
            os.remove(os.path.join(broken, "variables", name))
    with Server(base, "hpt", port=0, rest_api_port=0, file_system_poll_wait_seconds=0.2) as server:
        with Traffic(server, "hpt") as traffic:
            os.rename(broken, os.path.join(base, "2"))
            assert wait_for(lambda: states(server, "hpt").get("2") == "END", timeout=30)
        assert traffic.failures == [] and traffic.versions == {"1"}
        status = requests.get(f"{server.rest_url}/v1/models/hpt/versions/2").json()
        error = status["model_version_status"][0]["status"]
        assert error["error_code"] != "OK"
        assert os.path.join(base, "2") in error["error_message"]
        assert "variables" in error["error_message"]
        assert states(server, "hpt")["1"] == "AVAILABLE"


def _reload(server: Server, text: str) -> grpc.RpcError | model_management_pb2.ReloadConfigResponse:
    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    with grpc.insecure_channel(server.grpc_address) as channel:
        try:
            return model_service_pb2_grpc.ModelServiceStub(channel).HandleReloadConfigRequest(
                request, timeout=60
            )
        except grpc.RpcError as error:
            return error


@pytest.mark.parametrize(
    ("configs", "fragments"),
    [
        (
            ['name: "hpt" base_path: "relative/hpt" model_platform: "tensorflow"'],
            ["Expected model hpt to have an absolute path or URI; got base_path()=relative/hpt"],
        ),
        (
            ['name: "hpt" base_path: "{base}" model_platform: "tensorflow"'] * 2,
            ["Illegal to list model hpt multiple times in config list"],
        ),
        (['name: "other" base_path: "{base}" model_platform: "pytorch"'], ["unsupported platform pytorch"]),
    ],
    ids=["relative-path", "duplicate-names", "unknown-platform"],
)
def test_bad_config_reload_is_rejected_and_old_config_kept(models, configs, fragments) -> None:
    config = 'config {{ name: "hpt" base_path: "{base}" model_platform: "tensorflow" }}'
    with Server(port=0, rest_api_port=0) as server:
        server.reload_config("model_config_list { " + config.format(base=models.half_plus_two) + " }")
        bad = " ".join("config { " + c.format(base=models.half_plus_two) + " }" for c in configs)
        refused = _reload(server, "model_config_list { " + bad + " }")
        assert isinstance(refused, grpc.RpcError)
        assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
        for fragment in fragments:
            assert fragment in refused.details()
        assert states(server, "hpt") == {"124": "AVAILABLE"}
        answer = requests.post(f"{server.rest_url}/v1/models/hpt:predict", json={"instances": [[1.0]]})
        assert answer.json() == {"predictions": [[3.0]]}


def test_no_thread_left_after_stop(faulty: str) -> None:
    before = set(threading.enumerate())
    server = Server(faulty, "faulty", port=0, rest_api_port=0, rest_api_timeout_in_ms=TIMEOUT_MS).start()
    try:
        assert _rest(server, {"inputs": [1.0]}).status_code == 200
        assert _rest(server, {"inputs": [-1.0]}).status_code == 400
        assert _rest(server, {"signature_name": "spin", "inputs": FOREVER}).status_code == 504
        with pytest.raises(grpc.RpcError):
            _grpc_predict(server, 0.3, "spin", n=tf.constant(FOREVER, tf.int64))
        _grpc_predict(server, x=tf.constant([1.0], tf.float32))
    finally:
        server.stop()
    assert wait_for(lambda: not _extra_threads(before), timeout=10), _extra_threads(before)


def test_no_accepted_request_lost_under_concurrent_clients(server: Server) -> None:
    """32 clients, half REST, half gRPC, each checking every answer is its own (y = x/2 + 2)."""

    def client(index: int) -> list[str]:
        problems = []
        xs = [index * 1000.0 + k for k in range(20)]
        if index % 2:
            with requests.Session() as session:
                for x in xs:
                    answer = session.post(
                        f"{server.rest_url}/v1/models/half_plus_two/versions/123:predict",
                        json={"instances": [[x]]},
                        timeout=60,
                    )
                    if answer.status_code != 200 or answer.json() != {"predictions": [[x / 2 + 2]]}:
                        problems.append(f"REST {x}: {answer.status_code} {answer.text}")
            return problems
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "half_plus_two"
        request.model_spec.version.value = 123
        with grpc.insecure_channel(server.grpc_address) as channel:
            stub = tfs_grpc.PredictionServiceStub(channel)
            for x in xs:
                request.inputs["x"].CopyFrom(tf.make_tensor_proto([[x]], dtype=tf.float32))
                try:
                    y = tf.make_ndarray(stub.Predict(request, timeout=60).outputs["y"]).tolist()
                    if y != [[x / 2 + 2]]:
                        problems.append(f"gRPC {x}: {y}")
                except grpc.RpcError as error:
                    problems.append(f"gRPC {x}: {error.code()} {error.details()}")
        return problems

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        problems = [p for found in pool.map(client, range(32)) for p in found]
    assert problems == []
