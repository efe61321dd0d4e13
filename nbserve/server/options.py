"""Server settings: tensorflow_model_server's flags as one dataclass, shared by the CLI and the Python API."""

from __future__ import annotations

import os
from dataclasses import dataclass

from nbserve.errors import InvalidArgument
from nbserve.manager.config import ModelConfig, VersionPolicy, parse_model_server_config

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


def read_model_config_file(path: str) -> list[ModelConfig]:
    """Parse a ModelServerConfig text proto file."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise InvalidArgument(f"Cannot read --model_config_file={path}: {error.strerror}") from error
    return parse_model_server_config(text)
