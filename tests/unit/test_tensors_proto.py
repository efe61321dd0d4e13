"""TensorProto codecs and dtype tables, cross-checked against TensorFlow's own implementation."""

from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from nbserve.errors import InvalidArgument, Unimplemented
from nbserve.protos.tensorflow.core.framework.tensor_pb2 import TensorProto
from nbserve.tensors import (
    data_type_name,
    data_type_of,
    decode_examples_request,
    ndarray_to_tensor_proto,
    numpy_dtype,
    parse_json,
    serialized_examples_from_input,
    tensor_proto_to_ndarray,
)

tf = pytest.importorskip("tensorflow")

ROUND_TRIP = [
    np.array([[1.5, -2.25], [np.inf, np.nan]], np.float32),
    np.array([1 / 3, -1e300, 5e-324], np.float64),
    np.array([-(2**31), 2**31 - 1, 0, -1], np.int32),
    np.array([0, 255, 7], np.uint8),
    np.array([-32768, 32767], np.int16),
    np.array([-128, 127, -1], np.int8),
    np.array([-(2**63), 2**63 - 1, -1], np.int64),
    np.array([0, 2**16 - 1], np.uint16),
    np.array([0, 2**32 - 1], np.uint32),
    np.array([0, 2**64 - 1], np.uint64),
    np.array([[True, False, True]]),
    np.array([1.5, -65504, np.inf], np.float16),
    np.array([1 + 2j, -3.5j], np.complex64),
    np.array([1 + 2j, 1e300 - 1j], np.complex128),
    np.array([b"a", b"", b"\x00\xff"], dtype=object),
    np.float32(3.25),
    np.zeros((2, 0, 3), np.float32),
]


def same(a: np.ndarray, b: np.ndarray) -> bool:
    if a.dtype == object or b.dtype == object:
        return a.shape == b.shape and a.tolist() == b.tolist()
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


def ours_from_tf(tf_proto) -> TensorProto:
    return TensorProto.FromString(tf_proto.SerializeToString())


def tf_from_ours(proto: TensorProto):
    return tf.make_tensor_proto(0).__class__.FromString(proto.SerializeToString())


@pytest.mark.parametrize("array", ROUND_TRIP, ids=lambda a: f"{a.dtype}{list(a.shape)}")
def test_round_trip_and_tensorflow_agrees(array):
    array = np.asarray(array)
    proto = ndarray_to_tensor_proto(array)
    assert proto.dtype == data_type_of(array)
    assert [d.size for d in proto.tensor_shape.dim] == list(array.shape)
    assert not proto.tensor_content  # typed *_val fields, as TF Serving writes responses
    assert same(tensor_proto_to_ndarray(proto, "x"), array)
    assert same(np.asarray(tf.make_ndarray(tf_from_ours(proto))), array)
    # TF's make_tensor_proto mostly uses tensor_content; decode that too.
    assert same(tensor_proto_to_ndarray(ours_from_tf(tf.make_tensor_proto(array)), "x"), array)
    content = ndarray_to_tensor_proto(array, use_tensor_content=True)
    assert same(tensor_proto_to_ndarray(content, "x"), array)


def test_bfloat16_uses_half_val():
    array = np.array([1.5, -2, 3e38], ml_dtypes.bfloat16)
    proto = ndarray_to_tensor_proto(array)
    assert proto.dtype == 14 and len(proto.half_val) == 3
    assert same(tensor_proto_to_ndarray(proto, "x"), array)
    assert np.array_equal(tf.make_ndarray(tf_from_ours(proto)), array)


