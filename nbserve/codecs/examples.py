"""TF Serving's REST classify / regress bodies: JSON examples -> serialized tf.Example, results -> JSON."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nbserve.codecs._protos import Example
from nbserve.codecs.floatfmt import format_floats
from nbserve.codecs.jsonparse import json_debug_string, json_string, json_type_name, request_signature_name
from nbserve.codecs.predict import b64_decode, is_b64_object
from nbserve.errors import InvalidArgument

_INT64_MAX = (1 << 63) - 1
_KIND_NAMES = {"bytes_list": "bytes", "float_list": "float", "int64_list": "int64"}


def _feature_values(name: str, content: Any) -> tuple[str | None, list[Any]]:
    """AddValueToFeature over one feature's JSON value (a list means several values)."""
    kind: str | None = None
    values: list[Any] = []
    for value in content if type(content) is list else (content,):
        kind_type = type(value)
        if kind_type is str:
            want, item = "bytes_list", value.encode("utf-8", "surrogateescape")
        elif kind_type is bool:
            want, item = "int64_list", int(value)
        elif kind_type is float:
            want, item = "float_list", value
        elif kind_type is int:
            want, item = "int64_list", value
        elif is_b64_object(value):
            want, item = "bytes_list", None
        else:
            raise InvalidArgument(
                f"Feature: {name} has element with unexpected JSON type: {json_type_name(value)} "
                '(feature values are strings, {"b64": ...}, numbers or booleans, one list per feature)'
            )
        if kind is not None and kind != want:
            raise InvalidArgument(
                f"Unexpected element type in feature: {name} expecting type: {_KIND_NAMES[kind]} "
                "(all values of a feature need one JSON type; 6 is an int64, 6.0 a float)"
            )
        if want == "int64_list" and item > _INT64_MAX:
            raise InvalidArgument(f"Feature: {name} has uint64_t element. Only int64_t is supported.")
        if item is None:
            item = b64_decode(value["b64"])
        kind = want
        values.append(item)
    return kind, values


def _example_bytes(value: Any) -> bytes:
    """MakeExampleFromJsonObject, serialized."""
    if type(value) is not dict:
        raise InvalidArgument(f"Example must be JSON object but got JSON {json_type_name(value)}")
    example = Example()
    features = example.features.feature
    for name, content in value.items():
        kind, values = _feature_values(name, content)
        feature = features[name]  # an empty list still creates the (empty) feature
        if kind == "float_list":
            with np.errstate(over="ignore"):
                feature.float_list.value.extend(
                    np.asarray(values, dtype=np.float64).astype(np.float32).tolist()
                )
        elif kind is not None:
            getattr(feature, kind).value.extend(values)
    return example.SerializeToString()


def decode_examples_request(doc: Any, api: str) -> tuple[str, list[bytes]]:
    """A parsed ``:classify`` / ``:regress`` body -> ``(signature_name, serialized tf.Examples)``.

    With a ``context`` the context's serialized bytes are prepended to each example's, which
    protobuf parses as a merge where the example's features win -- what TF Serving feeds the model.
    ``api`` ("classify" or "regress") only shapes the hints; TF's texts say "classify" for both.
    """
    signature_name = request_signature_name(doc)
    context = b""
    if "context" in doc:
        context = _example_bytes(doc["context"])
    if "examples" not in doc:
        raise InvalidArgument(
            f"JSON Value: {json_debug_string(doc)} When method is classify, key 'examples' is expected "
            f'and was not found (a :{api} body needs "examples": [{{feature: value, ...}}, ...])'
        )
    examples = doc["examples"]
    if type(examples) is not list:
        raise InvalidArgument(
            f"JSON Value: {json_debug_string(doc)} Expecting 'examples' value to be an list/array"
        )
    if not examples:
        raise InvalidArgument(f"JSON Value: {json_debug_string(doc)} 'examples' value is an empty array")
    return signature_name, [context + _example_bytes(example) for example in examples]


def serialized_examples_from_input(input_message: Any) -> list[bytes]:
    """Serialized examples of a ``tensorflow.serving.Input`` (gRPC), as TF Serving feeds them:
    each ``ExampleListWithContext`` example is prefixed with the serialized context."""
    kind = input_message.WhichOneof("kind")
    out: list[bytes] = []
    if kind == "example_list":
        out = [example.SerializeToString() for example in input_message.example_list.examples]
    elif kind == "example_list_with_context":
        group = input_message.example_list_with_context
        context = group.context.SerializeToString()
        out = [context + example.SerializeToString() for example in group.examples]
    if not out:
        raise InvalidArgument("Input is empty.")
    return out


def encode_classify_response(results: Sequence[Sequence[tuple[str | bytes, float]]]) -> bytes:
    """``{"results": [[[label, score], ...], ...]}``; scores print as float32 like TF Serving."""
    if not results:
        raise InvalidArgument("Cannot convert empty ClassificationResults to JSON")
    scores = format_floats(np.asarray([s for classes in results for _, s in classes], dtype=np.float32), True)
    position = 0
    rows = []
    for classes in results:
        items = []
        for label, _ in classes:
            text = label.decode("utf-8", "surrogateescape") if isinstance(label, bytes) else str(label)
            items.append(f"[{json_string(text)}, {scores[position]}]")
            position += 1
        rows.append("[" + ", ".join(items) + "]")
    return ('{\n    "results": [' + ", ".join(rows) + "\n    ]\n}").encode("utf-8", "surrogateescape")


def encode_regress_response(values: Sequence[float] | np.ndarray) -> bytes:
    """``{"results": [v1, v2, ...]}``; values print as float32 like TF Serving."""
    flat = np.asarray(values, dtype=np.float32).reshape(-1)
    if flat.size == 0:
        raise InvalidArgument("Cannot convert empty RegressionResults to JSON")
    return ('{\n    "results": [' + ", ".join(format_floats(flat, True)) + "]\n}").encode("ascii")


def error_body(message: str) -> bytes:
    """``{"error": message}`` as TF Serving writes it."""
    text = '{\n    "error": ' + json_string(str(message)) + "\n}"
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")
