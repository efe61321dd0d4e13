"""TensorFlow ``DataType`` enum values <-> numpy dtypes, and TF's names for them."""

from __future__ import annotations

from functools import cache

import numpy as np

from nbserve.errors import InvalidArgument, Unimplemented

DT_INVALID = 0
DT_FLOAT = 1
DT_DOUBLE = 2
DT_INT32 = 3
DT_UINT8 = 4
DT_INT16 = 5
DT_INT8 = 6
DT_STRING = 7
DT_COMPLEX64 = 8
DT_INT64 = 9
DT_BOOL = 10
DT_QINT8 = 11
DT_QUINT8 = 12
DT_QINT32 = 13
DT_BFLOAT16 = 14
DT_QINT16 = 15
DT_QUINT16 = 16
DT_UINT16 = 17
DT_COMPLEX128 = 18
DT_HALF = 19
DT_RESOURCE = 20
DT_VARIANT = 21
DT_UINT32 = 22
DT_UINT64 = 23
DT_FLOAT8_E5M2 = 24
DT_FLOAT8_E4M3FN = 25
DT_FLOAT8_E4M3FNUZ = 26
DT_FLOAT8_E4M3B11FNUZ = 27
DT_FLOAT8_E5M2FNUZ = 28
DT_INT4 = 29
DT_UINT4 = 30
DT_INT2 = 31
DT_UINT2 = 32
DT_FLOAT4_E2M1FN = 33

_REF_OFFSET = 100

# Enum value -> (enum name without "DT_", TF's DataTypeString text).
_NAMES: dict[int, tuple[str, str]] = {
    DT_INVALID: ("INVALID", "INVALID"),
    DT_FLOAT: ("FLOAT", "float"),
    DT_DOUBLE: ("DOUBLE", "double"),
    DT_INT32: ("INT32", "int32"),
    DT_UINT8: ("UINT8", "uint8"),
    DT_INT16: ("INT16", "int16"),
    DT_INT8: ("INT8", "int8"),
    DT_STRING: ("STRING", "string"),
    DT_COMPLEX64: ("COMPLEX64", "complex64"),
    DT_INT64: ("INT64", "int64"),
    DT_BOOL: ("BOOL", "bool"),
    DT_QINT8: ("QINT8", "qint8"),
    DT_QUINT8: ("QUINT8", "quint8"),
    DT_QINT32: ("QINT32", "qint32"),
    DT_BFLOAT16: ("BFLOAT16", "bfloat16"),
    DT_QINT16: ("QINT16", "qint16"),
    DT_QUINT16: ("QUINT16", "quint16"),
    DT_UINT16: ("UINT16", "uint16"),
    DT_COMPLEX128: ("COMPLEX128", "complex128"),
    DT_HALF: ("HALF", "half"),
    DT_RESOURCE: ("RESOURCE", "resource"),
    DT_VARIANT: ("VARIANT", "variant"),
    DT_UINT32: ("UINT32", "uint32"),
    DT_UINT64: ("UINT64", "uint64"),
    DT_FLOAT8_E5M2: ("FLOAT8_E5M2", "float8_e5m2"),
    DT_FLOAT8_E4M3FN: ("FLOAT8_E4M3FN", "float8_e4m3fn"),
    DT_FLOAT8_E4M3FNUZ: ("FLOAT8_E4M3FNUZ", "float8_e4m3fnuz"),
    DT_FLOAT8_E4M3B11FNUZ: ("FLOAT8_E4M3B11FNUZ", "float8_e4m3b11fnuz"),
    DT_FLOAT8_E5M2FNUZ: ("FLOAT8_E5M2FNUZ", "float8_e5m2fnuz"),
    DT_INT4: ("INT4", "int4"),
    DT_UINT4: ("UINT4", "uint4"),
    DT_INT2: ("INT2", "int2"),
    DT_UINT2: ("UINT2", "uint2"),
    DT_FLOAT4_E2M1FN: ("FLOAT4_E2M1FN", "float4_e2m1fn"),
}

_PLAIN_NUMPY: dict[int, np.dtype] = {
    DT_FLOAT: np.dtype(np.float32),
    DT_DOUBLE: np.dtype(np.float64),
    DT_INT32: np.dtype(np.int32),
    DT_UINT8: np.dtype(np.uint8),
    DT_INT16: np.dtype(np.int16),
    DT_INT8: np.dtype(np.int8),
    DT_STRING: np.dtype(object),
    DT_COMPLEX64: np.dtype(np.complex64),
    DT_INT64: np.dtype(np.int64),
    DT_BOOL: np.dtype(np.bool_),
    # Quantized types carry plain integers on the wire; numpy has no distinct type for them.
    DT_QINT8: np.dtype(np.int8),
    DT_QUINT8: np.dtype(np.uint8),
    DT_QINT32: np.dtype(np.int32),
    DT_QINT16: np.dtype(np.int16),
    DT_QUINT16: np.dtype(np.uint16),
    DT_UINT16: np.dtype(np.uint16),
    DT_COMPLEX128: np.dtype(np.complex128),
    DT_HALF: np.dtype(np.float16),
    DT_UINT32: np.dtype(np.uint32),
    DT_UINT64: np.dtype(np.uint64),
}