def test_large_arrays_round_trip():
    rng = np.random.default_rng(0)
    arrays = [
        rng.standard_normal((1000, 1000)).astype(np.float32),
        rng.integers(-(2**31), 2**31, 10**6).astype(np.int32),
        rng.integers(-(2**63), 2**63 - 1, 10**6, dtype=np.int64),
    ]
    for array in arrays:
        proto = ndarray_to_tensor_proto(array)
        back = tensor_proto_to_ndarray(TensorProto.FromString(proto.SerializeToString()), "x")
        assert same(back, array)
    # The packed encodings written via numpy equal protobuf's own extend().
    mixed = [
        np.array([0, 1, -1, 127, 128, 300, -(2**31), 2**31 - 1] * 20, np.int32),
        np.array([0, 1, -1, 2**40, -(2**63), 2**63 - 1] * 20, np.int64),
        np.array([0, 1, 127, 128, 2**32 - 1] * 20, np.uint32),
        np.array([0, 1, 2**63, 2**64 - 1] * 20, np.uint64),
        np.array([-128, 127, 0, -1] * 20, np.int8),
        np.array([0, 255, 128] * 30, np.uint8),
        np.array([0, 65535, 300] * 30, np.uint16),
        np.array([True, False, True] * 30),
        np.array([1.5, -0.0, np.inf, 65504] * 20, np.float16),
        np.array([1.5, np.nan, -2] * 30, np.float64),
        np.array([1 + 2j, -3j] * 40, np.complex64),
    ]
    for array in mixed:
        proto = ndarray_to_tensor_proto(array)
        reference = TensorProto(dtype=proto.dtype, tensor_shape=proto.tensor_shape)
        name = {1: "float_val", 2: "double_val", 8: "scomplex_val", 9: "int64_val", 10: "bool_val"}.get(
            proto.dtype, {19: "half_val", 22: "uint32_val", 23: "uint64_val"}.get(proto.dtype, "int_val")
        )
        expected = array
        if proto.dtype == 19:
            expected = array.view(np.uint16).astype(np.int32)
        elif proto.dtype == 8:
            expected = array.view(np.float32)
        getattr(reference, name).extend(expected.tolist())
        assert proto.SerializeToString() == reference.SerializeToString(), array.dtype
        assert same(tensor_proto_to_ndarray(TensorProto.FromString(proto.SerializeToString()), "x"), array)
        assert same(np.asarray(tf.make_ndarray(tf_from_ours(proto))), array)


def tensor_proto(dtype: int, shape: list[int], **fields) -> TensorProto:
    proto = TensorProto(dtype=dtype, **fields)
    for size in shape:
        proto.tensor_shape.dim.add().size = size
    return proto


@pytest.mark.parametrize(
    "proto",
    [
        tensor_proto(1, [2, 3], float_val=[1.5, 2.5]),  # fewer values: the last one repeats
        tensor_proto(1, [2], float_val=[1, 2, 3, 4]),  # more values: extra ignored
        tensor_proto(9, [3]),  # no values: zeros
        tensor_proto(3, [4], int_val=[7]),
        tensor_proto(6, [3], int_val=[300, -129]),  # narrowing wraps
        tensor_proto(10, [3], bool_val=[True]),
        tensor_proto(19, [2], half_val=[15360]),
        tensor_proto(7, [3], string_val=[b"a", b"b"]),
        tensor_proto(7, [2]),
        tensor_proto(8, [2], scomplex_val=[1, 2, 3]),
        tensor_proto(1, [0], float_val=[1.0]),
        tensor_proto(1, [], float_val=[4.5]),
        TensorProto(dtype=1, tensor_shape={"unknown_rank": True, "dim": [{"size": 2}]}, float_val=[2.0]),
    ],
    ids=str,
)
def test_typed_field_rules_match_tensorflow_cpp(proto):
    # tf.io.parse_tensor runs C++ Tensor::FromProto.
    out_type = tf.dtypes.as_dtype(proto.dtype)
    expected = tf.io.parse_tensor(proto.SerializeToString(), out_type).numpy()
    assert same(tensor_proto_to_ndarray(proto, "x"), np.asarray(expected, dtype=numpy_dtype(proto.dtype)))


def test_string_tensor_content_matches_tensorflow():
    strings = [b"a", b"", b"x" * 200]
    encoded = bytes([1, 0, 200, 1]) + b"".join(strings)
    proto = tensor_proto(7, [3], tensor_content=encoded)
    assert tensor_proto_to_ndarray(proto, "x").tolist() == strings
    assert tf.io.parse_tensor(proto.SerializeToString(), tf.string).numpy().tolist() == strings
    assert (
        ndarray_to_tensor_proto(np.array(strings, object), use_tensor_content=True).tensor_content == encoded
    )


