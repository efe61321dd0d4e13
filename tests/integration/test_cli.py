"""The ``nbserve`` command: tensorflow_model_server's flags, serving, clean shutdown on signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from nbserve.cli import parse_options
from nbserve.ports import free_port, port_is_free


def test_flags_follow_tensorflow_model_server():
    defaults = parse_options([])
    assert (defaults.port, defaults.rest_api_port, defaults.host) == (8500, 8501, "127.0.0.1")
    assert defaults.model_name == "default" and defaults.file_system_poll_wait_seconds == 1
    assert defaults.rest_api_timeout_in_ms == 30000
    options = parse_options(
        [
            "--port=9000",
            "--rest_api_port=0",
            "--model_name=m",
            "--model_base_path",
            "/models/m",
            "--allow_version_labels_for_unavailable_models",
            "--file_system_poll_wait_seconds=5",
            "--model_config_file_poll_wait_seconds=3",
            "--some_unknown_flag=1",
        ]
    )
    assert options.port == 9000 and options.rest_api_port is None
    assert (options.model_name, options.model_base_path) == ("m", "/models/m")
    assert options.allow_version_labels_for_unavailable_models is True
    assert options.file_system_poll_wait_seconds == 5 and options.model_config_file_poll_wait_seconds == 3


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_serves_and_stops_cleanly(models, signum):
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nbserve",
            f"--port={grpc_port}",
            f"--rest_api_port={rest_port}",
            "--model_name=hpt",
            f"--model_base_path={models.half_plus_two}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    try:
        url = f"http://127.0.0.1:{rest_port}/v1/models/hpt:predict"
        deadline = time.monotonic() + 90
        answer = None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                answer = requests.post(url, json={"instances": [[1.0]]}, timeout=5)
                break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert answer is not None, (
            process.stderr.read() if process.poll() is not None else "server never answered"
        )
        assert answer.json() == {"predictions": [[3.0]]}  # latest version, 124: 2x + 1
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert port_is_free(rest_port) and port_is_free(grpc_port)


def test_cli_refuses_relative_base_path():
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "nbserve",
            f"--port={free_port()}",
            "--rest_api_port=0",
            "--model_base_path=rel/dir",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode != 0
    assert "absolute path" in run.stderr