# DataType -> attribute name in the ml_dtypes package (optional dependency).
_ML_DTYPES: dict[int, str] = {
    DT_BFLOAT16: "bfloat16",
    DT_FLOAT8_E5M2: "float8_e5m2",
    DT_FLOAT8_E4M3FN: "float8_e4m3fn",
    DT_FLOAT8_E4M3FNUZ: "float8_e4m3fnuz",
    DT_FLOAT8_E4M3B11FNUZ: "float8_e4m3b11fnuz",
    DT_FLOAT8_E5M2FNUZ: "float8_e5m2fnuz",
    DT_INT4: "int4",
    DT_UINT4: "uint4",
    DT_INT2: "int2",
    DT_UINT2: "uint2",
    DT_FLOAT4_E2M1FN: "float4_e2m1fn",
}

_BY_KIND_SIZE: dict[tuple[str, int], int] = {
    ("f", 2): DT_HALF,
    ("f", 4): DT_FLOAT,
    ("f", 8): DT_DOUBLE,
    ("i", 1): DT_INT8,
    ("i", 2): DT_INT16,
    ("i", 4): DT_INT32,
    ("i", 8): DT_INT64,
    ("u", 1): DT_UINT8,
    ("u", 2): DT_UINT16,
    ("u", 4): DT_UINT32,
    ("u", 8): DT_UINT64,
    ("c", 8): DT_COMPLEX64,
    ("c", 16): DT_COMPLEX128,
}


@cache
def _ml_dtypes() -> dict[int, np.dtype]:
    try:
        import ml_dtypes
    except ImportError:
        return {}
    return {
        dt: np.dtype(getattr(ml_dtypes, name)) for dt, name in _ML_DTYPES.items() if hasattr(ml_dtypes, name)
    }


def data_type_name(dtype: int) -> str:
    """The enum name: ``1 -> "DT_FLOAT"``, ``101 -> "DT_FLOAT_REF"``."""
    dtype = int(dtype)
    if dtype > _REF_OFFSET and dtype - _REF_OFFSET in _NAMES:
        return f"DT_{_NAMES[dtype - _REF_OFFSET][0]}_REF"
    if dtype in _NAMES:
        return f"DT_{_NAMES[dtype][0]}"
    return f"DT_UNKNOWN_{dtype}"


def tf_type_string(dtype: int) -> str:
    """TF's ``DataTypeString`` as used in error texts: ``1 -> "float"``, ``19 -> "half"``."""
    dtype = int(dtype)
    if dtype > _REF_OFFSET and dtype - _REF_OFFSET in _NAMES:
        return _NAMES[dtype - _REF_OFFSET][1] + "_ref"
    if dtype in _NAMES:
        return _NAMES[dtype][1]
    return f"unknown dtype enum ({dtype})"


def numpy_dtype(dtype: int) -> np.dtype:
    """numpy dtype that holds values of a ``DataType`` (DT_STRING -> object array of bytes).

    Raises ``Unimplemented`` for types numpy cannot hold (resource, variant, or ml_dtypes types
    when ml_dtypes is not installed).
    """
    dtype = int(dtype)
    base = dtype - _REF_OFFSET if dtype > _REF_OFFSET else dtype
    found = _PLAIN_NUMPY.get(base)
    if found is None:
        found = _ml_dtypes().get(base)
    if found is None:
        hint = " (install ml_dtypes)" if base in _ML_DTYPES else ""
        raise Unimplemented(f"Tensors of type {data_type_name(dtype)} are not supported{hint}")
    return found


def data_type_of(array: np.ndarray | np.dtype) -> int:
    """``DataType`` enum value for a numpy array or dtype (object/bytes/str -> DT_STRING)."""
    dt = array if isinstance(array, np.dtype) else np.asarray(array).dtype
    if dt.kind in "OSU":
        return DT_STRING
    if dt.kind == "b":
        return DT_BOOL
    found = _BY_KIND_SIZE.get((dt.kind, dt.itemsize)) if dt.kind in "fiuc" else None
    if found is not None and dt.type.__module__ == "numpy":
        return found
    for enum_value, ml in _ml_dtypes().items():
        if dt == ml:
            return enum_value
    if found is None:
        raise InvalidArgument(f"numpy dtype {dt} has no TensorFlow DataType")
    return found
