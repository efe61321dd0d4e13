"""ModelServerConfig text proto -> ModelConfig, with TF Serving's validation errors."""

from __future__ import annotations

import pytest
from google.protobuf import text_format

from nbserve.errors import InvalidArgument
from nbserve.manager import (
    ModelConfig,
    VersionPolicy,
    format_model_server_config,
    model_configs_from_proto,
    model_configs_to_proto,
    parse_model_server_config,
)

pb = pytest.importorskip("nbserve.protos.tensorflow_serving.config.model_server_config_pb2")

DOC_EXAMPLE = """
model_config_list {
  config { name: "m" base_path: "/models/m" model_platform: "tensorflow"
           model_version_policy { specific { versions: 42 versions: 43 } }
           version_labels { key: "stable" value: 42 } version_labels { key: "canary" value: 43 } }
  config { name: "all" base_path: "gs://bucket/all" model_platform: "tensorflow"
           model_version_policy { all {} } }
  config { name: "two" base_path: "/models/two" model_platform: "tensorflow"
           model_version_policy { latest { num_versions: 2 } } }
  config { name: "plain" base_path: "/models/plain" model_type: TENSORFLOW }
}
"""


def test_parse_documented_example() -> None:
    configs = parse_model_server_config(DOC_EXAMPLE)
    assert configs == [
        ModelConfig(
            "m", "/models/m", VersionPolicy("specific", versions=(42, 43)), {"canary": 43, "stable": 42}
        ),
        ModelConfig("all", "gs://bucket/all", VersionPolicy("all")),
        ModelConfig("two", "/models/two", VersionPolicy("latest", num_versions=2)),
        ModelConfig("plain", "/models/plain", VersionPolicy("latest", num_versions=1)),
    ]


def test_empty_config_is_no_models() -> None:
    assert parse_model_server_config("") == []
    assert parse_model_server_config("model_config_list {}") == []


def test_round_trip_through_proto_and_text() -> None:
    configs = parse_model_server_config(DOC_EXAMPLE)
    msg = model_configs_to_proto(configs)
    assert isinstance(msg, pb.ModelServerConfig)
    assert model_configs_from_proto(msg) == configs
    assert parse_model_server_config(format_model_server_config(configs)) == configs


def test_from_tensorflow_serving_api_message_too() -> None:
    """model_configs_from_proto only reads fields, so any ModelServerConfig class works."""
    msg = text_format.Parse(DOC_EXAMPLE, pb.ModelServerConfig())
    assert [c.name for c in model_configs_from_proto(msg)] == ["m", "all", "two", "plain"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model_config_list { config { name: "m" base_path: "/a" model_platform: "tensorflow" }'
            ' config { name: "m" base_path: "/b" model_platform: "tensorflow" } }',
            "Illegal to list model m multiple times in config list",
        ),
        (
            'model_config_list { config { name: "m" base_path: "models/m" model_platform: "tensorflow" } }',
            "Expected model m to have an absolute path or URI; got base_path()=models/m",
        ),
        (
            'model_config_list { config { name: "m" base_path: "" model_platform: "tensorflow" } }',
            "Expected model m to have an absolute path or URI; got base_path()=",
        ),
        (
            'model_config_list { config { name: "m" base_path: "/m" } }',
            "Illegal setting neither ModelServerConfig::model_type (deprecated) nor "
            "ModelServerConfig::model_platform, model name is m",
        ),
        (
            'model_config_list { config { name: "m" base_path: "/m" model_platform: "tflite" } }',
            "Model m requests unsupported platform tflite",
        ),
        (
            'model_config_list { config { name: "m" base_path: "/m" model_type: TENSORFLOW'
            ' model_platform: "tensorflow" } }',
            "Illegal setting both ModelServerConfig::model_type (deprecated) and "
            "ModelServerConfig::model_platform.",
        ),
        (
            "custom_model_config { type_url: 'type.googleapis.com/x.Y' value: '' }",
            "ServerModelConfig type not supported by HandleReloadConfigRequest. "
            "Only ModelConfigList is currently supported",
        ),
    ],
)
def test_validation_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_model_server_config(text)
    assert info.value.message == message


def test_text_syntax_error() -> None:
    with pytest.raises(InvalidArgument, match="Invalid ModelServerConfig text proto"):
        parse_model_server_config("model_config_list { config { nme: 'm' } }")
