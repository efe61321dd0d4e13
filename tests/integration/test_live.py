"""Live models (``server.serve``) and the model-management API (load / unload / labels / models /
urls) on a real server, queried over REST and with the official gRPC stubs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator

import grpc
import keras
import numpy as np
import pytest
import requests
import tensorflow as tf
from models import write_half_plus_two
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

import nbserve
from nbserve.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, ServingError


@pytest.fixture(scope="module")
def server() -> Iterator[nbserve.Server]:
    with nbserve.Server(port=0, rest_api_port=0, file_system_poll_wait_seconds=0.1) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def keras_model() -> keras.Model:
    keras.utils.set_random_seed(5)
    return keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(2, name="dense")])


@pytest.fixture(scope="module")
def live_keras(server, keras_model) -> str:
    assert server.serve(keras_model, "live_keras") == 1
    return "live_keras"


def _rest(server, path: str, body: object | None = None) -> requests.Response:
    url = f"{server.rest_url}/v1/models/{path}"
    return requests.post(url, json=body, timeout=30) if body is not None else requests.get(url, timeout=30)


def _grpc(stub, name: str, inputs: dict[str, tf.Tensor], **spec: object) -> dict[str, np.ndarray]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    for field, value in spec.items():
        if field == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, field, value)
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(value))
    return {k: tf.make_ndarray(v) for k, v in stub.Predict(request, timeout=30).outputs.items()}


def _versions(server, name: str) -> dict[int, tuple[str, bool]]:
    [summary] = [m for m in server.models() if m.name == name]
    return {v.version: (v.state, v.live) for v in summary.versions}


def _wait_for(condition, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_a_live_keras_model_answers_rest_and_grpc_like_the_model(server, stub, keras_model, live_keras):
    x = np.random.default_rng(0).random((4, 3), np.float32)
    expected = keras_model(x).numpy()
    answer = _rest(server, f"{live_keras}:predict", {"instances": x.tolist()})
    assert answer.status_code == 200 and answer.headers["X-Nbserve-Model-Version"] == "1"
    np.testing.assert_allclose(answer.json()["predictions"], expected, rtol=1e-6)
    np.testing.assert_allclose(_grpc(stub, live_keras, {"features": x})["dense"], expected, rtol=1e-6)
    status = _rest(server, live_keras).json()["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("1", "AVAILABLE")]


def test_live_metadata_has_a_real_signature_def(server, stub, live_keras):
    doc = _rest(server, f"{live_keras}/metadata").json()
    signature = doc["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["method_name"] == "tensorflow/serving/predict"
    features = signature["inputs"]["features"]
    assert features["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in features["tensor_shape"]["dim"]] == ["-1", "3"]
    assert [d["size"] for d in signature["outputs"]["dense"]["tensor_shape"]["dim"]] == ["-1", "2"]

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = live_keras
    response = stub.GetModelMetadata(request, timeout=30)
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signature_map)
    definition = signature_map.signature_def["serving_default"]
    assert definition.inputs["features"].dtype == tf.float32.as_datatype_enum
    assert [d.size for d in definition.outputs["dense"].tensor_shape.dim] == [-1, 2]


def test_a_python_callable_with_named_inputs(server, stub):
    def add(a: np.ndarray, b: np.ndarray) -> dict[str, np.ndarray]:
        return {"sum": a + b, "parity": np.where(b % 2 == 0, "even", "odd")}

    signature = {"a": tf.TensorSpec([None], tf.float32), "b": tf.TensorSpec([None], tf.int64)}
    assert server.serve(add, "adder", input_signature=signature, signature_name="add") == 1
    body = {"signature_name": "add", "inputs": {"a": [1.5, 2.5], "b": [1, 2]}}
    answer = _rest(server, "adder:predict", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == {"sum": [2.5, 4.5], "parity": ["odd", "even"]}
    by_grpc = _grpc(stub, "adder", {"a": np.float32([3.0]), "b": np.int64([4])}, signature_name="add")
    assert by_grpc["sum"].tolist() == [7.0] and by_grpc["parity"].tolist() == [b"even"]
    wrong = _rest(server, "adder:predict", {"inputs": {"a": [1.0], "b": [1]}})
    assert wrong.status_code == 400 and '"serving_default" not found' in wrong.json()["error"]


def test_concurrent_requests_of_any_batch_size_trace_once(server, stub):
    traces = []

    class Scale(tf.Module):
        def __call__(self, x: tf.Tensor) -> tf.Tensor:
            traces.append(x.shape)  # runs only while tracing
            return x * 3.0

    server.serve(Scale(), "scale", input_signature=tf.TensorSpec([None, 2], tf.float32, name="x"))
    failures: list[str] = []

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(20):
            x = rng.random((int(rng.integers(1, 9)), 2), np.float32)
            got = _grpc(stub, "scale", {"x": x})["output_0"]
            if not np.allclose(got, x * 3.0):
                failures.append(f"{x} -> {got}")

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and len(traces) == 1


def test_live_versions_sit_next_to_disk_versions(server, stub, tmp_path):
    base = str(tmp_path / "hpt")
    write_half_plus_two(base, 1)  # y = 0.5 x + 2
    server.load("hpt", base)
    ten_x = tf.TensorSpec([None, 1], tf.float32, name="x")
    assert server.serve(lambda x: {"y": x * 10}, "hpt", input_signature=ten_x) == 2
    x = {"x": np.float32([[4.0]])}
    assert _grpc(stub, "hpt", x)["y"].tolist() == [[40.0]]  # the latest version is the live one
    assert _grpc(stub, "hpt", x, version=1)["y"].tolist() == [[4.0]]
    assert _versions(server, "hpt") == {2: ("AVAILABLE", True), 1: ("AVAILABLE", False)}
    [summary] = [m for m in server.models() if m.name == "hpt"]
    assert (summary.base_path, summary.policy) == (base, "latest 1")

    server.set_label("hpt", "canary", 2)
    canary = _rest(server, "hpt/labels/canary:predict", {"instances": [[1.0]]})
    assert canary.json() == {"predictions": [[10.0]]}
    with pytest.raises(AlreadyExists, match="already has version 2"):
        server.serve(lambda x: x, "hpt", version=2, input_signature=ten_x)

    write_half_plus_two(base, 2, a=2.0, b=1.0)  # a disk version 2 waits while the live one serves
    time.sleep(0.5)
    assert _grpc(stub, "hpt", x)["y"].tolist() == [[40.0]]
    assert server.unserve("hpt") == [2]
    assert _wait_for(lambda: _versions(server, "hpt") == {2: ("AVAILABLE", False), 1: ("END", False)})
    assert _grpc(stub, "hpt", x)["y"].tolist() == [[9.0]]
    server.unload("hpt")


def test_config_reloads_keep_live_versions(server, stub, tmp_path):
    base = str(tmp_path / "mixed")
    write_half_plus_two(base, 1)
    server.load("mixed", base)
    server.serve(lambda x: {"y": -x}, "mixed", input_signature=tf.TensorSpec([None, 1], tf.float32, name="x"))
    # A TF-Serving-style config reload without the model: the disk version goes, the live one stays.
    server.reload_config([c for c in server.manager.configs() if c.name != "mixed"])
    assert _wait_for(lambda: _versions(server, "mixed") == {2: ("AVAILABLE", True), 1: ("END", False)})
    [summary] = [m for m in server.models() if m.name == "mixed"]
    assert summary.base_path is None
    assert _grpc(stub, "mixed", {"x": np.float32([[2.0]])})["y"].tolist() == [[-2.0]]
    server.unload("mixed")
    assert "mixed" not in [m.name for m in server.models()]


def test_serve_and_unserve_errors_name_the_fix(server, live_keras):
    with pytest.raises(InvalidArgument, match="pass input_signature=tf.TensorSpec"):
        server.serve(lambda x: x, "nope")
    with pytest.raises(InvalidArgument, match="pass a Keras model, a tf.Module, a tf.function or a callable"):
        server.serve(42, "nope")
    with pytest.raises(NotFound, match="has no live version 7"):
        server.unserve(live_keras, 7)
    with pytest.raises(NotFound, match="Could not find model nope"):
        server.set_label("nope", "a", 1)
    assert "nope" not in [m.name for m in server.models()]


def test_serve_then_unserve_a_live_only_model(server, stub, keras_model):
    spec = tf.TensorSpec([None, 3], tf.float32, name="features")
    assert server.serve(keras_model, "twice", input_signature=spec) == 1
    assert server.serve(lambda features: features.sum(axis=1), "twice", input_signature=spec, version=5) == 5
    assert _versions(server, "twice") == {5: ("AVAILABLE", True), 1: ("AVAILABLE", True)}
    [summary] = [m for m in server.models() if m.name == "twice"]
    assert (summary.base_path, summary.policy, summary.labels) == (None, None, {})
    assert "live only" in summary._repr_html_()
    server.set_label("twice", "keras", 1)
    x = np.float32([[1.0, 2.0, 3.0]])
    by_label = _grpc(stub, "twice", {"features": x}, version_label="keras")
    np.testing.assert_allclose(by_label["dense"], keras_model(x))
    assert server.unserve("twice", 5) == [5]
    assert _rest(server, "twice/versions/5:predict", {"instances": x.tolist()}).status_code == 404
    assert server.unserve("twice") == [1]
    assert "twice" not in [m.name for m in server.models()]
    assert _rest(server, "twice:predict", {"instances": x.tolist()}).status_code == 404
    assert [(s["version"], s["state"]) for s in _rest(server, "twice").json()["model_version_status"]] == [
        ("5", "END"),
        ("1", "END"),
    ]
    assert server.serve(keras_model, "twice") == 6  # numbers are not reused


def test_load_set_label_unload_round_trip(server, tmp_path):
    base = str(tmp_path / "rt")
    for version in (1, 2):
        write_half_plus_two(base, version, a=float(version))
    server.load("rt", base, policy="all", labels={"stable": 1})
    [summary] = [m for m in server.models() if m.name == "rt"]
    assert (summary.policy, summary.labels) == ("all", {"stable": 1})
    assert {v.version: v.state for v in summary.versions} == {2: "AVAILABLE", 1: "AVAILABLE"}
    server.set_label("rt", "canary", 2)
    canary = _rest(server, "rt/labels/canary:predict", {"instances": [[1.0]]})
    assert canary.json() == {"predictions": [[4.0]]}
    server.remove_label("rt", "canary")
    with pytest.raises(FailedPrecondition, match="not currently available"):
        server.set_label("rt", "stable", 3)

    server.load("rt", base, policy="specific", versions=[1])  # replaces the entry, labels included
    assert _wait_for(lambda: _versions(server, "rt") == {2: ("END", False), 1: ("AVAILABLE", False)})
    [summary] = [m for m in server.models() if m.name == "rt"]
    assert (summary.policy, summary.labels) == ("specific 1", {})

    server.unload("rt")
    assert "rt" not in [m.name for m in server.models()]
    assert _rest(server, "rt:predict", {"instances": [[1.0]]}).status_code == 404
    with pytest.raises(NotFound, match=r"not served; server.models\(\) lists"):
        server.unload("rt")


def test_a_failed_load_leaves_the_config_as_it_was(server, live_keras, tmp_path):
    before = server.models()
    with pytest.raises(ServingError, match="Could not find base path"):
        server.load("missing", str(tmp_path / "nowhere"))
    assert server.models() == before
    with pytest.raises(InvalidArgument, match="versions=.* exactly when policy='specific'"):
        server.load("missing", str(tmp_path), policy="specific")


def test_a_new_base_path_replaces_the_versions(server, stub, tmp_path):
    first, second = str(tmp_path / "first"), str(tmp_path / "second")
    write_half_plus_two(first, 1)
    write_half_plus_two(second, 1, a=3.0, b=0.0)
    server.load("moved", first)
    server.load("moved", second)
    assert _grpc(stub, "moved", {"x": np.float32([[2.0]])})["y"].tolist() == [[6.0]]
    server.unload("moved")


def test_urls_and_a_curl_example_that_runs(server, live_keras, tmp_path):
    urls = server.urls(live_keras)
    rest = f"{server.rest_url}/v1/models/{live_keras}"
    assert urls["rest_predict"] == f"{rest}:predict" and urls["rest_metadata"] == f"{rest}/metadata"
    assert urls["rest_status"] == rest and urls["grpc_address"] == server.grpc_address
    run = subprocess.run(["bash", "-c", urls["curl"]], capture_output=True, text=True, timeout=30)
    assert np.array(json.loads(run.stdout)["predictions"]).shape == (1, 2), run.stdout + run.stderr

    lengths = tf.TensorSpec([None], tf.string, name="image")
    server.serve(lambda image: np.array([len(b) for b in image]), "sizes", input_signature=lengths)
    curl = server.urls("sizes")["curl"]
    assert '"b64"' in curl and "image.jpg" in curl
    (tmp_path / "image.jpg").write_bytes(b"\xff\xd8 twelve bytes"[:12])
    run = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert json.loads(run.stdout) == {"predictions": [12]}, run.stdout + run.stderr
    with pytest.raises(NotFound, match="not served"):
        server.urls("nope")
