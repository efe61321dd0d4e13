"""TF Serving's REST predict bodies: ``instances`` / ``inputs`` JSON -> numpy, numpy -> JSON.

Decoding tries a vectorized path first (validate the nesting level by level with C-speed
``map``/``set`` passes, then one ``np.array`` call); anything it does not accept is redone by a
faithful port of ``json_tensor.cc`` (``_fill``), which yields TF Serving's exact error for the first
offending value.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from itertools import chain
from typing import Any

import numpy as np

from nbserve.codecs import dtypes as dt
from nbserve.codecs.floatfmt import format_floats
from nbserve.codecs.jsonparse import json_debug_string, json_string, json_type_name, request_signature_name
from nbserve.errors import InvalidArgument, ServingError, Unimplemented
from nbserve.signature import TensorInfo

_MAX_RANK = 64  # numpy's limit; TF's own is 254
_INT32 = (-(1 << 31), (1 << 31) - 1)
_INT_RANGES = {
    dt.DT_INT32: _INT32,
    dt.DT_INT16: _INT32,  # TF checks int32 range only, then narrows (wraps) like a C cast
    dt.DT_INT8: _INT32,
    dt.DT_UINT8: _INT32,
    dt.DT_INT64: (-(1 << 63), (1 << 63) - 1),
    dt.DT_UINT32: (0, (1 << 32) - 1),
    dt.DT_UINT64: (0, (1 << 64) - 1),
}
_BYTES_SUFFIX = "_bytes"
_DENSE_HINT = (
    " (a tensor is a dense nesting of lists: every list at one level has the same length and "
    "every value sits at the same depth)"
)


# ---------------------------------------------------------------------------------------------
# base64
# ---------------------------------------------------------------------------------------------

_B64_CLEAN = re.compile(r"[A-Za-z0-9+/]*")
_B64_SPACE = re.compile(r"[ \t\n\v\f\r]+")
_B64_TAIL = re.compile(r"[=.]*")
_B64_ERROR = (
    "Unable to base64 decode (b64 takes standard base64: A-Z a-z 0-9 + /, padding optional; "
    "URL-safe '-' and '_' are not accepted)"
)


def is_b64_object(value: Any) -> bool:
    """``{"b64": "<string>"}`` with exactly that one key."""
    return type(value) is dict and len(value) == 1 and type(value.get("b64")) is str


def b64_decode(text: str) -> bytes:
    """absl::Base64Unescape: standard alphabet, padding ('=' or '.') optional but exact if present,
    ASCII whitespace ignored. Raises ``InvalidArgument("Unable to base64 decode ...")``."""
    data = _B64_SPACE.sub("", text) if not text.isalnum() else text
    body = _B64_CLEAN.match(data).end()
    padding = data[body:]
    rem = body % 4
    if (
        _B64_TAIL.fullmatch(padding) is None
        or rem == 1
        or (padding and len(padding) != {0: -1, 2: 2, 3: 1}[rem])
    ):
        raise InvalidArgument(_B64_ERROR)
    try:
        return binascii.a2b_base64(data[:body] + "=" * ((4 - rem) % 4))
    except (binascii.Error, ValueError):
        raise InvalidArgument(_B64_ERROR) from None


def _b64_value(value: dict) -> bytes:
    if not is_b64_object(value):
        raise InvalidArgument(
            f"JSON Value: {json_debug_string(value)} not formatted correctly for base64 data"
        )
    return b64_decode(value["b64"])


def _to_bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# JSON value -> tensor
# ---------------------------------------------------------------------------------------------


def _shape_of(value: Any) -> list[int]:
    """GetDenseTensorShape: follow the first element of each list; ``[]`` ends the walk."""
    shape: list[int] = []
    while type(value) is list:
        shape.append(len(value))
        if not value:
            break
        value = value[0]
    return shape


def _type_hint(value: Any, dtype: int) -> str:
    """What to send instead, for a value whose JSON type does not suit ``dtype``."""
    name = dt.tf_type_string(dtype)
    if dtype in _INT_RANGES:
        if type(value) is float and not math.isfinite(value):
            return "NaN and Infinity are only valid for float and double inputs"
        low, high = _INT_RANGES[dtype]
        if type(value) is int or type(value) is float:
            return f"{name} inputs take integers without a decimal point in [{low}, {high}]"
        return f"send JSON integers for {name} inputs"
    if dtype == dt.DT_BOOL:
        return "send true or false for bool inputs"
    if dtype == dt.DT_STRING:
        return 'send JSON strings or {"b64": "..."} for string inputs'
    return f"send JSON numbers for {name} inputs"


def _type_error(value: Any, dtype: int) -> InvalidArgument:
    return InvalidArgument(
        f"JSON Value: {json_debug_string(value)} Type: {json_type_name(value)} "
        f"is not of expected type: {dt.tf_type_string(dtype)} ({_type_hint(value, dtype)})"
    )


def _unsupported(value: Any, dtype: int) -> Unimplemented:
    return Unimplemented(
        f"Conversion of JSON Value: {json_debug_string(value)} to type: {dt.tf_type_string(dtype)}"
        " (JSON cannot carry this dtype; send a TensorProto over gRPC instead)"
    )


def _leaf(value: Any, dtype: int) -> Any:
    """AddValueToTensor for one scalar (objects are handled by the caller)."""
    kind = type(value)
    if dtype == dt.DT_FLOAT or dtype == dt.DT_DOUBLE:
        if kind is float or kind is int:
            return value
    elif dtype in _INT_RANGES:
        low, high = _INT_RANGES[dtype]
        if kind is int and low <= value <= high:
            return value
    elif dtype == dt.DT_STRING:
        if kind is str:
            return _to_bytes(value)
    elif dtype == dt.DT_BOOL:
        if kind is bool:
            return value
    else:
        raise _unsupported(value, dtype)
    raise _type_error(value, dtype)


def _too_deep(rank: int) -> InvalidArgument:
    return InvalidArgument(f"JSON value has {rank} nested levels; tensors may have at most {_MAX_RANK}")


def _fill(value: Any, shape: list[int], dtype: int) -> list[Any]:
    """FillTensorProto, iteratively: the leaves of ``value`` in order, or TF Serving's error for the
    first value that does not fit ``shape`` / ``dtype``."""
    rank = len(shape)
    if rank > _MAX_RANK:  # fail before walking (maybe 100k levels of) a value no tensor can hold
        raise _too_deep(rank)
    leaves: list[Any] = []
    stack: list[tuple[int, Any]] = [(0, iter((value,)))]
    while stack:
        level, iterator = stack[-1]
        item = next(iterator, stack)
        if item is stack:
            stack.pop()
            continue
        if type(item) is not list:
            if level != rank:
                raise InvalidArgument(
                    f"JSON Value: {json_debug_string(item)} found at incorrect level: {level + 1} "
                    f"in the JSON DOM. Expected at level: {rank}{_DENSE_HINT}"
                )
            if type(item) is dict:
                if dtype != dt.DT_STRING:
                    raise _type_error(item, dtype)
                leaves.append(_b64_value(item))
            else:
                leaves.append(_leaf(item, dtype))
            continue
        if level >= rank:
            raise InvalidArgument(
                f"Encountered list at unexpected level: {level} expected < {rank}{_DENSE_HINT}"
            )
        if len(item) != shape[level]:
            raise InvalidArgument(
                f"Encountered list at unexpected size: {len(item)} at level: {level} "
                f"expected size: {shape[level]}{_DENSE_HINT}"
            )
        stack.append((level + 1, iter(item)))
    return leaves


def _leaves_to_array(leaves: list[Any], shape: list[int], dtype: int) -> np.ndarray:
    np_dtype = dt.numpy_dtype(dtype)
    if len(shape) > _MAX_RANK:
        raise _too_deep(len(shape))
    if dtype == dt.DT_STRING:
        out = np.empty(len(leaves), dtype=object)
        out[:] = leaves
        return out.reshape(shape)
    if not leaves:
        return np.zeros(shape, dtype=np_dtype)
    if dtype == dt.DT_FLOAT:
        with np.errstate(over="ignore"):
            return np.array(leaves, dtype=np.float64).astype(np.float32).reshape(shape)
    if dtype in (dt.DT_INT16, dt.DT_INT8, dt.DT_UINT8):
        return np.array(leaves, dtype=np.int64).astype(np_dtype).reshape(shape)
    return np.array(leaves, dtype=np_dtype).reshape(shape)


def _fast_leaves(value: Any, shape: list[int], dtype: int) -> list[Any] | None:
    """The leaves of a well-formed dense value whose types all suit ``dtype``, else None."""
    nodes = [value]
    for depth, size in enumerate(shape):
        if depth and (set(map(type, nodes)) != {list} or set(map(len, nodes)) != {size}):
            return None
        nodes = list(chain.from_iterable(nodes))
        if not nodes:
            return nodes
    kinds = set(map(type, nodes))
    if dtype == dt.DT_FLOAT or dtype == dt.DT_DOUBLE:
        ok = kinds <= {float, int}
    elif dtype in _INT_RANGES:
        ok = kinds == {int}
        if ok:
            low, high = _INT_RANGES[dtype]
            ok = low <= min(nodes) and max(nodes) <= high
    elif dtype == dt.DT_BOOL:
        ok = kinds == {bool}
    elif dtype == dt.DT_STRING:
        ok = kinds == {str}
        if ok:
            nodes = [_to_bytes(s) for s in nodes]
    else:
        ok = False
    return nodes if ok else None


def json_to_array(value: Any, dtype: int) -> np.ndarray:
    """One tensor from a JSON value (columnar rules: a scalar gives shape ``[]``)."""
    shape = _shape_of(value)
    leaves = _fast_leaves(value, shape, dtype) if len(shape) <= _MAX_RANK else None
    if leaves is None:
        leaves = _fill(value, shape, dtype)
    return _leaves_to_array(leaves, shape, dtype)


def _names_hint(inputs: Mapping[str, TensorInfo]) -> str:
    return ", ".join(inputs)


def _decode_columnar(value: Any, inputs: Mapping[str, TensorInfo]) -> dict[str, np.ndarray]:
    if type(value) is not dict or is_b64_object(value):
        if len(inputs) > 1:
            raise InvalidArgument(
                "inputs is a plain value/list, but expecting an object as multiple input tensors "
                f"required as per tensorinfo_map (send an object keyed by: {_names_hint(inputs)})"
            )
        name, info = next(iter(inputs.items()))
        return {name: json_to_array(value, info.dtype)}
    out = {}
    for name, info in inputs.items():
        if name not in value:
            raise InvalidArgument(
                f"Missing named input: {name} in 'inputs' object. "
                f"(the signature's inputs are: {_names_hint(inputs)})"
            )
        out[name] = json_to_array(value[name], info.dtype)
    return out


def _is_named_object(value: Any) -> bool:
    return type(value) is dict and not is_b64_object(value)


def _decode_rows(instances: list, inputs: Mapping[str, TensorInfo]) -> dict[str, np.ndarray]:
    first = instances[0]
    if type(first) is not dict and len(inputs) > 1:
        raise InvalidArgument(
            "instances is a plain list, but expecting list of objects as multiple input tensors "
            f"required as per tensorinfo_map (send objects keyed by: {_names_hint(inputs)})"
        )
    by_name = _is_named_object(first)
    # Fast path: the whole column is one dense tensor, so every row has the same shape.
    if by_name:
        names = set(inputs)
        if all(_is_named_object(e) and e.keys() == names for e in instances):
            columns = {name: [e[name] for e in instances] for name in inputs}
        else:
            columns = None
    else:
        columns = {next(iter(inputs)): instances}
    if columns is not None:
        out = {}
        for name, column in columns.items():
            dtype = inputs[name].dtype
            shape = _shape_of(column)
            leaves = _fast_leaves(column, shape, dtype) if len(shape) <= _MAX_RANK else None
            if leaves is None:
                break
            out[name] = _leaves_to_array(leaves, shape, dtype)
        else:
            return out
    return _decode_rows_exact(instances, inputs, by_name)


def _decode_rows_exact(
    instances: list, inputs: Mapping[str, TensorInfo], by_name: bool
) -> dict[str, np.ndarray]:
    """FillTensorMapFromInstancesList, element by element, with TF Serving's error texts."""
    leaves: dict[str, list[Any]] = {}
    shapes: dict[str, list[int]] = {}

    def add_item(item: Any, name: str) -> None:
        if name not in inputs:
            raise InvalidArgument(
                f"JSON object: does not have named input: {name} "
                f"(the signature's inputs are: {_names_hint(inputs)})"
            )
        shape = _shape_of(item)
        values = _fill(item, shape, inputs[name].dtype)
        if name not in shapes:
            shapes[name] = shape
            leaves[name] = values
            return
        expected = shapes[name]
        size = 1
        for d in expected:
            size *= d
        if size != len(values):
            raise InvalidArgument(
                f"Expecting tensor size: {size} but got: {len(values)} (every instance of an input "
                "needs the same shape)"
            )
        if expected != shape:
            raise InvalidArgument(
                f"Expecting shape [{','.join(map(str, expected))}] but got: [{','.join(map(str, shape))}] "
                "(every instance of an input needs the same shape)"
            )
        leaves[name].extend(values)

    names = set(inputs)
    first_name = next(iter(inputs))
    for index, element in enumerate(instances):
        if by_name:
            if not _is_named_object(element):
                raise InvalidArgument(f"Expecting object but got list at item {index} of input list")
            for key, item in element.items():
                try:
                    add_item(item, key)
                except ServingError as err:
                    raise InvalidArgument(
                        f"Failed to process element: {index} key: {key} of 'instances' list. "
                        f"Error: {err.code}: {err.message}"
                    ) from None
            if element.keys() != names:
                raise InvalidArgument(
                    f"Failed to process element: {index} of 'instances' list. JSON object: "
                    f"{json_debug_string(element)} keys must be equal to: {','.join(sorted(names))}"
                )
        else:
            if _is_named_object(element):
                raise InvalidArgument(f"Expecting value/list but got object at item {index} of input list")
            try:
                add_item(element, first_name)
            except ServingError as err:
                raise InvalidArgument(
                    f"Failed to process element: {index} of 'instances' list. "
                    f"Error: {err.code}: {err.message}"
                ) from None
    count = len(instances)
    return {
        name: _leaves_to_array(values, [count, *shapes[name]], inputs[name].dtype)
        for name, values in leaves.items()
    }


