"""nbserve.production (files and commands for TF Serving) and nbserve.notebook.binder (proxied URLs)."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from nbserve.manager.config import ModelConfig, VersionPolicy, parse_model_server_config
from nbserve.notebook.binder import on_binder, proxied_path, where
from nbserve.production import write_production_files

HUB = {"JUPYTERHUB_SERVICE_PREFIX": "/user/someone-nbserve-abc123/"}


def test_binder_detection_and_proxied_path() -> None:
    assert not on_binder({})
    assert on_binder(HUB) and on_binder({"BINDER_SERVICE_HOST": "10.0.0.1"})
    proxied = proxied_path(8501, "/v1/models/digits", HUB)
    assert proxied == "/user/someone-nbserve-abc123/proxy/8501/v1/models/digits"
    assert proxied_path(8501, "v1/models/digits", {}) == "/proxy/8501/v1/models/digits"


def test_where_shows_the_proxied_url_only_on_binder() -> None:
    class FakeServer:
        rest_port, rest_url, grpc_address = 8501, "http://127.0.0.1:8501", "127.0.0.1:8500"

    local, hub = where(FakeServer(), "digits", {}), where(FakeServer(), "digits", HUB)  # type: ignore[arg-type]
    assert local.proxied is None and "Binder" not in str(local)
    assert hub.proxied == "/user/someone-nbserve-abc123/proxy/8501/v1/models/digits"
    assert f'href="{hub.proxied}"' in hub._repr_html_()


def test_production_files(tmp_path: Path) -> None:
    base = tmp_path / "models" / "digits"
    models = [ModelConfig("digits", str(base), VersionPolicy("all"), {"stable": 2})]
    batching = tmp_path / "batching.pbtxt"
    batching.write_text("max_batch_size { value: 16 }\n")
    out = tmp_path / "out"
    files = write_production_files(out, models, batching_parameters_file=batching, rest_port=9001)

    assert parse_model_server_config(files.model_config.read_text()) == models
    (container,) = parse_model_server_config(files.container_config.read_text())
    assert container.base_path == "/models/digits" and container.version_labels == {"stable": 2}
    assert (files.directory / "batching.pbtxt").read_text() == batching.read_text()
    assert "--allow_version_labels_for_unavailable_models" in files.flags  # labels in a config need it
    assert f"--batching_parameters_file={files.directory}/batching.pbtxt" in files.flags

    docker = shlex.split(files.commands["Docker"].replace("\\\n", " "))
    assert f"--mount=type=bind,source={base},target=/models/digits,readonly" in docker
    assert "--model_config_file=/config/models.container.config" in docker
    assert "9001:9001" in docker

    config_map, deployment, service = yaml.safe_load_all(files.kubernetes.read_text())
    assert parse_model_server_config(config_map["data"]["models.container.config"]) == [container]
    pod = deployment["spec"]["template"]["spec"]
    (container_spec,) = pod["containers"]
    assert "--batching_parameters_file=/config/batching.pbtxt" in container_spec["args"]
    assert {"name": "model-0", "hostPath": {"path": str(base), "type": "Directory"}} in pod["volumes"]
    assert {p["port"] for p in service["spec"]["ports"]} == {8500, 9001}
