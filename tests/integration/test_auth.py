"""An explicit token on a loopback server: REST (header or ?token=) and gRPC metadata are checked,
management calls too; model names in URLs are never paths; config names are validated."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
import requests
from tensorflow_serving.apis import get_model_metadata_pb2, model_management_pb2, model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc as tfs_grpc

from nbserve.errors import InvalidArgument
from nbserve.server.runtime import Server

TOKEN = "s3cret-token"
BEARER = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture(scope="module")
def guarded(models) -> Iterator[Server]:
    with Server(models.half_plus_two, "hpt", port=0, rest_api_port=0, auth_token=TOKEN) as server:
        yield server


def _metadata_request() -> get_model_metadata_pb2.GetModelMetadataRequest:
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "hpt"
    return request


def test_rest_needs_the_token(guarded: Server) -> None:
    url = f"{guarded.rest_url}/v1/models/hpt"
    for answer in (
        requests.get(url, timeout=30),
        requests.get(url, headers={"Authorization": "Bearer wrong"}, timeout=30),
        requests.post(f"{url}:predict", json={"instances": [[1.0]]}, timeout=30),
    ):
        assert answer.status_code == 401
        message = answer.json()["error"]
        assert "Authorization: Bearer <token>" in message and "?token=" in message
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30).status_code == 200
    assert requests.get(f"{url}?token={TOKEN}", timeout=30).status_code == 200
    predicted = requests.post(f"{url}:predict?token={TOKEN}", json={"instances": [[1.0]]}, timeout=30)
    assert predicted.json() == {"predictions": [[3.0]]}
    # only the token leaves the query: the rest still takes part in TF's path match
    answer = requests.get(f"{url}?token={TOKEN}&x=1", timeout=30)
    assert answer.status_code == 404 and "hpt?x=1" in answer.json()["error"]


def test_grpc_needs_the_token(guarded: Server) -> None:
    with grpc.insecure_channel(guarded.grpc_address) as channel:
        stub = tfs_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.GetModelMetadata(_metadata_request(), timeout=30)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "('authorization', 'Bearer <token>')" in error.value.details()
        response = stub.GetModelMetadata(_metadata_request(), metadata=BEARER, timeout=30)
        assert response.model_spec.name == "hpt"


def test_management_needs_the_token_and_valid_names(guarded: Server) -> None:
    request = model_management_pb2.ReloadConfigRequest()
    config = request.config.model_config_list.config.add()
    config.name, config.base_path, config.model_platform = "../../etc", "/tmp", "tensorflow"
    with grpc.insecure_channel(guarded.grpc_address) as channel:
        stub = model_service_pb2_grpc.ModelServiceStub(channel)
        with pytest.raises(grpc.RpcError) as error:
            stub.HandleReloadConfigRequest(request, timeout=30)
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as error:
            stub.HandleReloadConfigRequest(request, metadata=BEARER, timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Invalid model name '../../etc'" in error.value.details()
    assert [m.name for m in guarded.models()] == ["hpt"]  # the old config is kept
    with pytest.raises(InvalidArgument, match="must not contain"):
        guarded.load("a/b", "/tmp")


def test_model_names_in_urls_are_not_paths(guarded: Server) -> None:
    for name in ("..%2F..%2Fetc", "%2E%2E", "%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "hpt%00"):
        answer = requests.get(f"{guarded.rest_url}/v1/models/{name}?token={TOKEN}", timeout=30)
        assert answer.status_code == 404, (name, answer.text)


def test_metrics_page_needs_the_token(models, tmp_path) -> None:
    config = tmp_path / "monitoring.config"
    config.write_text('prometheus_config { enable: true path: "/metrics" }')
    with Server(
        models.half_plus_two,
        "hpt",
        port=None,
        rest_api_port=0,
        auth_token=TOKEN,
        monitoring_config_file=str(config),
    ) as server:
        refused = requests.get(f"{server.rest_url}/metrics", timeout=30)
        assert refused.status_code == 401 and "token" in refused.json()["error"]
        by_header = requests.get(f"{server.rest_url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        by_query = requests.get(f"{server.rest_url}/metrics?token={TOKEN}", timeout=30)
        for answer in (by_header, by_query):
            assert answer.status_code == 200
            assert ":tensorflow:serving:request_count" in answer.text
        assert requests.get(f"{server.rest_url}/metrics?token={TOKEN}&x=1", timeout=30).status_code == 400
