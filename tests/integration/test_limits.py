"""Size limits answer in TF Serving's shapes: REST 413 / 400 JSON, gRPC RESOURCE_EXHAUSTED."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc

from nbserve.server.runtime import Server

LIMIT = 2000


@pytest.fixture(scope="module")
def limited(models) -> Iterator[Server]:
    with Server(
        models.half_plus_two,
        "hpt",
        port=0,
        rest_api_port=0,
        rest_api_max_body_bytes=LIMIT,
        grpc_max_message_bytes=LIMIT,
        max_instances_per_request=3,
    ) as server:
        yield server


def _post(server: Server, data: bytes, **headers: str) -> requests.Response:
    return requests.post(f"{server.rest_url}/v1/models/hpt:predict", data=data, headers=headers, timeout=30)


def _grpc(server: Server, values: list[float]):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "hpt"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(values, tf.float32, shape=[len(values), 1]))
    with grpc.insecure_channel(server.grpc_address) as channel:
        return tfs_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)


def test_rest_body_limit_is_a_json_413(limited: Server) -> None:
    for body, headers in (
        (b'{"instances": [' + b"1.0, " * LIMIT + b"1.0]}", {}),
        (gzip.compress(b'{"instances": [' + b"1.0, " * LIMIT + b"1.0]}"), {"Content-Encoding": "gzip"}),
    ):
        answer = _post(limited, body, **headers)
        assert answer.status_code == 413, answer.text
        assert f"limit of {LIMIT} bytes" in answer.json()["error"]
        assert "--rest_api_max_body_bytes" in answer.json()["error"]
    assert _post(limited, b'{"instances": [[1.0]]}').json() == {"predictions": [[3.0]]}


def test_gzip_bodies(limited: Server) -> None:
    answer = _post(limited, gzip.compress(b'{"instances": [[1.0]]}'), **{"Content-Encoding": "gzip"})
    assert answer.json() == {"predictions": [[3.0]]}
    answer = _post(limited, b'{"instances": [[1.0]]}', **{"Content-Encoding": "gzip"})
    assert answer.status_code == 400
    assert "not valid gzip" in answer.json()["error"]


def test_too_many_instances_names_the_flag(limited: Server) -> None:
    answer = _post(limited, b'{"instances": [[1.0], [2.0], [3.0], [4.0]]}')
    assert answer.status_code == 400
    assert "4 instances" in answer.json()["error"] and "--max_instances_per_request" in answer.json()["error"]
    with pytest.raises(grpc.RpcError) as error:
        _grpc(limited, [1.0] * 4)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert tf.make_ndarray(_grpc(limited, [1.0] * 3).outputs["y"]).tolist() == [[3.0]] * 3


def test_grpc_message_limit(limited: Server) -> None:
    with pytest.raises(grpc.RpcError) as error:
        _grpc(limited, [1.0] * 1000)  # 4 KB of floats
    assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
