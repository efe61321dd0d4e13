"""External clients against a real server: official tensorflow-serving-api stubs in another process,
and REST with ``requests``; answers must equal the direct in-process call of the same SavedModel."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from nbserve.demo import digits_images

HERE = os.path.dirname(__file__)


def _jpeg(image: np.ndarray) -> bytes:
    pixels = (np.clip(image[..., 0], 0, 1) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).resize((32, 32), Image.NEAREST).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def jpegs() -> list[bytes]:
    images, _ = digits_images(6)
    return [_jpeg(image) for image in images]


def _direct(path: str, signature: str, **inputs: object) -> dict[str, np.ndarray]:
    loaded = tf.saved_model.load(path)
    outputs = loaded.signatures[signature](**{k: tf.constant(v) for k, v in inputs.items()})
    return {k: v.numpy() for k, v in outputs.items()}


def _saved_signatures(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as handle:
        saved.ParseFromString(handle.read())
    return dict(saved.meta_graphs[0].signature_def)


def test_official_grpc_stubs_from_another_process(server, models, jpegs, tmp_path):
    paths = []
    for index, data in enumerate(jpegs):
        path = tmp_path / f"digit{index}.jpg"
        path.write_bytes(data)
        paths += ["--image", str(path)]
    run = subprocess.run(
        [sys.executable, os.path.join(HERE, "tfs_client.py"), "--server", server.grpc_address, *paths],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    answer = json.loads(run.stdout)

    expected = _direct(os.path.join(models.half_plus_two, "123"), "serving_default", x=[[1.0], [2.0], [5.0]])
    np.testing.assert_allclose(answer["predict"]["y"], expected["y"], rtol=1e-6)
    assert answer["predict"]["model_spec"] == {
        "name": "half_plus_two",
        "version": "123",
        "signatureName": "serving_default",
    }

    direct_scores = _direct(os.path.join(models.digits, "1"), "predict_images", images=jpegs)["scores"]
    np.testing.assert_allclose(answer["image_scores"], direct_scores, rtol=1e-5, atol=1e-6)

    metadata = answer["metadata"]
    assert metadata["model_spec"] == {"name": "half_plus_two", "version": "124"}
    assert metadata["type_url"] == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    on_disk = _saved_signatures(os.path.join(models.half_plus_two, "124"))
    served = {}
    for name, hex_bytes in metadata["signature_def"].items():
        served[name] = meta_graph_pb2.SignatureDef()
        served[name].ParseFromString(bytes.fromhex(hex_bytes))
    assert served == on_disk

    assert answer["status"] == {
        "model_version_status": [
            {"version": "124", "state": "AVAILABLE", "status": {}},
            {"version": "123", "state": "AVAILABLE", "status": {}},
        ]
    }


def test_rest_row_and_columnar_equal_direct_call(server, models):
    url = f"{server.rest_url}/v1/models/half_plus_two/versions/123:predict"
    expected = _direct(os.path.join(models.half_plus_two, "123"), "serving_default", x=[[1.0], [3.5]])["y"]

    row = requests.post(url, json={"instances": [[1.0], [3.5]]}, timeout=30)
    assert row.status_code == 200, row.text
    assert row.headers["Content-Type"] == "application/json"
    np.testing.assert_allclose(row.json()["predictions"], expected, rtol=1e-6)

    columnar = requests.post(url, json={"inputs": {"x": [[1.0], [3.5]]}}, timeout=30)
    assert columnar.status_code == 200, columnar.text
    np.testing.assert_allclose(columnar.json()["outputs"], expected, rtol=1e-6)


def test_rest_multiple_inputs_and_outputs(server):
    url = f"{server.rest_url}/v1/models/half_plus_two:predict"
    body = {"signature_name": "two_inputs", "instances": [{"a": 1.5, "b": 2}, {"a": -1.0, "b": 7}]}
    answer = requests.post(url, json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": [{"sum": 3.5, "b_twice": 4}, {"sum": 6.0, "b_twice": 14}]}
    assert answer.headers["X-Nbserve-Model-Version"] == "124"


def test_rest_b64_jpeg_to_predict_images(server, models, jpegs):
    body = {
        "signature_name": "predict_images",
        "instances": [{"b64": base64.b64encode(data).decode()} for data in jpegs],
    }
    answer = requests.post(f"{server.rest_url}/v1/models/digits:predict", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    direct = _direct(os.path.join(models.digits, "1"), "predict_images", images=jpegs)["scores"]
    np.testing.assert_allclose(answer.json()["predictions"], direct, rtol=1e-5, atol=1e-6)


def test_rest_status_and_metadata(server, models):
    status = requests.get(f"{server.rest_url}/v1/models/half_plus_two", timeout=30)
    assert status.status_code == 200
    assert status.json() == {
        "model_version_status": [
            {"version": "124", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
            {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        ]
    }
    one = requests.get(f"{server.rest_url}/v1/models/half_plus_two/versions/123", timeout=30).json()
    assert [entry["version"] for entry in one["model_version_status"]] == ["123"]

    metadata = requests.get(f"{server.rest_url}/v1/models/half_plus_two/labels/stable/metadata", timeout=30)
    assert metadata.status_code == 200
    doc = metadata.json()
    assert doc["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    signatures = doc["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) == set(_saved_signatures(os.path.join(models.half_plus_two, "123")))
    assert signatures["serving_default"]["inputs"]["x"] == {
        "dtype": "DT_FLOAT",
        "tensor_shape": {
            "dim": [{"size": "-1", "name": ""}, {"size": "1", "name": ""}],
            "unknown_rank": False,
        },
        "name": "serving_default_x:0",
    }
    assert signatures["serving_default"]["method_name"] == "tensorflow/serving/predict"


def test_rest_classify_and_regress(server):
    examples = {"examples": [{"x": 1.0}, {"x": 4.0}], "signature_name": "regress_x_to_y"}
    regressed = requests.post(
        f"{server.rest_url}/v1/models/half_plus_two/versions/123:regress", json=examples
    )
    assert regressed.status_code == 200, regressed.text
    assert regressed.json() == {"results": [2.5, 4.0]}

    examples["signature_name"] = "classify_x_to_y"
    classified = requests.post(
        f"{server.rest_url}/v1/models/half_plus_two/versions/123:classify", json=examples
    )
    assert classified.status_code == 200, classified.text
    assert classified.json() == {"results": [[["y", 2.5]], [["y", 4.0]]]}