def decode_predict_inputs(
    doc: dict, inputs: Mapping[str, TensorInfo], signature_name: str
) -> tuple[str, dict[str, np.ndarray]]:
    """Tensors of a parsed ``:predict`` body: ``("row" | "columnar", {alias: ndarray})``.

    ``inputs`` are the signature's inputs (alias -> TensorInfo); arrays get
    ``numpy_dtype(info.dtype)`` (DT_STRING: object arrays of bytes). Errors are TF Serving's
    (InvalidArgument; Unimplemented for dtypes JSON cannot carry, in columnar format).
    """
    if type(doc) is not dict:
        request_signature_name(doc)
    if not inputs:
        raise InvalidArgument(f"Failed to get input map for signature: {signature_name or 'DEFAULT'}")
    if "instances" in doc:
        if "inputs" in doc:
            raise InvalidArgument(
                f"JSON Value: {json_debug_string(doc)} Not formatted correctly expecting only one of "
                "'inputs' or 'instances' keys to exist "
            )
        instances = doc["instances"]
        if type(instances) is not list:
            raise InvalidArgument(
                f"JSON Value: {json_debug_string(doc)} Expecting 'instances' to be an list/array"
            )
        if not instances:
            raise InvalidArgument(f"JSON Value: {json_debug_string(doc)} No values in 'instances' array")
        return "row", _decode_rows(instances, inputs)
    if "inputs" in doc:
        return "columnar", _decode_columnar(doc["inputs"], inputs)
    raise InvalidArgument("Missing 'inputs' or 'instances' key")


