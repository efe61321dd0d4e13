"""Live traffic against a test server, and waiting for the server to reach a state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import grpc
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc

from nbserve.server.runtime import Server


def wait_for(condition: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Poll ``condition`` until it is truthy or ``timeout`` s passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()


def states(server: Server, name: str) -> dict[str, str]:
    """Version -> state of a model, from REST GetModelStatus."""
    doc = requests.get(f"{server.rest_url}/v1/models/{name}", timeout=30).json()
    return {entry["version"]: entry["state"] for entry in doc["model_version_status"]}


class Traffic:
    """Clients sending REST and gRPC predictions (x = 2) the whole time; records every failure and
    the versions that answered. ``clients`` threads per protocol."""

    def __init__(self, server: Server, name: str, clients: int = 1) -> None:
        self.server, self.name = server, name
        self.failures: list[str] = []
        self.versions: set[str] = set()
        self.count = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=target) for _ in range(clients) for target in (self._rest, self._grpc)
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _record(self, failure: str | None = None, version: str | None = None) -> None:
        with self._lock:
            self.count += 1
            if failure is not None:
                self.failures.append(failure)
            if version is not None:
                self.versions.add(version)

    def _rest(self) -> None:
        with requests.Session() as session:
            while not self._stop.is_set():
                answer = session.post(
                    f"{self.server.rest_url}/v1/models/{self.name}:predict",
                    json={"instances": [[2.0]]},
                    timeout=30,
                )
                if answer.status_code != 200:
                    self._record(failure=answer.text)
                else:
                    self._record(version=answer.headers["X-Nbserve-Model-Version"])

    def _grpc(self) -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.name
        request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0]], dtype=tf.float32))
        with grpc.insecure_channel(self.server.grpc_address) as channel:
            stub = tfs_grpc.PredictionServiceStub(channel)
            while not self._stop.is_set():
                try:
                    answer = stub.Predict(request, timeout=30)
                    self._record(version=str(answer.model_spec.version.value))
                except grpc.RpcError as error:
                    self._record(failure=error.details())
