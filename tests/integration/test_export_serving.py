"""Exports of every kind of model, served by a real server: REST ``{"b64": ...}`` and gRPC string
tensors (official tensorflow-serving-api stubs) must answer what the in-kernel model answers on the
decoded image; a new export is picked up by the polling server by itself."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import keras
import numpy as np
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import nbserve
from nbserve.preprocessing import PIXEL_SCALE

# Keras' legacy .h5 writer trips over numpy 2's __array__ copy keyword; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@dataclass
class Case:
    export: Callable[[str], nbserve.ExportResult]  # base path -> result
    reference: Callable[[np.ndarray], np.ndarray]  # float images [n, h, w, c] -> output
    geometry: tuple[int, int, int]
    output: str
    tensor_input: Callable[[np.ndarray], np.ndarray] = lambda images: images


def _sequential() -> keras.Model:
    keras.utils.set_random_seed(2)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="images"),
            keras.layers.Flatten(),
            keras.layers.Dense(4, activation="softmax", name="scores"),
        ]
    )


def _functional() -> keras.Model:
    photo = keras.Input((6, 6, 3), name="photo")
    x = keras.layers.Conv2D(2, 3, activation="relu")(photo)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(photo, keras.layers.Dense(3, name="logits")(x))


class Linear(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(tf.random.stateless_normal([64, 3], seed=[3, 4]))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="images")])
    def __call__(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": tf.matmul(tf.reshape(images, [-1, 64]), self.w)}


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, Case]:
    files = tmp_path_factory.mktemp("files")
    seq, functional, module = _sequential(), _functional(), Linear()
    bias = tf.Variable([0.5, -0.5])

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8], tf.float32)])
    def rank3(pixels: tf.Tensor) -> tf.Tensor:  # MNIST-style images without a channel axis
        return tf.reduce_mean(pixels, axis=[1, 2])[:, None] * [1.0, 2.0] + bias

    seq.save(files / "seq.keras")
    seq.save(files / "seq.h5")
    prefix = tf.train.Checkpoint(model=functional).save(str(files / "ckpt" / "ckpt"))

    def rebuild() -> keras.Model:
        keras.utils.set_random_seed(99)  # other initial weights: only the restore makes them equal
        return _functional()

    def exporter(model: Any, **kwargs: Any) -> Callable[[str], nbserve.ExportResult]:
        return lambda base: nbserve.export(model, base, signatures="both", **kwargs)

    def keras_ref(model: keras.Model) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: model(x).numpy()

    gray, rgb = (8, 8, 1), (6, 6, 3)
    return {
        "sequential": Case(exporter(seq), keras_ref(seq), gray, "scores"),
        "functional": Case(exporter(functional), keras_ref(functional), rgb, "logits"),
        "module": Case(exporter(module), lambda x: module(x)["y"].numpy(), gray, "y"),
        "function": Case(
            exporter(rank3, input_name="pixels"),
            lambda x: rank3(x[..., 0]).numpy(),
            gray,
            "output_0",
            lambda x: x[..., 0],
        ),
        "keras_file": Case(exporter(str(files / "seq.keras")), keras_ref(seq), gray, "scores"),
        "h5_file": Case(exporter(str(files / "seq.h5")), keras_ref(seq), gray, "scores"),
        "checkpoint": Case(exporter(prefix, build_fn=rebuild), keras_ref(functional), rgb, "logits"),
    }


@pytest.fixture(scope="module")
def server(cases, tmp_path_factory) -> Iterator[nbserve.Server]:
    root = tmp_path_factory.mktemp("exports")
    with nbserve.Server(port=0, rest_api_port=0, file_system_poll_wait_seconds=0.1) as running:
        for name, case in cases.items():
            result = case.export(str(root / name))
            assert result.version == 1 and list(result.signatures) == ["serving_default", "predict_images"]
            running.load(name, result.base_path)
        yield running


@pytest.fixture(scope="module")
def stub(server) -> Iterator[prediction_service_pb2_grpc.PredictionServiceStub]:
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _pngs(geometry: tuple[int, int, int], n: int = 3) -> list[bytes]:
    pixels = np.random.default_rng(7).integers(0, 256, (n, *geometry), dtype=np.uint8)
    return [tf.io.encode_png(p).numpy() for p in pixels]


def _decoded(pngs: list[bytes], channels: int) -> np.ndarray:
    """What the served graph computes before the model: decode, scale to [0, 1]."""
    pixels = np.stack([tf.io.decode_png(p, channels=channels).numpy() for p in pngs])
    return pixels.astype(np.float32) * np.float32(PIXEL_SCALE)


def _grpc_predict(stub, name: str, signature: str, alias: str, value: Any, dtype: tf.DType) -> dict:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(tf.make_tensor_proto(value, dtype=dtype))
    response = stub.Predict(request, timeout=30)
    return {k: tf.make_ndarray(v) for k, v in response.outputs.items()}


@pytest.mark.parametrize(
    "name", ["sequential", "functional", "module", "function", "keras_file", "h5_file", "checkpoint"]
)
def test_image_bytes_over_rest_and_grpc_equal_the_kernel_model(server, stub, cases, name):
    case = cases[name]
    pngs = _pngs(case.geometry)
    expected = case.reference(_decoded(pngs, case.geometry[2]))
    alias = "pixels" if name == "function" else ("photo" if case.geometry[2] == 3 else "images")

    body = {
        "signature_name": "predict_images",
        "instances": [{"b64": base64.b64encode(p).decode()} for p in pngs],
    }
    answer = requests.post(f"{server.rest_url}/v1/models/{name}:predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(np.array(answer.json()["predictions"]), expected, rtol=1e-5, atol=1e-6)

    by_grpc = _grpc_predict(stub, name, "predict_images", alias, pngs, tf.string)
    assert list(by_grpc) == [case.output]
    np.testing.assert_allclose(by_grpc[case.output], expected, rtol=1e-5, atol=1e-6)

    tensor = case.tensor_input(_decoded(pngs, case.geometry[2]))
    by_tensor = _grpc_predict(stub, name, "serving_default", alias, tensor, tf.float32)
    np.testing.assert_allclose(by_tensor[case.output], expected, rtol=1e-5, atol=1e-6)


def test_a_new_export_is_picked_up_by_the_running_server(server, cases):
    base = next(m.base_path for m in server.models() if m.name == "sequential")
    assert nbserve.next_version(base) == 2
    result = cases["sequential"].export(base)
    assert result.version == 2
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        [summary] = [m for m in server.models() if m.name == "sequential"]
        states = {v.version: v.state for v in summary.versions}
        if states.get(2) == "AVAILABLE" and states.get(1) == "END":
            break
        time.sleep(0.05)
    assert states == {2: "AVAILABLE", 1: "END"}
    answer = requests.post(
        f"{server.rest_url}/v1/models/sequential:predict", json={"instances": [[[[0.0]] * 8] * 8]}, timeout=30
    )
    assert answer.status_code == 200 and answer.headers["X-Nbserve-Model-Version"] == "2"
