"""A model held in the process (a Keras model, tf.Module, tf.function or Python callable in a notebook
kernel) served as a version without export.

It runs through the same path as a SavedModel signature: one concrete function traced from a fixed
input signature (no retracing whatever the batch size; concurrent calls are safe), fed and read by
the SavedModel runner. Its SignatureDef is built from that function's inputs and outputs, so
metadata clients see it like an exported model. The function reads the model's current variables:
training the model in the kernel changes what the live version answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from nbserve.errors import InvalidArgument
from nbserve.servables.base import Servable
from nbserve.servables.function import InputSignature, serving_function
from nbserve.servables.saved_model import _Runner, signature_from_def
from nbserve.signature import DEFAULT_SERVING_SIGNATURE, PREDICT_METHOD, Signature

__all__ = ["LiveModel", "LiveServable", "live_model"]


@dataclass(frozen=True)
class LiveModel:
    """What every version serving the same object shares: its signature and runner."""

    obj: Any
    signature: Signature
    runner: _Runner


def live_model(
    obj: Any,
    *,
    signature_name: str = DEFAULT_SERVING_SIGNATURE,
    input_signature: InputSignature | None = None,
) -> LiveModel:
    """Trace ``obj`` once (a Python callable is also called once on a zero batch to learn its
    outputs) and build its ``signature_name`` signature."""
    if not signature_name:
        raise InvalidArgument("signature_name must not be empty; the default is serving_default")
    function = serving_function(obj, input_signature=input_signature)
    concrete = function.concrete
    signature = signature_from_def(signature_name, _signature_def(concrete))
    return LiveModel(obj, signature, _Runner(tf, signature, concrete))


def _signature_def(concrete: Any) -> Any:
    """The Predict ``tensorflow.SignatureDef`` of a concrete function with named inputs and dict outputs."""
    from tensorflow.core.protobuf import meta_graph_pb2

    definition = meta_graph_pb2.SignatureDef(method_name=PREDICT_METHOD)
    specs = concrete.structured_input_signature[0]
    for spec, placeholder in zip(specs, concrete.inputs, strict=False):  # captures follow the inputs
        _fill(definition.inputs[spec.name], placeholder)
    for alias, tensor in concrete.structured_outputs.items():
        _fill(definition.outputs[alias], tensor)
    return definition


def _fill(info: Any, tensor: tf.Tensor) -> None:
    info.name = tensor.name
    info.dtype = tensor.dtype.as_datatype_enum
    info.tensor_shape.CopyFrom(tensor.shape.as_proto())


class LiveServable(Servable):
    """A version of ``name`` answered by a model held in the process."""

    def __init__(self, name: str, version: int, model: LiveModel) -> None:
        self.name = name
        self.version = version
        self.model = model
        self.signatures = {model.signature.name: model.signature}

    def run(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_keys: Sequence[str]
    ) -> dict[str, np.ndarray]:
        if signature.name != self.model.signature.name:
            raise InvalidArgument(
                f"Signature '{signature.name}' of model {self.name} version {self.version} cannot be run"
            )
        return self.model.runner(inputs, output_keys)
