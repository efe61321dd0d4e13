"""Model configuration: TF Serving's ``ModelServerConfig`` text proto mapped to small dataclasses."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from nbserve.errors import InvalidArgument

TENSORFLOW_PLATFORM = "tensorflow"
SUPPORTED_PLATFORMS = frozenset({TENSORFLOW_PLATFORM})

_URI_SCHEME = re.compile(r"^[A-Za-z][0-9A-Za-z.]*://")


@dataclass(frozen=True)
class VersionPolicy:
    """``latest`` (the ``num_versions`` highest; TF's default), ``all``, or ``specific`` versions."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()


@dataclass(frozen=True)
class ModelConfig:
    """One model: a name, the directory holding its numbered version dirs, a policy, labels."""

    name: str
    base_path: str
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: dict[str, int] = field(default_factory=dict)


def is_relative_path(uri: str) -> bool:
    """TF's ``UriIsRelativePath``: no ``scheme://`` and no leading ``/``."""
    return not _URI_SCHEME.match(uri) and not uri.startswith("/")


def check_model_name(name: str) -> None:
    """Model names travel in URLs and metric labels, never in paths: no '/', '..' or control chars."""
    if "/" in name or "\\" in name or ".." in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise InvalidArgument(
            f"Invalid model name {name!r}: it must not contain '/', '\\', '..' or control characters; "
            "pick a name like 'my_model-2'"
        )


def validate_model_configs(configs: Iterable[ModelConfig]) -> None:
    """TF's ``ValidateModelConfigList``: unique names, absolute base paths."""
    seen: set[str] = set()
    configs = list(configs)
    for config in configs:
        check_model_name(config.name)
        if config.name in seen:
            raise InvalidArgument(f"Illegal to list model {config.name} multiple times in config list")
        seen.add(config.name)
    for config in configs:
        if is_relative_path(config.base_path):
            raise InvalidArgument(
                f"Expected model {config.name} to have an absolute path or URI; "
                f"got base_path()={config.base_path}"
            )


def _platform(config: Any) -> str:
    if config.model_type:  # deprecated field; TENSORFLOW = 1
        if config.model_platform:
            raise InvalidArgument(
                "Illegal setting both ModelServerConfig::model_type (deprecated) "
                "and ModelServerConfig::model_platform."
            )
        if config.model_type != 1:
            raise InvalidArgument(f"ModelServerConfig::model_type choice {config.model_type} not supported.")
        return TENSORFLOW_PLATFORM
    if not config.model_platform:
        raise InvalidArgument(
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            f"ModelServerConfig::model_platform, model name is {config.name}"
        )
    return config.model_platform


def _policy(msg: Any) -> VersionPolicy:
    choice = msg.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy("all")
    if choice == "specific":
        return VersionPolicy("specific", versions=tuple(msg.specific.versions))
    if choice in (None, "latest"):
        return VersionPolicy("latest", num_versions=msg.latest.num_versions or 1)
    raise InvalidArgument(f"Unhandled servable version_policy: {choice}")


def model_configs_from_proto(msg: Any) -> list[ModelConfig]:
    """Convert a ``tensorflow.serving.ModelServerConfig`` (ours or tensorflow-serving-api's)."""
    choice = msg.WhichOneof("config")
    if choice is None:
        return []  # TF takes no action for an empty config
    if choice != "model_config_list":
        raise InvalidArgument(
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported"
        )
    configs = [
        ModelConfig(
            name=c.name,
            base_path=c.base_path,
            policy=_policy(c.model_version_policy),
            version_labels=dict(sorted(c.version_labels.items())),
        )
        for c in msg.model_config_list.config
    ]
    validate_model_configs(configs)
    for c in msg.model_config_list.config:
        platform = _platform(c)
        if platform not in SUPPORTED_PLATFORMS:
            raise InvalidArgument(f"Model {c.name} requests unsupported platform {platform}")
    return configs


def parse_model_server_config(text: str) -> list[ModelConfig]:
    """Parse a ``--model_config_file`` (ModelServerConfig in protobuf text format)."""
    from google.protobuf import text_format

    from nbserve.protos._pool import POOL
    from nbserve.protos.tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

    msg = ModelServerConfig()
    try:
        text_format.Parse(text, msg, descriptor_pool=POOL)
    except text_format.ParseError as e:
        raise InvalidArgument(f"Invalid ModelServerConfig text proto: {e}") from e
    return model_configs_from_proto(msg)


def model_configs_to_proto(configs: Iterable[ModelConfig]) -> Any:
    """The ModelServerConfig (nbserve.protos class) describing ``configs``."""
    from nbserve.protos.tensorflow_serving.config.model_server_config_pb2 import ModelServerConfig

    msg = ModelServerConfig()
    config_list = msg.model_config_list
    config_list.SetInParent()
    for config in configs:
        c = config_list.config.add(
            name=config.name, base_path=config.base_path, model_platform=TENSORFLOW_PLATFORM
        )
        policy = config.policy
        if policy.kind == "all":
            c.model_version_policy.all.SetInParent()
        elif policy.kind == "specific":
            c.model_version_policy.specific.versions.extend(policy.versions)
        else:
            c.model_version_policy.latest.num_versions = policy.num_versions
        c.version_labels.update(config.version_labels)
    return msg


def format_model_server_config(configs: Iterable[ModelConfig]) -> str:
    """``configs`` as ModelServerConfig text, ready for a ``--model_config_file``."""
    from google.protobuf import text_format

    return text_format.MessageToString(model_configs_to_proto(configs))
