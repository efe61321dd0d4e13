"""Property tests of the codecs (hypothesis): every JSON-able dtype survives numpy -> TF Serving JSON
-> numpy in row and columnar form, and every dtype survives numpy -> TensorProto -> numpy through
typed fields and tensor_content, agreeing with TensorFlow's own make_tensor_proto / make_ndarray."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nbserve.protos.tensorflow.core.framework.tensor_pb2 import TensorProto
from nbserve.signature import TensorInfo
from nbserve.tensors import (
    data_type_of,
    decode_predict_inputs,
    encode_predict_response,
    ndarray_to_tensor_proto,
    parse_json,
    tensor_proto_to_ndarray,
)

tf = pytest.importorskip("tensorflow")

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])

JSON_DTYPES = [
    np.float32,
    np.float64,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint32,
    np.uint64,
    np.bool_,
    object,  # DT_STRING: bytes
]
# uint16, half and bfloat16 have no JSON form in TF Serving; TensorProto carries them all.
PROTO_DTYPES = [*JSON_DTYPES, np.uint16, np.float16, np.complex64, np.complex128, ml_dtypes.bfloat16]


def arrays(dtype: object, min_dims: int = 0, min_side: int = 1) -> st.SearchStrategy[np.ndarray]:
    shape = hnp.array_shapes(min_dims=min_dims, max_dims=3, min_side=min_side, max_side=4)
    if dtype is object:
        return hnp.arrays(object, shape, elements=st.binary(max_size=6))
    if dtype is ml_dtypes.bfloat16:
        return hnp.arrays(np.float32, shape).map(lambda a: a.astype(ml_dtypes.bfloat16))
    return hnp.arrays(np.dtype(dtype), shape)


def info(array: np.ndarray) -> TensorInfo:
    return TensorInfo(name="t:0", dtype=data_type_of(array), shape=array.shape)


def assert_same(expected: np.ndarray, got: np.ndarray) -> None:
    """Equal dtype, shape and values; NaN equals NaN and the sign of zeros and infinities counts."""
    assert got.shape == expected.shape
    if expected.dtype == object:
        assert got.dtype == object and got.tolist() == expected.tolist()
        return
    assert got.dtype == expected.dtype
    if expected.dtype.kind in "fc" or expected.dtype == ml_dtypes.bfloat16:
        wide_e, wide_g = expected.astype(np.complex128), got.astype(np.complex128)
        for part in (np.real, np.imag):
            e, g = part(wide_e), part(wide_g)
            nan = np.isnan(e)
            assert np.array_equal(nan, np.isnan(g))
            assert np.array_equal(e[~nan], g[~nan]) and np.array_equal(
                np.signbit(e[~nan]), np.signbit(g[~nan])
            )
    else:
        assert np.array_equal(expected, got)


# -- JSON ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", JSON_DTYPES, ids=lambda d: np.dtype(d).name)
@FAST
@given(data=st.data())
def test_json_columnar_round_trip(dtype: object, data: st.DataObject) -> None:
    array = data.draw(arrays(dtype))
    name = data.draw(st.sampled_from(["y", "y_bytes"])) if dtype is object else "y"
    body = encode_predict_response("columnar", {name: array}, {name: info(array)})
    value = parse_json(body)["outputs"]
    fmt, decoded = decode_predict_inputs({"inputs": value}, {name: info(array)}, "")
    assert fmt == "columnar"
    assert_same(array, decoded[name])


@pytest.mark.parametrize("dtype", JSON_DTYPES, ids=lambda d: np.dtype(d).name)
@FAST
@given(data=st.data())
def test_json_row_round_trip_with_two_outputs(dtype: object, data: st.DataObject) -> None:
    first = data.draw(arrays(dtype, min_dims=1))
    trailing = data.draw(hnp.array_shapes(min_dims=0, max_dims=2, min_side=1, max_side=3))
    second = data.draw(hnp.arrays(np.float32, (first.shape[0], *trailing)))
    outputs = {"a_bytes" if dtype is object else "a": first, "b": second}
    infos = {name: info(array) for name, array in outputs.items()}
    predictions = parse_json(encode_predict_response("row", outputs, infos))["predictions"]
    assert len(predictions) == first.shape[0]
    fmt, decoded = decode_predict_inputs({"instances": predictions}, infos, "")
    assert fmt == "row"
    for name, array in outputs.items():
        assert_same(array, decoded[name])


@FAST
@given(array=arrays(np.float64, min_dims=1))
def test_json_float_input_rounds_like_tensorflow(array: np.ndarray) -> None:
    """A double in the body becomes the DT_FLOAT TF would make of it (overflow gives infinity)."""
    body = encode_predict_response("columnar", {"x": array}, {"x": info(array)})
    doc = parse_json(body.replace(b'"outputs"', b'"inputs"'))
    _, decoded = decode_predict_inputs(doc, {"x": TensorInfo("x:0", 1, array.shape)}, "")
    with np.errstate(over="ignore"):
        expected = tf.constant(array).numpy().astype(np.float32)
    assert_same(expected, decoded["x"])


# -- TensorProto -----------------------------------------------------------------------------------


def tf_proto(proto: TensorProto) -> object:
    return tf.make_tensor_proto(0).__class__.FromString(proto.SerializeToString())


@pytest.mark.parametrize("dtype", PROTO_DTYPES, ids=lambda d: np.dtype(d).name)
@FAST
@given(data=st.data())
def test_tensor_proto_round_trip_and_tensorflow_agrees(dtype: object, data: st.DataObject) -> None:
    array = data.draw(arrays(dtype, min_side=0))
    content = data.draw(st.booleans())
    proto = ndarray_to_tensor_proto(array, use_tensor_content=content)
    assert bool(proto.tensor_content) == (content and array.size > 0)
    assert_same(array, tensor_proto_to_ndarray(proto, "t"))
    # TensorFlow reads what we write (its Python reader has no string tensor_content) ...
    if not (dtype is object and content):
        from_tf = tf.make_ndarray(tf_proto(proto))
        assert_same(array, from_tf.astype(object) if dtype is object else from_tf)
    # ... and we read what TensorFlow writes (tensor_content for numbers, string_val for bytes).
    theirs = TensorProto.FromString(tf.make_tensor_proto(array).SerializeToString())
    assert_same(array, tensor_proto_to_ndarray(theirs, "t"))


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float16, object], ids=lambda d: np.dtype(d).name)
@FAST
@given(data=st.data())
def test_short_typed_fields_repeat_the_last_value_like_tensorflow(dtype: object, data: st.DataObject) -> None:
    """Fewer typed values than elements: the last one repeats (TF's Tensor::FromProto)."""
    full = data.draw(arrays(dtype, min_dims=1))
    proto = ndarray_to_tensor_proto(full.reshape(-1)[: data.draw(st.integers(1, full.size))])
    del proto.tensor_shape.dim[:]
    for size in full.shape:
        proto.tensor_shape.dim.add().size = size
    ours = tensor_proto_to_ndarray(proto, "t")
    theirs = tf.make_ndarray(tf_proto(proto))
    assert_same(theirs.astype(object) if dtype is object else theirs, ours)
