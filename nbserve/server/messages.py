"""Dataplane answers as TF Serving's messages: the protos gRPC sends and the JSON REST prints from them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import json_format

from nbserve.manager.manager import VersionStatus
from nbserve.protos.tensorflow.core.protobuf import error_codes_pb2
from nbserve.protos.tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2
from nbserve.signature import Signature

SIGNATURE_DEF_FIELD = "signature_def"


def status_response(statuses: Iterable[VersionStatus]) -> get_model_status_pb2.GetModelStatusResponse:
    """GetModelStatusResponse for a model's tracked versions."""
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in statuses:
        entry = response.model_version_status.add()
        entry.version = status.version
        entry.state = int(status.state)
        entry.status.error_code = error_codes_pb2.Code.Value(status.error_code)
        entry.status.error_message = status.error_message
    return response


def signature_def_map(signatures: Mapping[str, Signature]) -> get_model_metadata_pb2.SignatureDefMap:
    """SignatureDefMap holding each signature's SignatureDef exactly as the model declares it."""
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    for name, signature in signatures.items():
        sig_map.signature_def[name].ParseFromString(signature.definition)
    return sig_map


def to_json_dict(message: Any) -> dict[str, Any]:
    """Proto3 JSON as TF Serving prints it: original field names, defaults printed, int64 as strings."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def metadata_json(name: str, version: int, signatures: Mapping[str, Signature]) -> dict[str, Any]:
    """REST ``/metadata`` body, with TF Serving's doubled ``signature_def`` key."""
    return {
        "model_spec": {"name": name, "signature_name": "", "version": str(version)},
        "metadata": {SIGNATURE_DEF_FIELD: to_json_dict(signature_def_map(signatures))},
    }
