"""The one place the codecs import generated protobuf modules from (nbserve's private pool)."""

from __future__ import annotations

from nbserve.protos.tensorflow.core.example import example_pb2, feature_pb2
from nbserve.protos.tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2

TensorProto = tensor_pb2.TensorProto
TensorShapeProto = tensor_shape_pb2.TensorShapeProto
Example = example_pb2.Example
Feature = feature_pb2.Feature

__all__ = [
    "Example",
    "Feature",
    "TensorProto",
    "TensorShapeProto",
    "example_pb2",
    "feature_pb2",
    "tensor_pb2",
    "tensor_shape_pb2",
    "types_pb2",
]