# ---------------------------------------------------------------------------------------------
# tensor -> JSON
# ---------------------------------------------------------------------------------------------


def _value_texts(array: np.ndarray, dtype: int, as_b64: bool) -> list[str]:
    """JSON texts of every element, C order (AddSingleValueAndAdvance)."""
    flat = array.reshape(-1)
    if dtype == dt.DT_FLOAT or dtype == dt.DT_DOUBLE:
        return format_floats(flat, single=dtype == dt.DT_FLOAT)
    if dtype in _INT_RANGES:
        return list(map(str, flat.tolist()))
    if dtype == dt.DT_BOOL:
        return np.where(flat, "true", "false").tolist()
    if dtype == dt.DT_STRING:
        values = [v if type(v) is bytes else _as_bytes(v) for v in flat.tolist()]
        if as_b64:
            return ['{"b64": "' + base64.b64encode(v).decode("ascii") + '"}' for v in values]
        return [json_string(v.decode("utf-8", "surrogateescape")) for v in values]
    if flat.size == 0:
        return []
    raise InvalidArgument(
        f"Failed to write JSON value for tensor type: {dt.tf_type_string(dtype)} "
        "(JSON cannot carry this dtype; use gRPC or cast the output in the model)"
    )


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogateescape")
    return str(value).encode("utf-8")


