"""numpy <-> ``tensorflow.TensorProto`` with TensorFlow's own rules (``Tensor::FromProto`` /
``AsProtoField``), without importing TensorFlow.

Repeated numeric fields are written by handing protobuf one packed, pre-encoded field (bytes built
with numpy), and read with one ``np.array`` call, so large tensors never loop in Python.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nbserve.codecs import dtypes as dt
from nbserve.codecs._protos import TensorProto
from nbserve.errors import InvalidArgument, ServingError, Unimplemented

_MAX_DIMS = 254  # TensorShape::MaxDimensions()
_INT64_MAX = (1 << 63) - 1

_INT_VAL_TYPES = (
    dt.DT_INT32,
    dt.DT_INT16,
    dt.DT_INT8,
    dt.DT_UINT8,
    dt.DT_UINT16,
    dt.DT_QINT8,
    dt.DT_QUINT8,
    dt.DT_QINT16,
    dt.DT_QUINT16,
    dt.DT_QINT32,
    dt.DT_INT4,
    dt.DT_UINT4,
    dt.DT_INT2,
    dt.DT_UINT2,
)
_FLOAT8_TYPES = (
    dt.DT_FLOAT8_E5M2,
    dt.DT_FLOAT8_E4M3FN,
    dt.DT_FLOAT8_E4M3FNUZ,
    dt.DT_FLOAT8_E4M3B11FNUZ,
    dt.DT_FLOAT8_E5M2FNUZ,
    dt.DT_FLOAT4_E2M1FN,
)

# DataType -> (TensorProto field, field number, numpy type of the wire values, packed encoding).
_FIELDS: dict[int, tuple[str, int, Any, str]] = {
    dt.DT_FLOAT: ("float_val", 5, np.float32, "fixed"),
    dt.DT_DOUBLE: ("double_val", 6, np.float64, "fixed"),
    dt.DT_COMPLEX64: ("scomplex_val", 9, np.float32, "fixed"),
    dt.DT_COMPLEX128: ("dcomplex_val", 12, np.float64, "fixed"),
    dt.DT_INT64: ("int64_val", 10, np.int64, "varint"),
    dt.DT_BOOL: ("bool_val", 11, np.bool_, "varint"),
    dt.DT_UINT32: ("uint32_val", 16, np.uint32, "varint"),
    dt.DT_UINT64: ("uint64_val", 17, np.uint64, "varint"),
    dt.DT_HALF: ("half_val", 13, np.int32, "varint"),
    dt.DT_BFLOAT16: ("half_val", 13, np.int32, "varint"),
    dt.DT_STRING: ("string_val", 8, object, "bytes"),
    **{t: ("int_val", 7, np.int32, "varint") for t in _INT_VAL_TYPES},
    **{t: ("float8_val", 18, np.uint8, "raw") for t in _FLOAT8_TYPES},
}
_SMALL = 64  # below this many values, protobuf's own extend() is cheaper than numpy encoding


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _varints(values: np.ndarray) -> bytes:
    """Protobuf varint encoding of many uint64 values, vectorized."""
    v = values.astype(np.uint64, copy=False)
    if int(v.max()) < 0x80:
        return v.astype(np.uint8).tobytes()
    lengths = np.ones(v.size, dtype=np.int64)
    for k in range(1, 10):
        lengths += v >= np.uint64(1 << (7 * k))
    ends = np.cumsum(lengths)
    starts = ends - lengths
    out = np.empty(int(ends[-1]), dtype=np.uint8)
    for k in range(10):
        sel = np.flatnonzero(lengths > k)
        if not sel.size:
            break
        chunk = (v[sel] >> np.uint64(7 * k)) & np.uint64(0x7F)
        chunk |= (lengths[sel] > k + 1).astype(np.uint64) << np.uint64(7)
        out[starts[sel] + k] = chunk.astype(np.uint8)
    return out.tobytes()


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while pos < len(data) and shift < 35:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & 0xFFFFFFFF, pos
        shift += 7
    raise ValueError("bad varint")


def encode_string_list(values: list[bytes]) -> bytes:
    """TF's ``port::EncodeStringList`` (string tensors in ``tensor_content``): varint32 lengths,
    then the concatenated bytes."""
    return b"".join(_varint(len(v)) for v in values) + b"".join(values)


def decode_string_list(data: bytes, count: int) -> list[bytes]:
    """TF's ``port::DecodeStringList``; raises ValueError when ``data`` does not hold ``count`` strings."""
    sizes = []
    pos = 0
    for _ in range(count):
        size, pos = _read_varint(data, pos)
        sizes.append(size)
    if sum(sizes) != len(data) - pos:
        raise ValueError("string list size mismatch")
    out = []
    for size in sizes:
        out.append(data[pos : pos + size])
        pos += size
    return out


def _parse_error(alias: str, hint: str = "") -> InvalidArgument:
    return InvalidArgument(f"tensor parsing error: {alias}" + (f" ({hint})" if hint else ""))


