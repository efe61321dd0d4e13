"""Versions on disk, hot swap under traffic, failed loads, labels and config reloads on a real server."""

from __future__ import annotations

import os
import shutil
import time

import grpc
import pytest
import requests
from models import write_half_plus_two
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc
from traffic import Traffic, states, wait_for

from nbserve.errors import FailedPrecondition
from nbserve.server.runtime import Server


@pytest.fixture
def base_path(tmp_path) -> str:
    path = str(tmp_path / "hpt")
    os.makedirs(path)
    write_half_plus_two(path, 1)
    return path


def test_new_version_swaps_in_under_traffic(base_path):
    with Server(base_path, "hpt", port=0, rest_api_port=0, file_system_poll_wait_seconds=1) as server:
        assert states(server, "hpt") == {"1": "AVAILABLE"}
        staging = os.path.join(os.path.dirname(base_path), "staging")
        os.makedirs(staging)
        write_half_plus_two(staging, 2, a=3.0, b=0.0)
        with Traffic(server, "hpt") as traffic:
            time.sleep(0.5)
            os.rename(os.path.join(staging, "2"), os.path.join(base_path, "2"))
            dropped = time.monotonic()
            swapped = wait_for(lambda: states(server, "hpt") == {"2": "AVAILABLE", "1": "END"}, timeout=10)
            elapsed = time.monotonic() - dropped
            time.sleep(0.5)
        assert swapped, states(server, "hpt")
        assert elapsed < 3 * 1.0 + 0.5, elapsed
        assert traffic.failures == []
        assert traffic.versions == {"1", "2"}
        assert traffic.count > 20
        answer = requests.post(f"{server.rest_url}/v1/models/hpt:predict", json={"instances": [[2.0]]})
        assert answer.json() == {"predictions": [[6.0]]}

        shutil.rmtree(os.path.join(base_path, "1"))
        write_half_plus_two(staging, 1)
        # policy latest{1}: an older version appearing is not aspired; removing 2 brings 1 back
        shutil.rmtree(os.path.join(base_path, "2"))
        os.rename(os.path.join(staging, "1"), os.path.join(base_path, "1"))
        assert wait_for(lambda: states(server, "hpt").get("1") == "AVAILABLE", timeout=10)
        assert wait_for(lambda: states(server, "hpt").get("2") == "END", timeout=10)


def test_corrupt_version_reports_error_and_old_keeps_serving(base_path):
    with Server(base_path, "hpt", port=0, rest_api_port=0, file_system_poll_wait_seconds=0.2) as server:
        broken = os.path.join(base_path, ".tmp-5")
        os.makedirs(broken)
        with open(os.path.join(broken, "saved_model.pb"), "wb") as handle:
            handle.write(b"this is not a protobuf")
        os.rename(broken, os.path.join(base_path, "5"))
        status = wait_for(
            lambda: next(
                (
                    e
                    for e in requests.get(f"{server.rest_url}/v1/models/hpt/versions/5")
                    .json()
                    .get("model_version_status", [])
                    if e["state"] == "END"
                ),
                None,
            ),
            timeout=10,
        )
        assert status is not None
        assert status["status"]["error_code"] != "OK"
        assert "saved_model.pb" in status["status"]["error_message"]
        answer = requests.post(f"{server.rest_url}/v1/models/hpt:predict", json={"instances": [[2.0]]})
        assert answer.status_code == 200
        assert answer.headers["X-Nbserve-Model-Version"] == "1"
        assert states(server, "hpt")["1"] == "AVAILABLE"


def _reload(server: Server, text: str) -> model_management_pb2.ReloadConfigResponse:
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    request = model_management_pb2.ReloadConfigRequest()
    text_format.Parse(text, request.config)
    assert isinstance(request.config, model_server_config_pb2.ModelServerConfig)
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(server.grpc_address))
    return stub.HandleReloadConfigRequest(request, timeout=60)


def test_labels_and_reload_config(models, tmp_path):
    config = (
        'model_config_list { config { name: "hpt" base_path: "%s" model_platform: "tensorflow" '
        "model_version_policy { specific { versions: 123 } } %s } }"
    )
    with Server(port=0, rest_api_port=0) as server:
        assert _reload(server, config % (models.half_plus_two, "")).status.error_code == 0
        assert states(server, "hpt") == {"123": "AVAILABLE"}

        with pytest.raises(grpc.RpcError) as refused:
            _reload(server, config % (models.half_plus_two, 'version_labels { key: "canary" value: 124 }'))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not currently available" in refused.value.details()
        assert states(server, "hpt") == {"123": "AVAILABLE"}

        labelled = config % (models.half_plus_two, 'version_labels { key: "stable" value: 123 }')
        assert _reload(server, labelled).status.error_code == 0
        answer = requests.post(
            f"{server.rest_url}/v1/models/hpt/labels/stable:predict", json={"instances": [[2.0]]}
        )
        assert answer.status_code == 200 and answer.headers["X-Nbserve-Model-Version"] == "123"

        # leaving a model out of the config unloads it
        other = str(tmp_path / "other")
        os.makedirs(other)
        write_half_plus_two(other, 7)
        _reload(
            server,
            'model_config_list { config { name: "other" base_path: "%s" model_platform: "tensorflow" } }'
            % other,
        )
        assert wait_for(lambda: states(server, "hpt") == {"123": "END"}, timeout=10)
        assert states(server, "other") == {"7": "AVAILABLE"}


def test_label_on_unavailable_version_allowed_with_flag(models, tmp_path):
    text = (
        'model_config_list { config { name: "hpt" base_path: "%s" model_platform: "tensorflow" '
        'model_version_policy { specific { versions: 123 } } version_labels { key: "next" value: 124 } } }'
        % models.half_plus_two
    )
    with Server(port=None, rest_api_port=0) as server:
        with pytest.raises(FailedPrecondition):
            server.reload_config(text)
    with Server(port=None, rest_api_port=0, allow_version_labels_for_unavailable_models=True) as server:
        server.reload_config(text)
        answer = requests.post(
            f"{server.rest_url}/v1/models/hpt/labels/next:predict", json={"instances": [[1.0]]}
        )
        assert answer.status_code == 404
        assert "Specific(hpt, 124)" in answer.json()["error"]