@pytest.mark.parametrize(
    "proto",
    [
        tensor_proto(1, [3], tensor_content=b"\0" * 8),
        tensor_proto(1, [-1], float_val=[1.0]),
        tensor_proto(0, [1]),
        tensor_proto(7, [2], tensor_content=b"\x05ab"),
    ],
    ids=str,
)
def test_unparsable_protos(proto):
    with pytest.raises(InvalidArgument, match="^tensor parsing error: my_input"):
        tensor_proto_to_ndarray(proto, "my_input")
    with pytest.raises(tf.errors.InvalidArgumentError):
        tf.io.parse_tensor(proto.SerializeToString(), tf.dtypes.as_dtype(proto.dtype or 1))


def test_tensor_content_is_read_zero_copy():
    array = np.arange(12, dtype=np.float32).reshape(3, 4)
    proto = tensor_proto(1, [3, 4], tensor_content=array.tobytes())
    back = tensor_proto_to_ndarray(proto, "x")
    assert same(back, array) and not back.flags.writeable
    with pytest.raises(Unimplemented, match="DT_VARIANT"):
        tensor_proto_to_ndarray(tensor_proto(21, [1]), "v")


def test_dtype_tables():
    assert (
        data_type_name(1) == "DT_FLOAT"
        and data_type_name(7) == "DT_STRING"
        and data_type_name(101) == "DT_FLOAT_REF"
    )
    assert numpy_dtype(7) == np.dtype(object) and numpy_dtype(19) == np.float16
    assert numpy_dtype(14) == np.dtype(ml_dtypes.bfloat16)
    for enum_value in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 17, 18, 19, 22, 23):
        assert data_type_of(numpy_dtype(enum_value)) == enum_value
        assert np.dtype(tf.dtypes.as_dtype(enum_value).as_numpy_dtype) == numpy_dtype(enum_value)
    assert data_type_of(np.array(["a"])) == 7 and data_type_of(np.array([b"a"])) == 7
    with pytest.raises(Unimplemented):
        numpy_dtype(20)
    with pytest.raises(InvalidArgument):
        data_type_of(np.array(["2020-01-01"], "datetime64[D]"))


def test_examples_parse_with_tf_train_example():
    body = b'{"context": {"c": [1, 2], "x": "ctx"}, "examples": [{"x": "a", "f": 6.0, "b": {"b64": "aGk="}}]}'
    _, (example,) = decode_examples_request(parse_json(body), "classify")
    feature = tf.train.Example.FromString(example).features.feature
    assert feature["x"].bytes_list.value == [b"a"]
    assert feature["c"].int64_list.value == [1, 2]
    assert feature["f"].float_list.value == [6.0]
    assert feature["b"].bytes_list.value == [b"hi"]
    parsed = tf.io.parse_single_example(
        example, {"x": tf.io.FixedLenFeature([], tf.string), "f": tf.io.FixedLenFeature([], tf.float32)}
    )
    assert parsed["x"].numpy() == b"a" and parsed["f"].numpy() == 6.0


def test_serialized_examples_from_grpc_input():
    from nbserve.protos.tensorflow_serving.apis.input_pb2 import Input

    message = Input()
    context = message.example_list_with_context.context.features.feature
    context["c"].int64_list.value.append(1)
    example = message.example_list_with_context.examples.add()
    example.features.feature["x"].float_list.value.append(2.5)
    (data,) = serialized_examples_from_input(message)
    feature = tf.train.Example.FromString(data).features.feature
    assert feature["c"].int64_list.value == [1] and feature["x"].float_list.value == [2.5]
    with pytest.raises(InvalidArgument, match="^Input is empty.$"):
        serialized_examples_from_input(Input())


def test_codecs_import_without_tensorflow():
    code = "import sys, nbserve.tensors; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