def tensor_proto_to_ndarray(proto: Any, alias: str) -> np.ndarray:
    """A TensorProto as a numpy array, following TensorFlow's ``Tensor::FromProto``.

    ``tensor_content`` (if set) must hold exactly the tensor's bytes; otherwise the dtype's typed
    field is used: extra values are ignored, missing ones repeat the last value, none means zeros.
    DT_STRING gives an object array of bytes. Arrays decoded from ``tensor_content`` are read-only
    views of the message's bytes (no copy). Errors: ``InvalidArgument("tensor parsing error:
    <alias>")``, with a hint saying what was wrong.
    """
    dtype = int(proto.dtype)
    shape_proto = proto.tensor_shape
    dims = [int(d.size) for d in shape_proto.dim]
    # Like TF's TensorShape, unknown_rank is ignored (a shape without dims is a scalar).
    if len(dims) > _MAX_DIMS or any(d < 0 for d in dims):
        raise _parse_error(alias, f"invalid tensor_shape {dims}")
    count = 1
    for d in dims:
        count *= d
    if count > _INT64_MAX:
        raise _parse_error(alias, "tensor_shape has too many elements")
    if dtype not in _FIELDS:
        if dtype in (dt.DT_RESOURCE, dt.DT_VARIANT):
            raise Unimplemented(
                f"tensor parsing error: {alias} ({dt.data_type_name(dtype)} tensors are not supported)"
            )
        raise _parse_error(alias, f"unsupported dtype {dt.data_type_name(dtype)}")
    try:
        np_dtype = dt.numpy_dtype(dtype)
    except ServingError as err:
        raise Unimplemented(f"tensor parsing error: {alias} ({err.message})") from None
    if count == 0:
        return np.empty(dims, dtype=np_dtype) if dtype == dt.DT_STRING else np.zeros(dims, dtype=np_dtype)

    content = proto.tensor_content
    if content:
        if dtype == dt.DT_STRING:
            try:
                strings = decode_string_list(content, count)
            except ValueError:
                raise _parse_error(alias, "tensor_content does not hold the encoded strings") from None
            out = np.empty(count, dtype=object)
            out[:] = strings
            return out.reshape(dims)
        expected = count * np_dtype.itemsize
        if len(content) != expected:
            raise _parse_error(
                alias,
                f"tensor_content has {len(content)} bytes; shape {dims} of {dt.data_type_name(dtype)} "
                f"needs {expected}",
            )
        return np.frombuffer(content, dtype=np_dtype).reshape(dims)

    field, _, wire, encoding = _FIELDS[dtype]
    raw = getattr(proto, field)
    if dtype == dt.DT_STRING:
        values: Any = list(raw)
        out = np.empty(count, dtype=object)
        if not values:
            out[:] = b""
        elif len(values) >= count:
            out[:] = values[:count]
        else:
            out[: len(values)] = values
            out[len(values) :] = values[-1]
        return out.reshape(dims)
    if encoding == "raw":
        values = np.frombuffer(raw, dtype=np.uint8).view(np_dtype)
    else:
        values = np.array(raw, dtype=wire)
        if field == "half_val":
            values = values.astype(np.uint16).view(np_dtype)
        elif dtype in (dt.DT_COMPLEX64, dt.DT_COMPLEX128):
            values = values[: values.size // 2 * 2].view(np_dtype)
        elif values.dtype != np_dtype:
            values = values.astype(np_dtype)  # narrowing wraps, like TF's static_cast
    have = values.size
    if have == 0:
        return np.zeros(dims, dtype=np_dtype)
    if have >= count:
        return np.ascontiguousarray(values[:count]).reshape(dims)
    out = np.empty(count, dtype=np_dtype)
    out[:have] = values
    out[have:] = values[have - 1]
    return out.reshape(dims)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    raise InvalidArgument(f"DT_STRING tensors hold bytes or str, not {type(value).__name__}")


def ndarray_to_tensor_proto(
    array: Any, dtype: int | None = None, *, use_tensor_content: bool = False
) -> TensorProto:
    """A TensorProto for ``array`` (cast to ``dtype`` when given), values in the typed ``*_val`` field as
    TF Serving writes responses, or in ``tensor_content`` with ``use_tensor_content=True``
    (``--enable_serialization_as_tensor_content``)."""
    arr = np.asarray(array)
    if dtype is None:
        dtype = dt.data_type_of(arr)
    dtype = int(dtype)
    if dtype not in _FIELDS:
        raise InvalidArgument(f"Cannot write {dt.data_type_name(dtype)} tensors")
    np_dtype = dt.numpy_dtype(dtype)
    proto = TensorProto()
    proto.dtype = dtype
    dim = proto.tensor_shape.dim
    for size in arr.shape:
        dim.add().size = size
    if arr.size == 0:
        return proto
    if dtype == dt.DT_STRING:
        values = [_as_bytes(v) for v in arr.reshape(-1).tolist()]
        if use_tensor_content:
            proto.tensor_content = encode_string_list(values)
        else:
            proto.string_val.extend(values)
        return proto
    arr = np.ascontiguousarray(arr, dtype=np_dtype).reshape(-1)
    if use_tensor_content:
        proto.tensor_content = arr.tobytes()
        return proto
    field, number, wire, encoding = _FIELDS[dtype]
    if encoding == "raw":
        proto.float8_val = arr.view(np.uint8).tobytes()
        return proto
    if field == "half_val":
        arr = arr.view(np.uint16).astype(np.int32)
    elif dtype in (dt.DT_COMPLEX64, dt.DT_COMPLEX128):
        arr = arr.view(wire)
    elif arr.dtype != wire:
        arr = arr.astype(wire)
    if arr.size < _SMALL:
        getattr(proto, field).extend(arr.tolist())
        return proto
    if encoding == "fixed":
        payload = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    elif wire == np.int32 or wire == np.int64:
        payload = _varints(arr.astype(np.int64).view(np.uint64))  # negative: 10-byte two's complement
    else:
        payload = _varints(arr.astype(np.uint64))
    proto.MergeFromString(_varint(number << 3 | 2) + _varint(len(payload)) + payload)
    return proto
