"""Bad requests get TF Serving's status codes and a message that names the problem and the fix;
the server keeps serving afterwards."""

from __future__ import annotations

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc

REST_CASES = [
    # (method, path, body, status, fragments of the error message)
    (
        "POST",
        "/v1/models/nope:predict",
        {"instances": [[1.0]]},
        404,
        ["Servable not found for request: Latest(nope)"],
    ),
    (
        "POST",
        "/v1/models/half_plus_two/versions/9:predict",
        {"instances": [[1.0]]},
        404,
        ["Servable not found for request: Specific(half_plus_two, 9)"],
    ),
    (
        "POST",
        "/v1/models/half_plus_two/labels/nolabel:predict",
        {"instances": [[1.0]]},
        400,
        ["Unrecognized servable version label: nolabel"],
    ),
    (
        "POST",
        "/v1/models/half_plus_two:predict",
        {"signature_name": "nosig", "instances": [[1.0]]},
        400,
        ['"nosig" not found', "serving_default", "two_inputs"],
    ),
    ("POST", "/v1/models/half_plus_two:predict", b'{"instances": [[1.0]', 400, ["JSON Parse error"]),
    ("POST", "/v1/models/half_plus_two:predict", b"", 400, ["JSON Parse error: The document is empty"]),
    (
        "POST",
        "/v1/models/half_plus_two:predict",
        {"instances": [[1.0], [2.0, 3.0]]},
        400,
        ["Failed to process element: 1", "Expecting tensor size: 1 but got: 2"],
    ),
    (
        "POST",
        "/v1/models/half_plus_two:predict",
        {"instances": [["a"], ["b"]]},
        400,
        ["is not of expected type: float"],
    ),
    (
        "POST",
        "/v1/models/half_plus_two:predict",
        {"instances": [{"b64": "AAAA"}]},
        400,
        ["float"],
    ),
    (
        "POST",
        "/v1/models/half_plus_two:predict",
        {"signature_name": "two_inputs", "instances": [{"a": 1.0, "z": 2}]},
        400,
        ["z"],
    ),
    (
        "POST",
        "/v1/models/half_plus_two:predict",
        {"instances": [[1.0]], "inputs": {"x": [[1.0]]}},
        400,
        ["expecting only one of 'inputs' or 'instances'"],
    ),
    ("POST", "/v1/models/half_plus_two:predict", {"x": 1}, 400, ["Missing 'inputs' or 'instances' key"]),
    ("POST", "/v1/models/half_plus_two:explain", {"instances": [[1.0]]}, 400, ["Malformed request"]),
    ("PUT", "/v1/models/half_plus_two:predict", {"instances": [[1.0]]}, 400, ["Malformed request: PUT"]),
    ("GET", "/v1/models", None, 400, ["Missing model name in request."]),
    ("GET", "/v1/models/nope", None, 404, ["Could not find any versions of model nope"]),
    (
        "GET",
        "/v1/models/half_plus_two/versions/77",
        None,
        404,
        ["Could not find version 77 of model half_plus_two"],
    ),
    ("GET", "/v1/models/nope/metadata", None, 404, ["Servable not found for request: Latest(nope)"]),
    (
        "GET",
        "/v1/models/half_plus_two/versions/99999999999999999999",
        None,
        400,
        ["Failed to convert version: 99999999999999999999 to numeric."],
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "fragments"), REST_CASES)
def test_rest_errors(server, method, path, body, status, fragments):
    data = body if isinstance(body, bytes | None) else None
    answer = requests.request(
        method,
        server.rest_url + path,
        json=None if data is not None or body is None else body,
        data=data,
        timeout=30,
    )
    assert answer.status_code == status, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    message = answer.json()["error"]
    for fragment in fragments:
        assert fragment in message
    healthy = requests.post(
        f"{server.rest_url}/v1/models/half_plus_two/versions/123:predict", json={"instances": [[2.0]]}
    )
    assert healthy.json() == {"predictions": [[3.0]]}


def test_non_v1_path_is_a_plain_404(server):
    answer = requests.get(f"{server.rest_url}/nothing/here", timeout=30)
    assert answer.status_code == 404
    assert not answer.headers["Content-Type"].startswith("application/json")


def _predict_request(**spec: object) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    for key, value in spec.items():
        if key == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, key, value)
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    return request


GRPC_CASES = [
    ({"name": "nope"}, grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
    ({"name": "half_plus_two", "version": 9}, grpc.StatusCode.NOT_FOUND, "Specific(half_plus_two, 9)"),
    (
        {"name": "half_plus_two", "version_label": "x"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "Unrecognized servable",
    ),
    (
        {"name": "half_plus_two", "signature_name": "s"},
        grpc.StatusCode.FAILED_PRECONDITION,
        'key "s" not found',
    ),
    ({"name": ""}, grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified."),
    (
        {"name": "half_plus_two", "signature_name": "two_inputs"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "input size does not match signature: 1!=2",
    ),
]


@pytest.mark.parametrize(("spec", "code", "fragment"), GRPC_CASES)
def test_grpc_errors(server, spec, code, fragment):
    stub = tfs_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_address))
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(_predict_request(**spec), timeout=30)
    assert raised.value.code() == code
    assert fragment in raised.value.details()
    ok = stub.Predict(_predict_request(name="half_plus_two", version=123), timeout=30)
    assert tf.make_ndarray(ok.outputs["y"]).tolist() == [[2.5]]


def test_grpc_wrong_dtype_names_the_expected_one(server):
    stub = tfs_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc_address))
    request = _predict_request(name="half_plus_two")
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[b"a"]], dtype=tf.string))
    with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "DT_FLOAT" in raised.value.details() or "float" in raised.value.details()


def test_grpc_status_of_unknown_model(server):
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.grpc_address))
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "nope"
    with pytest.raises(grpc.RpcError) as raised:
        stub.GetModelStatus(request, timeout=30)
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Could not find any versions of model nope" in raised.value.details()
