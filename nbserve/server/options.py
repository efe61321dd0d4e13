"""Server settings: tensorflow_model_server's flags as one dataclass, shared by the CLI and the Python API."""

from __future__ import annotations

import os
from dataclasses import dataclass

from nbserve.batching.params import BatchingParameters, read_batching_parameters
from nbserve.errors import InvalidArgument
from nbserve.manager.config import ModelConfig, VersionPolicy, parse_model_server_config
from nbserve.server.limits import (
    DEFAULT_GRPC_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_INSTANCES,
)

DEFAULT_THREADS = 4 * (os.cpu_count() or 1)


@dataclass
class ServerOptions:
    """tensorflow_model_server's flags (same names and defaults) plus ``host``.

    In the Python API a port of ``None`` disables that server and ``0`` lets the OS pick a free one;
    the CLI maps ``--rest_api_port=0`` to ``None`` as tensorflow_model_server does.
    """

    port: int | None = 8500
    rest_api_port: int | None = 8501
    host: str = "127.0.0.1"
    model_name: str = "default"
    model_base_path: str | None = None
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    rest_api_timeout_in_ms: int = 30000
    rest_api_num_threads: int = DEFAULT_THREADS
    rest_api_enable_cors_support: bool = False
    grpc_max_threads: int = DEFAULT_THREADS
    allow_version_labels_for_unavailable_models: bool = False
    enable_batching: bool = False
    batching_parameters_file: str | None = None
    enable_per_model_batching_parameters: bool = False
    monitoring_config_file: str | None = None
    # nbserve's own: isolation, limits, security (README "Security and limits")
    model_max_concurrent_requests: int = 0  # per model; 0: half the smaller worker pool
    model_max_queued_requests: int = 32  # per model, waiting for a slot; beyond: UNAVAILABLE
    rest_api_max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    grpc_max_message_bytes: int = DEFAULT_GRPC_MAX_MESSAGE_BYTES
    max_instances_per_request: int = DEFAULT_MAX_INSTANCES
    auth_token: str | None = None  # else $NBSERVE_TOKEN; generated when host is not loopback

    def model_configs(self) -> list[ModelConfig]:
        """The models to serve: the config file when given, else the single-model flags (maybe none)."""
        if self.model_config_file:
            return read_model_config_file(self.model_config_file)
        if not self.model_base_path:
            return []
        if not os.path.isabs(self.model_base_path):
            raise InvalidArgument(
                f"Expected model {self.model_name} to have an absolute path or URI; "
                f"got base_path()={self.model_base_path}. Pass --model_base_path="
                f"{os.path.abspath(self.model_base_path)}"
            )
        return [ModelConfig(self.model_name, self.model_base_path, VersionPolicy("latest", 1), {})]

    def batching_parameters(self) -> BatchingParameters | None:
        """The server's BatchingParameters (TF Serving's model-server defaults without a file), or None
        when batching is off."""
        if not self.enable_batching:
            if self.batching_parameters_file:
                raise InvalidArgument(
                    "Batching parameter file provided without batching enabled; add --enable_batching"
                )
            return None
        if self.batching_parameters_file:
            return read_batching_parameters(self.batching_parameters_file)
        return BatchingParameters(thread_pool_name="model_server_batch_threads")


def read_model_config_file(path: str) -> list[ModelConfig]:
    """Parse a ModelServerConfig text proto file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise InvalidArgument(f"Cannot read --model_config_file={path}: {error.strerror}") from error
    return parse_model_server_config(text)
