"""Versions and the manager: config, version policies, the file-system source, load/unload."""

from nbserve.manager.config import (
    ModelConfig,
    VersionPolicy,
    format_model_server_config,
    model_configs_from_proto,
    model_configs_to_proto,
    parse_model_server_config,
)
from nbserve.manager.manager import Manager, ServableState, VersionStatus
from nbserve.manager.policy import aspired_versions
from nbserve.manager.source import FileSystemSource

__all__ = [
    "FileSystemSource",
    "Manager",
    "ModelConfig",
    "ServableState",
    "VersionPolicy",
    "VersionStatus",
    "aspired_versions",
    "format_model_server_config",
    "model_configs_from_proto",
    "model_configs_to_proto",
    "parse_model_server_config",
]
