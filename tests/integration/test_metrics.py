"""--monitoring_config_file: TF Serving's Prometheus page on the REST port, counting REST and gRPC
Predict / Classify / Regress (errors included) under TF's names and labels, plus the batching figures."""

from __future__ import annotations

import re
from collections.abc import Iterator

import grpc
import pytest
import requests
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, get_model_status_pb2, predict_pb2, regression_pb2
from tensorflow_serving.apis import model_service_pb2_grpc as model_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc

from nbserve.errors import InvalidArgument
from nbserve.metrics import DEFAULT_PATH, read_monitoring_config
from nbserve.server.runtime import Server

PATH = "/monitoring/metrics"
_SAMPLE = re.compile(r"^(?P<name>[^{ ]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


def page_samples(text: str) -> dict[tuple[str, frozenset], float]:
    """{(name, labels): value} of a Prometheus text page."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match, line
        labels = frozenset(re.findall(r'(\w+)="([^"]*)"', match["labels"] or ""))
        samples[match["name"], labels] = float(match["value"])
    return samples


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((f":tensorflow:serving:{name}", frozenset(labels.items())), 0.0)


@pytest.fixture(scope="module")
def monitored(models, tmp_path_factory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("monitoring")
    monitoring = root / "monitoring.pbtxt"
    monitoring.write_text(f'prometheus_config {{ enable: true path: "{PATH}" }}')
    params = root / "batching.pbtxt"
    params.write_text(
        "max_batch_size { value: 8 } allowed_batch_sizes: [4, 8] num_batch_threads { value: 1 }"
    )
    with Server(
        model_config_file=models.config_file,
        port=0,
        rest_api_port=0,
        allow_version_labels_for_unavailable_models=True,
        monitoring_config_file=str(monitoring),
        enable_batching=True,
        batching_parameters_file=str(params),
    ) as running:
        yield running


def known_requests(server: Server) -> None:
    """REST: 2 predict, 1 regress, 1 metadata, 1 bad predict, 1 unknown model. gRPC: 3 Predict,
    1 Classify, 1 Regress, 1 unknown model, 1 GetModelStatus (not counted, as in TF)."""
    v1 = f"{server.rest_url}/v1/models"
    for x in (1.0, 2.0):
        assert requests.post(f"{v1}/half_plus_two:predict", json={"instances": [[x]]}).status_code == 200
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 1.0}]}
    assert requests.post(f"{v1}/half_plus_two:regress", json=body).status_code == 200
    assert requests.get(f"{v1}/half_plus_two/metadata").status_code == 200
    assert requests.post(f"{v1}/half_plus_two:predict", json={"instances": "bad"}).status_code == 400
    assert requests.post(f"{v1}/nope:predict", json={"instances": [[1.0]]}).status_code == 404

    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = tfs_grpc.PredictionServiceStub(channel)
        predict = predict_pb2.PredictRequest()
        predict.model_spec.name = "half_plus_two"
        predict.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [2.0], [3.0]], dtype=tf.float32))
        for _ in range(3):
            stub.Predict(predict, timeout=30)
        example = tf.train.Example(
            features=tf.train.Features(
                feature={"x": tf.train.Feature(float_list=tf.train.FloatList(value=[1.0]))}
            )
        )
        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name, classify.model_spec.signature_name = "half_plus_two", "classify_x_to_y"
        classify.input.example_list.examples.add().CopyFrom(example)
        stub.Classify(classify, timeout=30)
        regress = regression_pb2.RegressionRequest()
        regress.model_spec.name, regress.model_spec.signature_name = "half_plus_two", "regress_x_to_y"
        regress.input.example_list.examples.add().CopyFrom(example)
        stub.Regress(regress, timeout=30)
        predict.model_spec.name = "nope"
        with pytest.raises(grpc.RpcError):
            stub.Predict(predict, timeout=30)
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "half_plus_two"
        model_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)


def test_page_counts_rest_and_grpc_requests(monitored: Server) -> None:
    known_requests(monitored)
    answer = requests.get(monitored.rest_url + PATH)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    text = answer.text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert "# TYPE :tensorflow:serving:request_latency histogram" in text
    assert "# HELP" not in text and "_created" not in text and "_total" not in text
    got = page_samples(text)

    assert sample(got, "request_count", model_name="half_plus_two", status="OK") == 9
    assert sample(got, "request_count", model_name="half_plus_two", status="INVALID_ARGUMENT") == 1
    assert sample(got, "request_count", model_name="nope", status="NOT_FOUND") == 2

    latency = "request_latency_count"
    assert sample(got, latency, model_name="half_plus_two", API="predict", entrypoint="REST") == 2
    assert sample(got, latency, model_name="half_plus_two", API="regress", entrypoint="REST") == 1
    assert sample(got, latency, model_name="half_plus_two", API="", entrypoint="REST") == 1
    assert sample(got, latency, model_name="half_plus_two", API="Predict", entrypoint="GRPC") == 3
    assert sample(got, latency, model_name="half_plus_two", API="Classify", entrypoint="GRPC") == 1
    assert sample(got, latency, model_name="half_plus_two", API="Regress", entrypoint="GRPC") == 1
    assert sample(got, latency, model_name="nope", API="Predict", entrypoint="GRPC") == 0  # successes only
    buckets = [v for (name, _), v in got.items() if name == ":tensorflow:serving:request_latency_bucket"]
    assert len(buckets) == 6 * 34  # 33 buckets + Inf per label set

    runtime = "runtime_latency_count"
    assert sample(got, runtime, model_name="half_plus_two", API="Predict", runtime="TF1") == 5
    assert sample(got, runtime, model_name="half_plus_two", API="Classify", runtime="TF1") == 1
    assert sample(got, runtime, model_name="half_plus_two", API="Regress", runtime="TF1") == 2

    # 8 batched runs: 2 one-row and 3 three-row Predicts, 1 Classify, 2 Regress, each alone in its batch
    assert sample(got, "batching_session:wrapped_run_count") == 8
    assert sample(got, "batching_session:queuing_latency_count", thread_pool_name="batch_threads") == 8
    assert sample(got, "batching_session:input_batch_size_sum") == 2 + 9 + 1 + 2
    assert sample(got, "batching_session:processed_batch_size_sum") == 8 * 4
    assert sample(got, "batching_session:padding_size_sum") == 8 * 4 - 14


def test_page_path_is_exact(monitored: Server) -> None:
    answer = requests.get(f"{monitored.rest_url}{PATH}?x=1")
    assert answer.status_code == 400
    assert answer.text == f"Unexpected path: {PATH}?x=1. Should be {PATH}"
    assert requests.get(monitored.rest_url + DEFAULT_PATH).status_code == 404


def test_monitoring_config(tmp_path) -> None:
    config = tmp_path / "monitoring.pbtxt"
    config.write_text("prometheus_config { enable: true }")
    assert read_monitoring_config(str(config)) == DEFAULT_PATH
    config.write_text('prometheus_config { enable: false path: "/m" }')
    assert read_monitoring_config(str(config)) is None
    config.write_text('prometheus_config { enable: true path: "m" }')
    with pytest.raises(InvalidArgument, match='must be a URL path starting with "/"'):
        read_monitoring_config(str(config))
    config.write_text("prometheus_config { enabled: true }")
    with pytest.raises(InvalidArgument, match="Invalid MonitoringConfig text in .*enabled"):
        read_monitoring_config(str(config))
    with pytest.raises(InvalidArgument, match="Cannot read --monitoring_config_file"):
        read_monitoring_config(str(tmp_path / "missing.pbtxt"))
