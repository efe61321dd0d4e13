"""Transport codecs: numpy <-> TF Serving's wire formats (JSON bodies, TensorProto, tf.Example).

The implementation lives in :mod:`nbserve.codecs`; this module is the public surface other layers
import. Nothing here imports TensorFlow.
"""

from __future__ import annotations

from nbserve.codecs.dtypes import data_type_name, data_type_of, numpy_dtype, tf_type_string
from nbserve.codecs.examples import (
    decode_examples_request,
    encode_classify_response,
    encode_regress_response,
    error_body,
    serialized_examples_from_input,
)
from nbserve.codecs.floatfmt import format_float, format_floats
from nbserve.codecs.jsonparse import json_debug_string, parse_json, request_signature_name
from nbserve.codecs.predict import b64_decode, decode_predict_inputs, encode_predict_response, json_to_array
from nbserve.codecs.proto import ndarray_to_tensor_proto, tensor_proto_to_ndarray

__all__ = [
    "b64_decode",
    "data_type_name",
    "data_type_of",
    "decode_examples_request",
    "decode_predict_inputs",
    "encode_classify_response",
    "encode_predict_response",
    "encode_regress_response",
    "error_body",
    "format_float",
    "format_floats",
    "json_debug_string",
    "json_to_array",
    "ndarray_to_tensor_proto",
    "numpy_dtype",
    "parse_json",
    "request_signature_name",
    "serialized_examples_from_input",
    "tensor_proto_to_ndarray",
    "tf_type_string",
]