def _template(shape: tuple[int, ...]) -> str:
    """``%s`` placeholders nested like ``shape`` on one line, e.g. (2, 2) -> ``[[%s, %s], [%s, %s]]``."""
    text = "%s"
    for size in reversed(shape):
        text = "[" + ", ".join([text] * size) + "]"
    return text


def _output_dtype(array: np.ndarray, info: TensorInfo | None) -> int:
    if info is not None:
        try:
            if dt.numpy_dtype(info.dtype) == array.dtype:
                return int(info.dtype)
        except ServingError:
            pass
    return dt.data_type_of(array)


def _json_key(name: str) -> str:
    return json_string(name).replace("%", "%%")


def encode_predict_response(
    fmt: str, outputs: Mapping[str, np.ndarray], infos: Mapping[str, TensorInfo]
) -> bytes:
    """The JSON body for predict outputs: ``{"predictions": [...]}`` (row) or ``{"outputs": ...}``
    (columnar), laid out like TF Serving's PrettyWriter. Output keys follow ``infos`` order."""
    if not outputs:
        raise InvalidArgument("Cannot convert empty tensor map to JSON")
    names = [n for n in infos if n in outputs] + [n for n in outputs if n not in infos]
    arrays = {n: np.asarray(outputs[n]) for n in names}
    dtypes = {n: _output_dtype(arrays[n], infos.get(n)) for n in names}

    def texts(name: str) -> list[str]:
        as_b64 = dtypes[name] == dt.DT_STRING and name.endswith(_BYTES_SUFFIX)
        return _value_texts(arrays[name], dtypes[name], as_b64)

    if fmt == "row":
        batch = -1
        for name in names:
            shape = arrays[name].shape
            if not shape:
                raise InvalidArgument(
                    f"Tensor name: {name} has no shape information "
                    "(row format needs a batch dimension; send 'inputs' for columnar output)"
                )
            if batch >= 0 and shape[0] != batch:
                raise InvalidArgument(
                    f"Tensor name: {name} has inconsistent batch size: {shape[0]} expecting: {batch} "
                    "(row format needs one batch size; send 'inputs' for columnar output)"
                )
            batch = shape[0]
        if batch == 0:
            return b'{\n    "predictions": []\n}'
        if len(names) == 1:
            name = names[0]
            item = _template(arrays[name].shape[1:])
            body = ", ".join([item] * batch) % tuple(texts(name))
            return ('{\n    "predictions": [' + body + "\n    ]\n}").encode("utf-8", "surrogateescape")
        per_row = []
        columns = []
        for name in names:
            row_shape = arrays[name].shape[1:]
            per_row.append(_json_key(name) + ": " + _template(row_shape))
            values = np.empty(arrays[name].size, dtype=object)
            values[:] = texts(name)
            columns.append(values.reshape(batch, -1))
        item = "\n        {\n            " + ",\n            ".join(per_row) + "\n        }"
        args = np.concatenate(columns, axis=1).reshape(-1).tolist()
        body = ",".join([item] * batch) % tuple(args)
        return ('{\n    "predictions": [' + body + "\n    ]\n}").encode("utf-8", "surrogateescape")
    if fmt == "columnar":
        if len(names) == 1:
            name = names[0]
            body = _template(arrays[name].shape) % tuple(texts(name))
        else:
            members = [
                json_string(name) + ": " + _template(arrays[name].shape) % tuple(texts(name))
                for name in names
            ]
            body = "{\n        " + ",\n        ".join(members) + "\n    }"
        return ('{\n    "outputs": ' + body + "\n}").encode("utf-8", "surrogateescape")
    raise InvalidArgument("Invalid request format")
