"""JSON codecs: TF Serving's lenient parser, predict bodies (row/columnar), classify/regress bodies,
and response encoding, against the texts and numbers TF Serving produces."""

from __future__ import annotations

import base64
import json
import math
import re
import time

import numpy as np
import pytest

from nbserve.errors import InvalidArgument, ServingError, Unimplemented
from nbserve.signature import TensorInfo
from nbserve.tensors import (
    b64_decode,
    decode_examples_request,
    decode_predict_inputs,
    encode_classify_response,
    encode_predict_response,
    encode_regress_response,
    error_body,
    format_floats,
    json_debug_string,
    parse_json,
    request_signature_name,
)

DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_INT16, DT_INT8, DT_STRING = 1, 2, 3, 4, 5, 6, 7
DT_COMPLEX64, DT_INT64, DT_BOOL, DT_BFLOAT16, DT_UINT16 = 8, 9, 10, 14, 17
DT_HALF, DT_UINT32, DT_UINT64 = 19, 22, 23


def sig(**dtypes: int) -> dict[str, TensorInfo]:
    return {name: TensorInfo(f"{name}:0", dtype, None) for name, dtype in dtypes.items()}


def predict(body: bytes | str, inputs: dict[str, TensorInfo]) -> tuple[str, dict[str, np.ndarray]]:
    doc = parse_json(body)
    return decode_predict_inputs(doc, inputs, request_signature_name(doc))


def predict_error(body: bytes | str, inputs: dict[str, TensorInfo]) -> ServingError:
    with pytest.raises(ServingError) as info:
        predict(body, inputs)
    return info.value


def parse_error(body: bytes) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_json(body)
    return info.value.message


