"""Models do not interfere: a saturated slow model (its worker blocked on an event) leaves the shared
REST and gRPC workers to a fast model, whose requests all finish while the slow ones are in flight."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc
from traffic import wait_for

from nbserve.server.runtime import Server

X = tf.TensorSpec([None], tf.float32, name="x")
WAIT = 30


@pytest.fixture
def isolated() -> Iterator[tuple[Server, threading.Event]]:
    release = threading.Event()

    def slow(x: np.ndarray) -> np.ndarray:
        if x.size and x[0] > 0:  # the zero-batch probe at serve() must not block
            release.wait(WAIT)
        return x

    with Server(
        port=0,
        rest_api_port=0,
        rest_api_num_threads=2,
        grpc_max_threads=2,
        model_max_concurrent_requests=1,
        model_max_queued_requests=3,
    ) as server:
        server.serve(slow, "slow", input_signature=X)
        server.serve(lambda x: x * 2, "fast", input_signature=X)
        try:
            yield server, release
        finally:
            release.set()


def _rest(server: Server, model: str, x: float) -> requests.Response:
    return requests.post(f"{server.rest_url}/v1/models/{model}:predict", json={"inputs": [x]}, timeout=WAIT)


def _grpc(server: Server, model: str, x: float) -> list[float]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([x], tf.float32))
    with grpc.insecure_channel(server.grpc_address) as channel:
        response = tfs_grpc.PredictionServiceStub(channel).Predict(request, timeout=WAIT)
    return tf.make_ndarray(response.outputs["output_0"]).tolist()


def test_saturated_slow_model_leaves_workers_to_a_fast_one(isolated: tuple[Server, threading.Event]) -> None:
    server, release = isolated
    gate = server.dataplane.isolation.gate("slow")
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        slow = [pool.submit(_rest, server, "slow", 1.0) for _ in range(3)]
        slow.append(pool.submit(_grpc, server, "slow", 1.0))
        assert wait_for(lambda: gate.in_flight == 4, timeout=WAIT)  # 1 running, 3 queued

        refused = _rest(server, "slow", 1.0)  # the queue is full: refused at once
        assert refused.status_code == 503
        assert "model slow is overloaded: 4 requests in flight" in refused.json()["error"]
        assert "--model_max_concurrent_requests" in refused.json()["error"]
        with pytest.raises(grpc.RpcError) as refused_grpc:
            _grpc(server, "slow", 1.0)
        assert refused_grpc.value.code() == grpc.StatusCode.UNAVAILABLE

        # 2 REST and 2 gRPC workers, one of them blocked by the slow model: the fast one still answers
        # (4 clients at a time: its own gate's 1 slot + 3 queued)
        with concurrent.futures.ThreadPoolExecutor(4) as clients:
            fast = [clients.submit(_rest, server, "fast", float(i)) for i in range(6)]
            fast += [clients.submit(_grpc, server, "fast", float(i)) for i in range(6)]
            answers = [f.result(timeout=WAIT) for f in fast]
        assert not any(f.done() for f in slow) and gate.in_flight == 4
        assert [a.json() for a in answers[:6]] == [{"outputs": [2.0 * i]} for i in range(6)]
        assert answers[6:] == [[2.0 * i] for i in range(6)]

        release.set()
        assert [f.result(timeout=WAIT) for f in slow][-1] == [1.0]
        assert all(f.result().status_code == 200 for f in slow[:3])
    assert gate.in_flight == 0
