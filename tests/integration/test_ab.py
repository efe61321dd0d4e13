"""A/B experiments on a real server with real REST and gRPC clients: the observed split, sticky keys,
shadow comparison, feedback through the request id, promote / rollback under load."""

from __future__ import annotations

import concurrent.futures
import time
from collections import Counter
from collections.abc import Iterator

import grpc
import pytest
import requests
import tensorflow as tf
from models import write_half_plus_two
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc
from traffic import Traffic, wait_for

from nbserve.experiments import EXPERIMENTAL, PRODUCTION
from nbserve.server.runtime import Server

NAME = "ab"
ANSWER = {"123": 3.0, "124": 5.0}  # x = 2: 0.5x + 2 and 2x + 1


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = str(tmp_path_factory.mktemp("ab") / NAME)
    write_half_plus_two(base, 123)
    write_half_plus_two(base, 124, a=2.0, b=1.0)
    config = f"""model_config_list {{ config {{ name: "{NAME}" base_path: "{base}"
      model_platform: "tensorflow" model_version_policy {{ all {{}} }}
      version_labels {{ key: "stable" value: 123 }} version_labels {{ key: "canary" value: 124 }} }} }}"""
    with Server(port=0, rest_api_port=0, allow_version_labels_for_unavailable_models=True) as running:
        running.reload_config(config)
        both = {(123, "AVAILABLE"), (124, "AVAILABLE")}
        assert wait_for(lambda: {(s.version, s.state.name) for s in running.manager.status(NAME)} == both, 60)
        yield running


@pytest.fixture(autouse=True)
def no_experiment(server: Server) -> Iterator[None]:
    yield
    server.end_experiment(NAME)


def rest_versions(server: Server, count: int, keys: list[str] | None = None) -> list[tuple[str, str]]:
    """(key, version) of ``count`` REST predictions from 4 client threads; checks every answer."""
    url = f"{server.rest_url}/v1/models/{NAME}:predict"

    def client(part: int) -> list[tuple[str, str]]:
        seen = []
        with requests.Session() as session:
            for i in range(part, count, 4):
                key = keys[i % len(keys)] if keys else ""
                answer = session.post(
                    url, json={"instances": [[2.0]]}, headers={"X-Nbserve-Key": key} if key else {}
                )
                version = answer.headers["X-Nbserve-Model-Version"]
                assert answer.json() == {"predictions": [[ANSWER[version]]]}
                assert answer.headers["X-Nbserve-Request-Id"]
                seen.append((key, version))
        return seen

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        return [pair for part in pool.map(client, range(4)) for pair in part]


def test_split_over_5000_external_requests(server: Server) -> None:
    experiment = server.experiment(NAME, production=123, experimental=124, split=10)
    versions = Counter(version for _, version in rest_versions(server, 5000))
    share = versions["124"] / 5000 * 100
    assert abs(share - 10) <= 3, versions
    stats = experiment.snapshot()["stats"]
    assert stats[EXPERIMENTAL]["count"] == versions["124"] and stats[PRODUCTION]["errors"] == 0


def test_sticky_keys_rest_and_grpc(server: Server) -> None:
    server.experiment(NAME, production="stable", experimental="canary", split=50)
    keys = [f"user-{i}" for i in range(100)]
    by_key: dict[str, set[str]] = {}
    for key, version in rest_versions(server, 400, keys):
        by_key.setdefault(key, set()).add(version)
    assert all(len(v) == 1 for v in by_key.values()) and len(by_key) == 100
    assert {next(iter(v)) for v in by_key.values()} == {"123", "124"}
    request = predict_pb2.PredictRequest()
    request.model_spec.name = NAME
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0]], dtype=tf.float32))
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = tfs_grpc.PredictionServiceStub(channel)
        for key in keys[:20]:
            answer, call = stub.Predict.with_call(request, metadata=(("x-nbserve-key", key),), timeout=30)
            assert {str(answer.model_spec.version.value)} == by_key[key]
            assert dict(call.initial_metadata())["x-nbserve-request-id"]


def test_shadow_keeps_answers_and_finds_the_difference(server: Server) -> None:
    experiment = server.experiment(NAME, production=123, experimental=124, mode="shadow", shadow=100)
    assert {version for _, version in rest_versions(server, 200)} == {"123"}  # answers checked inside
    assert experiment.wait_shadow()
    shadow = experiment.snapshot()["shadow_stats"]
    assert shadow["pairs"] + shadow["dropped"] == 200 and shadow["pairs"] > 0
    assert shadow["mean_abs_diff"] == pytest.approx(2.0)  # |3 - 5|
    worst = experiment.snapshot()["disagreements"][0]
    assert worst.input.tolist() == [2.0] and worst.experimental.tolist() == [5.0]


def test_feedback_through_the_request_id(server: Server) -> None:
    experiment = server.experiment(NAME, production=123, experimental=124, split=0)
    answer = requests.post(
        f"{server.rest_url}/v1/models/{NAME}:predict", json={"instances": [[2.0]]}, timeout=30
    )
    assert experiment.feedback(answer.headers["X-Nbserve-Request-Id"], [3.0])
    assert experiment.snapshot()["stats"][PRODUCTION]["accuracy"] == 1.0


def test_promote_and_rollback_under_load(server: Server) -> None:
    experiment = server.experiment(NAME, production="stable", experimental="canary", split=0)
    with Traffic(server, NAME, clients=2) as traffic:
        time.sleep(0.5)
        assert experiment.promote()[PRODUCTION] == 124
        time.sleep(0.5)
        assert experiment.rollback()[PRODUCTION] == 123
        time.sleep(0.3)
    assert traffic.failures == [] and traffic.versions == {"123", "124"} and traffic.count > 50
    assert server.manager.labels(NAME) == {"stable": 123, "canary": 124}