def number_tokens(body: bytes) -> list[str]:
    """Number texts of a response body, in order (string contents removed first)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', body.decode())
    return re.findall(r"-?Infinity|NaN|-?\d[\d.eE+-]*", text)


# ---------------------------------------------------------------------------------------------
# parse_json / request_signature_name
# ---------------------------------------------------------------------------------------------


def test_empty_and_whitespace_bodies():
    assert parse_error(b"") == "JSON Parse error: The document is empty"
    assert parse_error(b" \n\t ") == "JSON Parse error: The document is empty. at offset: 4"
    with pytest.raises(InvalidArgument) as info:
        parse_json(b"")
    assert info.value.http_status == 400 and info.value.code == "INVALID_ARGUMENT"


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{", "Missing a name for object member. at offset: 1"),
        (b'{"a":1,}', "Missing a name for object member. at offset: 7"),
        (b'{"a" 1}', "Missing a colon after a name of object member. at offset: 5"),
        (b'{"a":1 "b":2}', "Missing a comma or '}' after an object member. at offset: 7"),
        (b'{"a":[1 2]}', "Missing a comma or ']' after an array element. at offset: 8"),
        (b'{"a":[1,]}', "Invalid value. at offset: 8"),
        (b'{"a":tru}', "Invalid value. at offset: 8"),
        (b'{"a":-}', "Invalid value. at offset: 6"),
        (b'{"a":Infinit}', "Invalid value. at offset: 12"),
        (b'{"a":1.}', "Miss fraction part in number. at offset: 7"),
        (b'{"a":1e+}', "Miss exponent in number. at offset: 8"),
        (b'{"a":1e400}', "Number too big to be stored in double. at offset: 5"),
        (b'{"a":-' + b"9" * 400 + b"}", "Number too big to be stored in double. at offset: 5"),
        (b'{"a":"\\q"}', "Invalid escape character in string. at offset: 6"),
        (b'{"a":"\\u12x4"}', "Incorrect hex digit after \\u escape in string. at offset: 6"),
        (b'{"a":"\\ud800"}', "The surrogate pair in string is invalid. at offset: 6"),
        (b'{"a":"abc', "Missing a closing quotation mark in string. at offset: 9"),
        (b'{"a":"a\x01"}', "Invalid encoding in string. at offset: 7"),
        (b'{"a":\x001}', "Invalid value. at offset: 5"),
        (b"]", "The document is empty. at offset: 0"),
        (b"not json", "Invalid value. at offset: 1"),
        (b"xyz", "Invalid value. at offset: 0"),
    ],
)
def test_invalid_json_reports_rapidjson_reason_and_offset(body, message):
    assert parse_error(body) == "JSON Parse error: " + message


def test_lenient_number_tokens_and_trailing_bytes():
    doc = parse_json(b'{"a": [NaN, -NaN, Inf, -Inf, Infinity, -Infinity, 1, 1.5e3]} trailing ] garbage')
    a = doc["a"]
    assert math.isnan(a[0]) and math.isnan(a[1])
    assert a[2:6] == [math.inf, -math.inf, math.inf, -math.inf]
    assert a[6:] == [1, 1500.0] and type(a[6]) is int and type(a[7]) is float
    assert parse_json(b'{"a": 1} {"b": 2}') == {"a": 1}
    assert parse_json(b'  {"a": 1}\x00{') == {"a": 1}
    # Integers beyond 64 bits become doubles, like rapidjson.
    assert parse_json(b"[18446744073709551615, 18446744073709551616]") == [2**64 - 1, 2.0**64]


def test_long_numeric_runs_with_nonstandard_tokens():
    values = np.random.default_rng(5).standard_normal(500).tolist()
    body = ("[" + ", ".join(map(repr, values)) + ", Inf, -NaN, 7, -Infinity]").encode()
    parsed = parse_json(body)
    assert parsed[:500] == values and parsed[500] == math.inf and math.isnan(parsed[501])
    assert parsed[502:] == [7, -math.inf] and type(parsed[502]) is int
    prefix = b"[" + b"1, " * 40
    offset = len(prefix)
    assert (
        parse_error(prefix + b"1.]")
        == f"JSON Parse error: Miss fraction part in number. at offset: {offset + 2}"
    )
    assert parse_error(prefix + b"Infinit]") == f"JSON Parse error: Invalid value. at offset: {offset + 7}"
    assert parse_error(prefix + b"1e999]") == (
        f"JSON Parse error: Number too big to be stored in double. at offset: {offset}"
    )


def test_lenient_parser_agrees_with_strict_json():
    from nbserve.codecs.jsonparse import _RapidParser

    rng = np.random.default_rng(11)
    for _ in range(50):
        values = rng.standard_normal(rng.integers(1, 100)).tolist() + list(range(rng.integers(0, 50)))
        doc = {"x": values, "y": [[v, -v, str(v)] for v in values[:5]], "z": {"t": True, "n": None}}
        body = json.dumps(doc).encode()
        assert _RapidParser(body).parse() == doc == parse_json(body)


def test_strings_keep_raw_bytes_and_escapes():
    inputs = sig(s=DT_STRING)
    _, tensors = predict(b'{"inputs": ["\xff\xfe", "\\u00e9\\ud83d\\ude00", "tab\\t"]}', inputs)
    assert tensors["s"].tolist() == [b"\xff\xfe", "é😀".encode(), b"tab\t"]


def test_duplicate_keys_first_wins_in_lenient_parser():
    # NaN forces the rapidjson-compatible path, which keeps the first of duplicate keys.
    assert parse_json(b'{"a": 1, "a": 2, "n": NaN}')["a"] == 1
    assert parse_json(b'{"a": 1, "a": 2, "n": Inf}')["a"] == 1


def test_deeply_nested_well_formed_and_malformed():
    body = b'{"instances":[1], "nested":' + b"[" * 500000 + b"]" * 500000 + b"}"
    fmt, tensors = predict(body, sig(default=DT_INT32))
    assert fmt == "row" and tensors["default"].tolist() == [1]
    body = b'{"signature_name":' + b"[" * 100000 + b"]" * 100000 + b"}"
    with pytest.raises(InvalidArgument, match="key must be a string value"):
        request_signature_name(parse_json(body))
    body = b'{"inputs":' + b"[" * 100000 + b"]" * 100000 + b"}"
    with pytest.raises(InvalidArgument, match="at most 64"):
        predict(body, sig(x=DT_FLOAT))


def test_request_signature_name():
    assert request_signature_name({"instances": [1]}) == ""
    assert request_signature_name({"signature_name": "sig"}) == "sig"
    with pytest.raises(InvalidArgument) as info:
        request_signature_name(parse_json(b'{"signature_name": 1, "instances": [1]}'))
    assert info.value.message == (
        'JSON Value: {\n    "signature_name": 1,\n    "instances": [1]\n} not formatted correctly. '
        "'signature_name' key must be a string value."
    )
    with pytest.raises(InvalidArgument) as info:
        request_signature_name(parse_json(b"[1, 2.5]"))
    assert info.value.message == "JSON Value: [1, 2.5] Is not object"


def test_debug_string_is_truncated_like_tf_serving():
    text = json_debug_string({"instances": list(range(1000))})
    assert text.startswith('{\n    "instances": [0, 1, 2') and 256 <= len(text) < 270


# ---------------------------------------------------------------------------------------------
# Predict: row format
# ---------------------------------------------------------------------------------------------


def test_row_single_input():
    fmt, tensors = predict(b'{"instances": [[1,2],[3,4],[5,6]]}', sig(default=DT_INT32))
    assert fmt == "row"
    assert tensors["default"].dtype == np.int32 and tensors["default"].tolist() == [[1, 2], [3, 4], [5, 6]]


def test_row_signature_name_and_mixed_numbers_for_float():
    doc = parse_json(b'{"signature_name": "predict_images", "instances": [1, 2.0, 3, 4, 5.003, 0.007, 0.0]}')
    assert request_signature_name(doc) == "predict_images"
    fmt, tensors = decode_predict_inputs(doc, sig(x=DT_FLOAT), "predict_images")
    expected = np.array([1, 2.0, 3, 4, 5.003, 0.007, 0.0], dtype=np.float32)
    assert tensors["x"].dtype == np.float32 and np.array_equal(tensors["x"], expected)
    _, tensors = predict(b'{"instances": [1.0, 2, 0.662, 0]}', sig(x=DT_DOUBLE))
    assert tensors["x"].dtype == np.float64 and tensors["x"].tolist() == [1.0, 2.0, 0.662, 0.0]


def test_float_precision_overflow_and_underflow():
    inputs = sig(x=DT_FLOAT)
    for body in (b'{"instances": [1435774380]}', b'{"instances": [1435774380.0]}'):
        assert predict(body, inputs)[1]["x"][0] == np.float32(1435774380)
    big = predict(b'{"instances": [1.7976931348623157e308, -1.7976931348623157e308]}', inputs)[1]["x"]
    assert big.tolist() == [math.inf, -math.inf]
    tiny = predict(b'{"instances": [2.2250738585072014e-308, -2.2250738585072014e-308]}', inputs)[1]["x"]
    assert tiny.tolist() == [0.0, 0.0] and math.copysign(1, tiny[1]) == -1


def test_row_multiple_named_inputs_with_b64_and_strings():
    body = b"""{"instances": [
        {"images": [[1.5, 2.5]], "labels": "cat", "raw_bytes": {"b64": "aGVsbG8="}},
        {"images": [[3, 4]], "labels": "dog", "raw_bytes": {"b64": "d29ybGQ"}}]}"""
    inputs = sig(images=DT_FLOAT, labels=DT_STRING, raw_bytes=DT_STRING)
    fmt, tensors = predict(body, inputs)
    assert fmt == "row"
    assert tensors["images"].shape == (2, 1, 2) and tensors["images"].dtype == np.float32
    assert tensors["labels"].dtype == object and tensors["labels"].tolist() == [b"cat", b"dog"]
    assert tensors["raw_bytes"].tolist() == [b"hello", b"world"]


def test_row_scalars_bools_int64_and_narrow_ints():
    _, t = predict(b'{"instances": [true, false]}', sig(b=DT_BOOL))
    assert t["b"].dtype == np.bool_ and t["b"].tolist() == [True, False]
    _, t = predict(b'{"instances": [9223372036854775807, -9223372036854775808]}', sig(i=DT_INT64))
    assert t["i"].dtype == np.int64 and t["i"].tolist() == [2**63 - 1, -(2**63)]
    _, t = predict(b'{"instances": [300, -1]}', sig(u=DT_UINT8))  # no range check below int32, wraps
    assert t["u"].dtype == np.uint8 and t["u"].tolist() == [44, 255]
    _, t = predict(b'{"instances": [[]]}', sig(x=DT_FLOAT))
    assert t["x"].shape == (1, 0) and t["x"].dtype == np.float32


def test_row_b64_first_element_with_multiple_inputs_goes_to_first_input():
    _, tensors = predict(b'{"instances": [{"b64": "aGk="}]}', sig(a=DT_STRING, b=DT_STRING))
    assert list(tensors) == ["a"] and tensors["a"].tolist() == [b"hi"]


@pytest.mark.parametrize(
    "body, inputs, message",
    [
        (
            b'{"instances": [1, 2]}',
            sig(a=DT_FLOAT, b=DT_FLOAT),
            "instances is a plain list, but expecting list of objects as multiple input tensors required "
            "as per tensorinfo_map (send objects keyed by: a, b)",
        ),
        (
            b'{"instances": [{"a": 1, "b": 2}, [1]]}',
            sig(a=DT_FLOAT, b=DT_FLOAT),
            "Expecting object but got list at item 1 of input list",
        ),
        (
            b'{"instances": [[1], {"a": 1}]}',
            sig(a=DT_FLOAT),
            "Expecting value/list but got object at item 1 of input list",
        ),
        (
            b'{"instances": [{"a": 1}]}',
            sig(a=DT_FLOAT, b=DT_FLOAT),
            "Failed to process element: 0 of 'instances' list. JSON object: {\n    \"a\": 1\n} "
            "keys must be equal to: a,b",
        ),
        (
            b'{"instances": [{"a": 1, "c": 2}]}',
            sig(a=DT_FLOAT, b=DT_FLOAT),
            "Failed to process element: 0 key: c of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON object: does not have named input: c (the signature's inputs are: a, b)",
        ),
        (
            b'{"instances": [[1, 2], [3]]}',
            sig(a=DT_FLOAT),
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting tensor size: 2 but got: 1",
        ),
        (
            b'{"instances": [[1, 2], [[3, 4]]]}',
            sig(a=DT_FLOAT),
            "Failed to process element: 1 of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting shape [2] but got: [1,2]",
        ),
        (
            b'{"instances": [{"a": [1, 2], "b": 1}, {"a": [[1, 2]], "b": 2}]}',
            sig(a=DT_FLOAT, b=DT_FLOAT),
            "Failed to process element: 1 key: a of 'instances' list. Error: INVALID_ARGUMENT: "
            "Expecting shape [2] but got: [1,2]",
        ),
        (
            b'{"instances": [1.5]}',
            sig(a=DT_INT32),
            "Failed to process element: 0 of 'instances' list. Error: INVALID_ARGUMENT: "
            "JSON Value: 1.5 Type: Number is not of expected type: int32",
        ),
        (
            b'{"instances": [1]}',
            sig(a=DT_HALF),
            "Failed to process element: 0 of 'instances' list. Error: UNIMPLEMENTED: "
            "Conversion of JSON Value: 1 to type: half",
        ),
    ],
)
def test_row_errors(body, inputs, message):
    err = predict_error(body, inputs)
    assert isinstance(err, InvalidArgument) and err.http_status == 400
    assert err.message.startswith(message)


# ---------------------------------------------------------------------------------------------
# Predict: columnar format
# ---------------------------------------------------------------------------------------------


def test_columnar_single_and_multiple_inputs():
    fmt, t = predict(b'{"inputs": [[1, 2], [3, 4]]}', sig(x=DT_FLOAT))
    assert fmt == "columnar" and t["x"].shape == (2, 2)
    fmt, t = predict(
        b'{"inputs": {"a": [1, 2, 3], "b": [[true]], "extra": "ignored"}}', sig(a=DT_INT64, b=DT_BOOL)
    )
    assert t["a"].tolist() == [1, 2, 3] and t["a"].dtype == np.int64
    assert t["b"].tolist() == [[True]] and set(t) == {"a", "b"}


def test_columnar_scalars_empty_and_b64():
    _, t = predict(b'{"inputs": 5}', sig(x=DT_FLOAT))
    assert t["x"].shape == () and t["x"] == 5.0
    _, t = predict(b'{"inputs": []}', sig(x=DT_FLOAT))
    assert t["x"].shape == (0,) and t["x"].dtype == np.float32
    _, t = predict(b'{"inputs": []}', sig(x=DT_HALF))  # no value, so no conversion error
    assert t["x"].shape == (0,) and t["x"].dtype == np.float16
    _, t = predict(b'{"inputs": {"b64": "aGk="}}', sig(x=DT_STRING))
    assert t["x"].shape == () and t["x"].item() == b"hi"
    _, t = predict(b'{"inputs": {"x": [{"b64": "YQ=="}, "b"]}}', sig(x=DT_STRING))
    assert t["x"].tolist() == [b"a", b"b"]


@pytest.mark.parametrize(
    "body, inputs, message",
    [
        (
            b'{"inputs": [1]}',
            sig(a=DT_FLOAT, b=DT_FLOAT),
            "inputs is a plain value/list, but expecting an object as multiple input tensors required "
            "as per tensorinfo_map",
        ),
        (b'{"inputs": {"a": 1}}', sig(a=DT_FLOAT, b=DT_FLOAT), "Missing named input: b in 'inputs' object."),
        (
            b'{"inputs": [[1, 2], [3]]}',
            sig(a=DT_FLOAT),
            "Encountered list at unexpected size: 1 at level: 1 expected size: 2",
        ),
        (b'{"inputs": [[1, [2]]]}', sig(a=DT_FLOAT), "Encountered list at unexpected level: 2 expected < 2"),
        (
            b'{"inputs": [[1, 2], 3]}',
            sig(a=DT_FLOAT),
            "JSON Value: 3 found at incorrect level: 2 in the JSON DOM. Expected at level: 2",
        ),
        (
            b'{"inputs": [null]}',
            sig(a=DT_FLOAT),
            "JSON Value: null Type: Null is not of expected type: float",
        ),
        (
            b'{"inputs": [false]}',
            sig(a=DT_FLOAT),
            "JSON Value: false Type: False is not of expected type: float",
        ),
        (
            b'{"inputs": [true]}',
            sig(a=DT_INT32),
            "JSON Value: true Type: True is not of expected type: int32",
        ),
        (
            b'{"inputs": ["1"]}',
            sig(a=DT_DOUBLE),
            'JSON Value: "1" Type: String is not of expected type: double',
        ),
        (b'{"inputs": [1]}', sig(a=DT_STRING), "JSON Value: 1 Type: Number is not of expected type: string"),
        (b'{"inputs": [1]}', sig(a=DT_BOOL), "JSON Value: 1 Type: Number is not of expected type: bool"),
        (
            b'{"inputs": [{"k": 1}]}',
            sig(a=DT_FLOAT),
            'JSON Value: {\n    "k": 1\n} Type: Object is not of expected type: float',
        ),
        (
            b'{"inputs": [2147483648]}',
            sig(a=DT_INT32),
            "JSON Value: 2147483648 Type: Number is not of expected type: int32",
        ),
        (
            b'{"inputs": [1.0]}',
            sig(a=DT_INT64),
            "JSON Value: 1.0 Type: Number is not of expected type: int64",
        ),
        (
            b'{"inputs": [-1]}',
            sig(a=DT_UINT32),
            "JSON Value: -1 Type: Number is not of expected type: uint32",
        ),
        (
            b'{"inputs": [-1]}',
            sig(a=DT_UINT64),
            "JSON Value: -1 Type: Number is not of expected type: uint64",
        ),
        (b'{"inputs": [{"b64": "!!!"}]}', sig(a=DT_STRING), "Unable to base64 decode"),
        (
            b'{"inputs": [{"b64": "YQ==", "x": 1}]}',
            sig(a=DT_STRING),
            'JSON Value: {\n    "b64": "YQ==",\n    "x": 1\n} not formatted correctly for base64 data',
        ),
    ],
)
def test_columnar_errors(body, inputs, message):
    err = predict_error(body, inputs)
    assert isinstance(err, InvalidArgument) and err.http_status == 400
    assert err.message.startswith(message)


@pytest.mark.parametrize(
    "dtype, name",
    [(DT_HALF, "half"), (DT_BFLOAT16, "bfloat16"), (DT_UINT16, "uint16"), (DT_COMPLEX64, "complex64")],
)
def test_columnar_unconvertible_dtype_is_unimplemented(dtype, name):
    err = predict_error(b'{"inputs": [1.5]}', sig(a=dtype))
    assert isinstance(err, Unimplemented) and err.http_status == 501
    assert err.message.startswith(f"Conversion of JSON Value: 1.5 to type: {name}")


@pytest.mark.parametrize(
    "body, inputs, signature, message",
    [
        (b'{"inputs": 1}', {}, "", "Failed to get input map for signature: DEFAULT"),
        (b'{"inputs": 1}', {}, "mine", "Failed to get input map for signature: mine"),
        (
            b'{"inputs": [1], "instances": [1]}',
            sig(a=DT_FLOAT),
            "",
            'JSON Value: {\n    "inputs": [1],\n    "instances": [1]\n} '
            "Not formatted correctly expecting only one of 'inputs' or 'instances' keys to exist ",
        ),
        (b'{"x": 1}', sig(a=DT_FLOAT), "", "Missing 'inputs' or 'instances' key"),
        (
            b'{"instances": {"a": 1}}',
            sig(a=DT_FLOAT),
            "",
            'JSON Value: {\n    "instances": {\n        "a": 1\n    }\n} '
            "Expecting 'instances' to be an list/array",
        ),
        (
            b'{"instances": []}',
            sig(a=DT_FLOAT),
            "",
            "JSON Value: {\n    \"instances\": []\n} No values in 'instances' array",
        ),
    ],
)
def test_request_shape_errors(body, inputs, signature, message):
    with pytest.raises(InvalidArgument) as info:
        decode_predict_inputs(parse_json(body), inputs, signature)
    assert info.value.message == message


def test_b64_decoding_rules():
    assert b64_decode("aGk=") == b"hi" and b64_decode("aGk") == b"hi"
    assert b64_decode("aG\nk =") == b"hi" and b64_decode("") == b""
    assert b64_decode("+/+/") == base64.b64decode("+/+/")
    for bad in ("a", "aGk==", "aG=k", "aGk=x", "-_-_", "aGk\x00"):
        with pytest.raises(InvalidArgument, match="^Unable to base64 decode .*URL-safe"):
            b64_decode(bad)


def test_big_float_body_decodes_exactly():
    rng = np.random.default_rng(0)
    values = rng.standard_normal((2000, 50)).astype(np.float32)
    body = ('{"instances": ' + str(values.tolist()) + "}").encode()
    _, tensors = predict(body, sig(x=DT_FLOAT))
    assert np.array_equal(tensors["x"], values)


# ---------------------------------------------------------------------------------------------
# Responses
# ---------------------------------------------------------------------------------------------


def encode(fmt: str, **outputs: np.ndarray) -> bytes:
    return encode_predict_response(fmt, outputs, {})


def test_float_formatting_examples():
    body = encode("columnar", y=np.array([9000000, 999999, 555557.5, 0.00003, -0.0, 3, 0.1], np.float32))
    assert number_tokens(body) == ["9e+06", "999999.0", "555557.5", "3e-05", "-0.0", "3.0", "0.1"]
    assert number_tokens(encode("columnar", y=np.array([1 / 3]))) == ["0.33333333333333331"]
    assert number_tokens(encode("columnar", y=np.array([1 / 3], np.float32))) == ["0.333333343"]
    body = encode("row", y=np.array([np.nan, np.inf, -np.inf], np.float32))
    assert number_tokens(body) == ["NaN", "Infinity", "-Infinity"]


def _reference_float_text(value: float, single: bool) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    text = "%g" % value
    same = np.float32(float(text)) == np.float32(value) if single else float(text) == value
    if not same:
        text = ("%.9g" if single else "%.17g") % value
    return text if "." in text or "e" in text else text + ".0"


@pytest.mark.parametrize("single", [True, False])
def test_vectorized_float_formatting_matches_per_value_rule(single):
    rng = np.random.default_rng(7)
    parts = [
        rng.standard_normal(3000),
        rng.standard_normal(3000) * 1e7,
        np.round(rng.standard_normal(3000) * 100, 3),
        rng.integers(-(10**9), 10**9, 3000).astype(float),
        np.exp(rng.uniform(-80, 80, 3000)),
        np.array(
            [0.0, -0.0, 1e6, 1e9, 1e17, 1e-45, 5e-324, 16777217.0, 2.0**53 + 2, np.nan, np.inf, -np.inf]
        ),
    ]
    with np.errstate(all="ignore"):
        values = np.concatenate(parts).astype(np.float32 if single else np.float64)
    got = format_floats(values, single)
    assert got == [_reference_float_text(float(v), single) for v in values]


def test_row_single_output_layout():
    body = encode("row", y=np.array([[1, 2.5], [3, 4]], np.float32))
    assert body == b'{\n    "predictions": [[1.0, 2.5], [3.0, 4.0]\n    ]\n}'
    assert parse_json(encode("row", y=np.array([1, 2], np.int32))) == {"predictions": [1, 2]}
    assert encode("row", y=np.zeros((0, 3), np.float32)) == b'{\n    "predictions": []\n}'


def test_row_multiple_outputs_are_objects():
    outputs = {
        "scores": np.array([[0.5, 0.25], [1, 0]], np.float32),
        "ids": np.array([2**62 + 1, -3], np.int64),
        "names": np.array([b"a", '\u00e9"x'], dtype=object),
        "img_bytes": np.array([b"\x00\xff", b""], dtype=object),
    }
    infos = sig(ids=DT_INT64, scores=DT_FLOAT)
    doc = parse_json(encode_predict_response("row", outputs, infos))
    assert doc == {
        "predictions": [
            {"ids": 2**62 + 1, "scores": [0.5, 0.25], "names": "a", "img_bytes": {"b64": "AP8="}},
            {"ids": -3, "scores": [1.0, 0.0], "names": 'é"x', "img_bytes": {"b64": ""}},
        ]
    }


def test_columnar_outputs():
    assert parse_json(encode("columnar", y=np.float64(2.5))) == {"outputs": 2.5}
    doc = parse_json(
        encode(
            "columnar",
            a=np.array([[True, False]]),
            u=np.array([2**64 - 1], np.uint64),
            s=np.array(3, np.int8),
        )
    )
    assert doc == {"outputs": {"a": [[True, False]], "u": [2**64 - 1], "s": 3}}
    # No batch agreement needed in columnar format.
    assert parse_json(encode("columnar", a=np.zeros(2), b=np.zeros(3)))["outputs"]["b"] == [0.0, 0.0, 0.0]


def test_response_errors():
    with pytest.raises(InvalidArgument, match="^Tensor name: y has no shape information "):
        encode("row", y=np.float32(1))
    with pytest.raises(InvalidArgument, match="^Tensor name: b has inconsistent batch size: 3 expecting: 2"):
        encode("row", a=np.zeros(2), b=np.zeros(3))
    with pytest.raises(InvalidArgument, match="^Failed to write JSON value for tensor type: half"):
        encode("columnar", y=np.zeros(2, np.float16))
    with pytest.raises(InvalidArgument, match="^Failed to write JSON value for tensor type: complex64"):
        encode("row", y=np.zeros(2, np.complex64))
    with pytest.raises(InvalidArgument, match="^Cannot convert empty tensor map to JSON$"):
        encode("row")
    assert parse_json(encode("columnar", y=np.zeros((0,), np.float16))) == {"outputs": []}


def test_big_float_response_is_fast_and_exact():
    values = np.random.default_rng(3).standard_normal((1000, 10)).astype(np.float32)
    start = time.perf_counter()
    body = encode("row", y=values)
    elapsed = time.perf_counter() - start
    assert np.array_equal(np.array(parse_json(body)["predictions"], np.float32), values)
    assert elapsed < 1.0


def test_classify_regress_and_error_bodies():
    body = encode_classify_response([[("a", 0.5), (b"b", 0.25)], [("", 1 / 3)]])
    assert body == b'{\n    "results": [[["a", 0.5], ["b", 0.25]], [["", 0.333333343]]\n    ]\n}'
    assert encode_regress_response([1.0, 0.1, float("nan")]) == b'{\n    "results": [1.0, 0.1, NaN]\n}'
    with pytest.raises(InvalidArgument, match="^Cannot convert empty ClassificationResults to JSON$"):
        encode_classify_response([])
    with pytest.raises(InvalidArgument, match="^Cannot convert empty RegressionResults to JSON$"):
        encode_regress_response([])
    assert error_body('bad "x"\n\x01') == b'{\n    "error": "bad \\"x\\"\\n\\u0001"\n}'
    assert parse_json(error_body("é")) == {"error": "é"}


# ---------------------------------------------------------------------------------------------
# Classify / regress requests
# ---------------------------------------------------------------------------------------------


def parse_example(data: bytes):
    # Wire-compatible with tf.train.Example (test_tensors_proto.py cross-checks with TensorFlow itself).
    from nbserve.protos.tensorflow.core.example.example_pb2 import Example

    return Example.FromString(data)


def test_examples_feature_kinds():
    body = b"""{"signature_name": "classify_x_to_y", "examples": [
        {"s": "text", "f": 6.0, "i": 6, "b": true, "bl": {"b64": "aGk="}, "fl": [1.5, NaN], "il": [1, false],
         "empty": [], "big": 18446744073709551616}]}"""
    signature, examples = decode_examples_request(parse_json(body), "classify")
    assert signature == "classify_x_to_y" and len(examples) == 1
    feature = parse_example(examples[0]).features.feature
    assert feature["s"].bytes_list.value == [b"text"]
    assert feature["f"].float_list.value == [6.0]
    assert feature["i"].int64_list.value == [6]
    assert feature["b"].int64_list.value == [1]
    assert feature["bl"].bytes_list.value == [b"hi"]
    assert feature["fl"].float_list.value[0] == 1.5 and math.isnan(feature["fl"].float_list.value[1])
    assert feature["il"].int64_list.value == [1, 0]
    assert feature["empty"].WhichOneof("kind") is None and "empty" in feature
    assert feature["big"].float_list.value == [2.0**64]


def test_examples_context_is_merged_example_wins():
    body = b'{"context": {"c": 1, "x": "ctx"}, "examples": [{"x": "a"}, {"y": 2.5}]}'
    signature, examples = decode_examples_request(parse_json(body), "regress")
    assert signature == ""
    first, second = (parse_example(e).features.feature for e in examples)
    assert first["x"].bytes_list.value == [b"a"] and first["c"].int64_list.value == [1]
    assert second["x"].bytes_list.value == [b"ctx"] and second["y"].float_list.value == [2.5]


@pytest.mark.parametrize(
    "body, message",
    [
        (
            b'{"instances": [1]}',
            'JSON Value: {\n    "instances": [1]\n} '
            "When method is classify, key 'examples' is expected and was not found",
        ),
        (
            b'{"examples": 1}',
            "JSON Value: {\n    \"examples\": 1\n} Expecting 'examples' value to be an list/array",
        ),
        (b'{"examples": []}', "JSON Value: {\n    \"examples\": []\n} 'examples' value is an empty array"),
        (b'{"examples": [1]}', "Example must be JSON object but got JSON Number"),
        (b'{"examples": [[]]}', "Example must be JSON object but got JSON Array"),
        (b'{"context": "x", "examples": [{}]}', "Example must be JSON object but got JSON String"),
        (b'{"examples": [{"names": null}]}', "Feature: names has element with unexpected JSON type: Null"),
        (
            b'{"examples": [{"names": [1, [2]]}]}',
            "Feature: names has element with unexpected JSON type: Array",
        ),
        (
            b'{"examples": [{"names": {"a": 1}}]}',
            "Feature: names has element with unexpected JSON type: Object",
        ),
        (
            b'{"examples": [{"names": [1, 2.0]}]}',
            "Unexpected element type in feature: names expecting type: int64",
        ),
        (
            b'{"examples": [{"names": [1.0, 2]}]}',
            "Unexpected element type in feature: names expecting type: float",
        ),
        (
            b'{"examples": [{"names": ["a", true]}]}',
            "Unexpected element type in feature: names expecting type: bytes",
        ),
        (
            b'{"examples": [{"names": 18446744073709551615}]}',
            "Feature: names has uint64_t element. Only int64_t is supported.",
        ),
        (b'{"examples": [{"names": {"b64": "*"}}]}', "Unable to base64 decode"),
        (
            b'{"signature_name": ["x"], "examples": [{}]}',
            'JSON Value: {\n    "signature_name": ["x"],\n    "examples": [{}]\n} not formatted correctly. '
            "'signature_name' key must be a string value.",
        ),
        (b"[1]", "JSON Value: [1] Is not object"),
    ],
)
def test_examples_errors(body, message):
    with pytest.raises(InvalidArgument) as info:
        decode_examples_request(parse_json(body), "classify")
    assert info.value.message.startswith(message)
