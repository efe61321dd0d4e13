"""The bad-input matrix: malformed, mistyped, oversized and misaddressed requests over REST and gRPC
(official tensorflow-serving-api stubs). Each gets TF Serving's status code and a message naming the
problem and the fix, and the server answers a good request right after. test_errors.py holds the
basic cases; these are the rest."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import orjson
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    inference_pb2,
    predict_pb2,
    regression_pb2,
)
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc

from nbserve.server.runtime import Server

HPT = "/v1/models/half_plus_two"
PREDICT = HPT + ":predict"
LABELS = "canary -> 124, stable -> 123"
SIGNATURES = "classify_x_to_y, regress_x_to_y, serving_default, two_inputs"
DENSE = "every list at one level has the same length"
URL_GRAMMAR = "POST /v1/models/<model>[/versions/<n>|/labels/<l>]:(predict|classify|regress)"
HUGE_VALUES = 50_000_000 // len("1.2500000000000000000, ")


@dataclass(frozen=True)
class Rest:
    """One REST request and what must come back (``fragments`` of the error, or of a 200 body)."""

    body: bytes | dict | Callable[[], bytes] | None
    status: int
    fragments: tuple[str, ...]
    path: str = PREDICT
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)


def _two(**body: object) -> dict:
    return {"signature_name": "two_inputs", **body}


def _huge_body() -> bytes:
    return b'{"inputs": [' + b", ".join([b"1.2500000000000000000"] * HUGE_VALUES) + b"]}"


def _deep(opened: int, closed: int) -> bytes:
    return b'{"instances": [[1.0]], "nested": ' + b"[" * opened + b"]" * closed + b"}"


REST_CASES = {
    # -- bodies that are not (valid) JSON ----------------------------------------------------------
    "malformed-trailing-comma": Rest(
        b'{"instances": [1.0,}', 400, ("JSON Parse error: Invalid value. at offset: 19",)
    ),
    "malformed-missing-colon": Rest(
        b'{"instances" [[1.0]]}', 400, ("Missing a colon after a name of object member. at offset: 13",)
    ),
    "non-utf8-string-for-float": Rest(
        b'{"instances": [["\xff\xfe"]]}',
        400,
        ("Type: String is not of expected type: float", "send JSON numbers"),
    ),
    "non-utf8-signature-name": Rest(
        b'{"signature_name": "\xff", "instances": [[1.0]]}', 400, ("not found in signature def", SIGNATURES)
    ),
    "non-utf8-feature-for-float": Rest(
        b'{"signature_name": "regress_x_to_y", "examples": [{"x": "\xff"}]}',
        400,
        ("Data type: string but expected type: float", "6.0 a float"),
        path=HPT + ":regress",
    ),
    "whitespace-only-body": Rest(
        b" \n\t ",
        400,
        ("JSON Parse error: The document is empty. at offset: 4",),
        headers={"Content-Type": "application/octet-stream"},
    ),
    "empty-body-classify": Rest(
        b"", 400, ("JSON Parse error: The document is empty",), path=HPT + ":classify"
    ),
    "number-too-big": Rest(
        b'{"instances": [[1e999]]}', 400, ("Number too big to be stored in double. at offset: 16",)
    ),
    "top-level-array": Rest(b"[[1.0]]", 400, ("JSON Value: [[1.0]] Is not object",)),
    "signature-name-not-string": Rest(
        {"signature_name": 7, "instances": [[1.0]]}, 400, ("'signature_name' key must be a string value.",)
    ),
    # -- TF Serving's leniencies: these must work ---------------------------------------------------
    "content-type-text-plain": Rest(
        b'{"instances": [[2.0]]}', 200, ('"predictions": [[5.0]',), headers={"Content-Type": "text/plain"}
    ),
    "content-type-form": Rest(
        b'{"instances": [[2.0]]}',
        200,
        ('"predictions": [[5.0]',),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    ),
    "trailing-garbage-ignored": Rest(b'{"instances": [[2.0]]} }}garbage', 200, ('"predictions": [[5.0]',)),
    "nan-infinity-for-float": Rest(
        b'{"instances": [[NaN], [-Infinity], [Inf]]}', 200, ("[[NaN], [-Infinity], [Infinity]",)
    ),
    "deep-nesting-in-ignored-key": Rest(lambda: _deep(100_000, 100_000), 200, ('"predictions": [[3.0]',)),
    "huge-body-50mb": Rest(_huge_body, 200, ('"outputs": [2.625',), path=HPT + "/versions/123:predict"),
    "many-instances": Rest(
        {"instances": [[1.0]] * 100_000},
        200,
        ('"predictions": [[3.0], [3.0]',),
        path=HPT + "/labels/canary:predict",
    ),
    # -- nesting and shapes ------------------------------------------------------------------------
    "deep-nesting-unclosed": Rest(
        b'{"inputs": ' + b"[" * 100_000, 400, ("JSON Parse error: Invalid value. at offset: 100011",)
    ),
    "deep-nesting-as-tensor": Rest(
        b'{"inputs": ' + b"[" * 100_000 + b"1.0" + b"]" * 100_000 + b"}",
        400,
        ("100000 nested levels", "at most 64"),
    ),
    "ragged-columnar": Rest(
        {"inputs": [[1.0], [1.0, 2.0]]},
        400,
        ("Encountered list at unexpected size: 2 at level: 1 expected size: 1", DENSE),
    ),
    "ragged-depth-columnar": Rest(
        {"inputs": [[1.0], 2.0]}, 400, ("JSON Value: 2.0 found at incorrect level: 2", DENSE)
    ),
    "ragged-depth-rows": Rest(
        {"instances": [[1.0], 2.0]},
        400,
        ("Failed to process element: 1", "Expecting shape [1] but got: []", "needs the same shape"),
    ),
    "instances-empty": Rest({"instances": []}, 400, ("No values in 'instances' array",)),
    "instances-not-a-list": Rest(
        {"instances": {"x": [1.0]}}, 400, ("Expecting 'instances' to be an list/array",)
    ),
    # -- row/columnar and named inputs mixed up ------------------------------------------------------
    "rows-object-then-list": Rest(
        _two(instances=[{"a": 1.0, "b": 1}, [1.0, 1]]), 400, ("Expecting object but got list at item 1",)
    ),
    "rows-plain-list-for-two-inputs": Rest(
        _two(instances=[1.0, 2.0]), 400, ("instances is a plain list", "send objects keyed by: a, b")
    ),
    "columnar-plain-list-for-two-inputs": Rest(
        _two(inputs=[1.0]), 400, ("inputs is a plain value/list", "send an object keyed by: a, b")
    ),
    "columnar-missing-input": Rest(
        _two(inputs={"a": [1.0], "c": [1]}),
        400,
        ("Missing named input: b in 'inputs' object.", "inputs are: a, b"),
    ),
    # -- value types ---------------------------------------------------------------------------------
    "bool-for-float": Rest({"instances": [[True]]}, 400, ("Type: True is not of expected type: float",)),
    "null-for-float": Rest({"inputs": [[None]]}, 400, ("Type: Null is not of expected type: float",)),
    "string-for-int64": Rest(
        _two(inputs={"a": [1.0], "b": ["1"]}),
        400,
        ("Type: String is not of expected type: int64", "send JSON integers"),
    ),
    "fraction-for-int64": Rest(
        _two(inputs={"a": [1.0], "b": [1.5]}), 400, ("JSON Value: 1.5", "int64", "without a decimal point")
    ),
    "int64-overflow": Rest(
        _two(inputs={"a": [1.0], "b": [2**63]}),
        400,
        ("is not of expected type: int64", "9223372036854775807]"),
    ),
    "nan-for-int64-rows": Rest(
        b'{"signature_name": "two_inputs", "instances": [{"a": 1.0, "b": NaN}]}',
        400,
        ("Failed to process element: 0 key: b", "NaN and Infinity are only valid for float and double"),
    ),
    "infinity-for-int64-columnar": Rest(
        b'{"signature_name": "two_inputs", "inputs": {"a": [1.0], "b": [-Infinity]}}',
        400,
        ("is not of expected type: int64", "NaN and Infinity are only valid"),
    ),
    "b64-for-float": Rest(
        {"inputs": [{"b64": "AAAA"}]}, 400, ("Type: Object is not of expected type: float",)
    ),
    "invalid-base64": Rest(
        {"signature_name": "regress_x_to_y", "instances": [{"b64": "!!!!"}]},
        400,
        ("Unable to base64 decode", "standard base64"),
    ),
    "url-safe-base64": Rest(
        {"signature_name": "regress_x_to_y", "inputs": [{"b64": "-_-_"}]},
        400,
        ("Unable to base64 decode", "URL-safe '-' and '_' are not accepted"),
    ),
    "base64-of-a-non-example": Rest(
        {"signature_name": "regress_x_to_y", "inputs": [{"b64": "AAAA"}]},
        400,
        ("Could not parse example input",),
    ),
    # -- misaddressed ------------------------------------------------------------------------------
    "unknown-model-regress": Rest(
        {"examples": [{"x": 1.0}]},
        404,
        ("Servable not found for request: Latest(nope)", "served models: digits, half_plus_two"),
        path="/v1/models/nope:regress",
    ),
    "unknown-version-metadata": Rest(
        None,
        404,
        ("Specific(half_plus_two, 7)", "available versions of half_plus_two: 123, 124"),
        path=HPT + "/versions/7/metadata",
        method="GET",
    ),
    "unknown-version-status": Rest(
        None,
        404,
        ("Could not find version 5 of model half_plus_two", "tracked versions of half_plus_two: 123, 124"),
        path=HPT + "/versions/5",
        method="GET",
    ),
    "unknown-label-classify": Rest(
        {"signature_name": "classify_x_to_y", "examples": [{"x": 1.0}]},
        400,
        ("Unrecognized servable version label: nolabel", LABELS),
        path=HPT + "/labels/nolabel:classify",
    ),
    "unknown-signature-predict": Rest(
        {"signature_name": "nosig", "inputs": [1.0]},
        400,
        ('Serving signature name: "nosig" not found in signature def', SIGNATURES + ")"),
    ),
    "unknown-signature-classify": Rest(
        {"signature_name": "nosig", "examples": [{"x": 1.0}]},
        400,
        ("No signature was found with the name: nosig", SIGNATURES + ")"),
        path=HPT + ":classify",
    ),
    "negative-version": Rest(
        {"instances": [[1.0]]}, 400, ("Malformed request", URL_GRAMMAR), path=HPT + "/versions/-1:predict"
    ),
    "non-numeric-version": Rest(
        {"instances": [[1.0]]}, 400, ("Malformed request", URL_GRAMMAR), path=HPT + "/versions/latest:predict"
    ),
    "negative-version-status": Rest(
        None, 400, ("Malformed request: GET",), path=HPT + "/versions/-3", method="GET"
    ),
    "query-string-on-predict": Rest(
        {"instances": [[1.0]]}, 400, ("Malformed request",), path=PREDICT + "?debug=1"
    ),
    # -- tf.Examples for classify / regress ----------------------------------------------------------
    "example-missing-feature": Rest(
        {"signature_name": "classify_x_to_y", "examples": [{"y": 1.0}]},
        400,
        ("Feature: x (data type: float) is required but could not be found.",),
        path=HPT + ":classify",
    ),
    "example-int-for-float-feature": Rest(
        {"signature_name": "regress_x_to_y", "examples": [{"x": 6}]},
        400,
        ("Data type: int64 but expected type: float", "6 makes an int64 feature and 6.0 a float one"),
        path=HPT + ":regress",
    ),
    "example-mixed-kinds": Rest(
        {"signature_name": "regress_x_to_y", "examples": [{"x": [1.0, 2]}]},
        400,
        ("Unexpected element type in feature: x expecting type: float", "6 is an int64, 6.0 a float"),
        path=HPT + ":regress",
    ),
    "example-null-value": Rest(
        {"signature_name": "regress_x_to_y", "examples": [{"x": None}]},
        400,
        ("Feature: x has element with unexpected JSON type: Null", "feature values are strings"),
        path=HPT + ":regress",
    ),
    "example-uint64-value": Rest(
        {"signature_name": "regress_x_to_y", "examples": [{"x": 2**64 - 1}]},
        400,
        ("Feature: x has uint64_t element. Only int64_t is supported.",),
        path=HPT + ":regress",
    ),
    "example-not-an-object": Rest(
        {"signature_name": "regress_x_to_y", "examples": [[1.0]]},
        400,
        ("Example must be JSON object but got JSON Array",),
        path=HPT + ":regress",
    ),
    "examples-missing": Rest(
        {"signature_name": "regress_x_to_y", "instances": [{"x": 1.0}]},
        400,
        ("key 'examples' is expected and was not found", '"examples": [{feature: value'),
        path=HPT + ":regress",
    ),
    "classify-with-predict-signature": Rest(
        {"examples": [{"x": 1.0}]},
        400,
        ("Signature serving_default cannot classify tf.Examples", "named 'inputs'"),
        path=HPT + ":classify",
    ),
}


@pytest.fixture(scope="module")
def stub(server: Server) -> Iterator[tfs_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield tfs_grpc.PredictionServiceStub(channel)


def assert_serving(server: Server, stub: tfs_grpc.PredictionServiceStub) -> None:
    """The server still answers good requests correctly over both transports."""
    answer = requests.post(
        f"{server.rest_url}{HPT}/versions/123:predict", json={"instances": [[2.0]]}, timeout=30
    )
    assert answer.status_code == 200 and answer.json() == {"predictions": [[3.0]]}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.version.value = 123
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]], dtype=tf.float32))
    assert tf.make_ndarray(stub.Predict(request, timeout=30).outputs["y"]).tolist() == [[2.5]]


@pytest.mark.parametrize("case", REST_CASES.values(), ids=REST_CASES.keys())
def test_rest_bad_input(server: Server, stub: tfs_grpc.PredictionServiceStub, case: Rest) -> None:
    body = case.body() if callable(case.body) else case.body
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    answer = requests.request(
        case.method, server.rest_url + case.path, data=data, headers=case.headers, timeout=120
    )
    assert answer.status_code == case.status, answer.content[:500]
    assert answer.headers["Content-Type"] == "application/json"
    text = answer.content.decode("utf-8", "replace")  # error texts may echo the client's bytes
    if case.status == 200:
        for fragment in case.fragments:
            assert fragment in text[:300]
    else:
        message = json.loads(text)["error"]
        for fragment in case.fragments:
            assert fragment in message
    if case.body is _huge_body:
        outputs = orjson.loads(answer.content)["outputs"]
        assert len(outputs) == HUGE_VALUES and outputs[-1] == outputs[0]
    assert_serving(server, stub)


def test_grpc_oversize_batch(models, tmp_path) -> None:
    params = tmp_path / "batching.config"
    params.write_text("max_batch_size { value: 4 } batch_timeout_micros { value: 0 }")
    with Server(
        models.half_plus_two,
        "hpt",
        port=0,
        rest_api_port=None,
        enable_batching=True,
        batching_parameters_file=str(params),
    ) as batched:
        with grpc.insecure_channel(batched.grpc_address) as channel:
            stub = tfs_grpc.PredictionServiceStub(channel)
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "hpt"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]] * 5, dtype=tf.float32))
            with pytest.raises(grpc.RpcError) as raised:
                stub.Predict(request, timeout=30)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "Task size 5 is larger than maximum input batch size 4" in raised.value.details()
            assert "send requests of at most 4 rows" in raised.value.details()
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0]] * 4, dtype=tf.float32))
            assert tf.make_ndarray(stub.Predict(request, timeout=30).outputs["y"]).tolist() == [[3.0]] * 4


# ---------------------------------------------------------------------------------------------------
# gRPC
# ---------------------------------------------------------------------------------------------------


def _predict(signature: str = "", version: int | None = 123, **inputs: object) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    for alias, value in (inputs or {"x": tf.make_tensor_proto([[1.0]], dtype=tf.float32)}).items():
        request.inputs[alias].CopyFrom(value)
    return request


def _content(size: int, dims: tuple[int, ...] = (1, 1)) -> predict_pb2.PredictRequest:
    request = _predict()
    proto = request.inputs["x"]
    proto.Clear()
    proto.dtype = tf.float32.as_datatype_enum
    for dim in dims:
        proto.tensor_shape.dim.add().size = dim
    proto.tensor_content = b"\0" * size
    return request


def _with(request, change: Callable[..., object]):
    change(request)
    return request


def _example(**features: object) -> tf.train.Example:
    example = tf.train.Example()
    for name, value in features.items():
        feature = example.features.feature[name]
        if isinstance(value, bytes):
            feature.bytes_list.value.append(value)
        else:
            feature.float_list.value.append(value)
    return example


def _examples(kind: str, signature: str, *examples: tf.train.Example, name: str = "half_plus_two"):
    message = (
        classification_pb2.ClassificationRequest()
        if kind == "Classify"
        else regression_pb2.RegressionRequest()
    )
    message.model_spec.name = name
    message.model_spec.signature_name = signature
    message.input.example_list.examples.extend(examples)
    return message


def _metadata(*fields: str, spec: bool = True) -> get_model_metadata_pb2.GetModelMetadataRequest:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=list(fields))
    if spec:
        request.model_spec.name = "half_plus_two"
    return request


def _multi(method: str) -> inference_pb2.MultiInferenceRequest:
    request = inference_pb2.MultiInferenceRequest()
    task = request.tasks.add()
    task.model_spec.name, task.model_spec.signature_name = "half_plus_two", "regress_x_to_y"
    task.method_name = method
    request.input.example_list.examples.add().CopyFrom(_example(x=1.0))
    return request


INVALID = grpc.StatusCode.INVALID_ARGUMENT
GRPC_CASES = {
    # (method, request factory, code, fragments)
    "tensor-content-too-long": (
        "Predict",
        lambda: _content(7),
        INVALID,
        ("tensor parsing error: x", "tensor_content has 7 bytes; shape [1, 1] of DT_FLOAT needs 4"),
    ),
    "tensor-content-too-short": (
        "Predict",
        lambda: _content(4, (2, 1)),
        INVALID,
        ("tensor parsing error: x", "needs 8"),
    ),
    "negative-dim": (
        "Predict",
        lambda: _content(4, (-1, 1)),
        INVALID,
        ("tensor parsing error: x", "[-1, 1]"),
    ),
    "int32-for-float": (
        "Predict",
        lambda: _predict(x=tf.make_tensor_proto([[1]], dtype=tf.int32)),
        INVALID,
        ("expects DT_FLOAT but the request's TensorProto is DT_INT32", "dtype=tf.float32"),
    ),
    "double-for-float": (
        "Predict",
        lambda: _predict(x=tf.make_tensor_proto([[1.0]], dtype=tf.float64)),
        INVALID,
        ("expects DT_FLOAT", "is DT_DOUBLE"),
    ),
    "float-for-int64": (
        "Predict",
        lambda: _predict(
            "two_inputs",
            a=tf.make_tensor_proto([1.0], dtype=tf.float32),
            b=tf.make_tensor_proto([1.0], dtype=tf.float32),
        ),
        INVALID,
        ("Input 'b' of signature 'two_inputs' expects DT_INT64", "dtype=tf.int64"),
    ),
    "invalid-dtype": (
        "Predict",
        lambda: _with(_predict(), lambda r: setattr(r.inputs["x"], "dtype", 0)),
        INVALID,
        ("tensor parsing error: x", "DT_INVALID"),
    ),
    "missing-model-spec-predict": (
        "Predict",
        lambda: _with(_predict(), lambda r: r.ClearField("model_spec")),
        INVALID,
        ("Missing ModelSpec", "set model_spec.name"),
    ),
    "missing-model-spec-metadata": (
        "GetModelMetadata",
        lambda: _metadata("signature_def", spec=False),
        INVALID,
        ("Missing ModelSpec",),
    ),
    "unknown-metadata-field": (
        "GetModelMetadata",
        lambda: _metadata("signature_def", "graph"),
        INVALID,
        ("Metadata field graph is not supported", "only supported field is signature_def"),
    ),
    "no-metadata-field": (
        "GetModelMetadata",
        lambda: _metadata(),
        INVALID,
        ("GetModelMetadataRequest must specify at least one metadata_field",),
    ),
    "unknown-output-filter": (
        "Predict",
        lambda: _with(_predict(), lambda r: r.output_filter.append("z")),
        INVALID,
        ("output tensor alias not found in signature: z", "{y}"),
    ),
    "duplicate-output-filter": (
        "Predict",
        lambda: _with(_predict(), lambda r: r.output_filter.extend(["y", "y"])),
        INVALID,
        ("duplicate output tensor alias: y",),
    ),
    "extra-input": (
        "Predict",
        lambda: _predict(
            x=tf.make_tensor_proto([[1.0]], dtype=tf.float32),
            z=tf.make_tensor_proto([[1.0]], dtype=tf.float32),
        ),
        INVALID,
        ("input size does not match signature: 2!=1", "Sent extra: {z}"),
    ),
    "negative-version": (
        "Predict",
        lambda: _predict(version=-1),
        grpc.StatusCode.NOT_FOUND,
        ("Specific(half_plus_two, -1)", "available versions of half_plus_two: 123, 124"),
    ),
    "unknown-label": (
        "Predict",
        lambda: _with(_predict(version=None), lambda r: setattr(r.model_spec, "version_label", "prod")),
        INVALID,
        ("Unrecognized servable version label: prod", LABELS),
    ),
    "unknown-model-classify": (
        "Classify",
        lambda: _examples("Classify", "classify_x_to_y", _example(x=1.0), name="nope"),
        grpc.StatusCode.NOT_FOUND,
        ("Latest(nope)", "served models: digits, half_plus_two"),
    ),
    "unknown-signature-regress": (
        "Regress",
        lambda: _examples("Regress", "nosig", _example(x=1.0)),
        INVALID,
        ("No signature was found with the name: nosig", SIGNATURES),
    ),
    "example-missing-feature": (
        "Classify",
        lambda: _examples("Classify", "classify_x_to_y", _example(y=1.0)),
        INVALID,
        ("Feature: x (data type: float) is required",),
    ),
    "example-bytes-for-float": (
        "Regress",
        lambda: _examples("Regress", "regress_x_to_y", _example(x=b"1.0")),
        INVALID,
        ("Data type: string but expected type: float",),
    ),
    "examples-empty": (
        "Classify",
        lambda: _examples("Classify", "classify_x_to_y"),
        INVALID,
        ("Input is empty.",),
    ),
    "regress-with-classify-signature": (
        "Regress",
        lambda: _examples("Regress", "classify_x_to_y", _example(x=1.0)),
        INVALID,
        ("Regression signature classify_x_to_y must have exactly one output named 'outputs'",),
    ),
    "multi-inference-predict-method": (
        "MultiInference",
        lambda: _multi("tensorflow/serving/predict"),
        grpc.StatusCode.UNIMPLEMENTED,
        ("Unsupported signature method_name: tensorflow/serving/predict", "tensorflow/serving/regress"),
    ),
}


@pytest.mark.parametrize(("method", "make", "code", "fragments"), GRPC_CASES.values(), ids=GRPC_CASES.keys())
def test_grpc_bad_input(server: Server, stub: tfs_grpc.PredictionServiceStub, method, make, code, fragments):
    with pytest.raises(grpc.RpcError) as raised:
        getattr(stub, method)(make(), timeout=30)
    assert raised.value.code() == code, raised.value.details()
    for fragment in fragments:
        assert fragment in raised.value.details()
    assert_serving(server, stub)


def test_matrix_size() -> None:
    """Issue 8 asks for at least 40 cases over both transports."""
    assert len(REST_CASES) + len(GRPC_CASES) + 1 >= 40
