"""SavedModelServable: TF Serving's signature metadata and running real SavedModels."""

from __future__ import annotations

import os
import sys
import threading

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

import model_factory as mf  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2  # noqa: E402

from nbserve.errors import DataLoss, InvalidArgument, NotFound, ServingError  # noqa: E402
from nbserve.servables import SavedModelServable, Servable  # noqa: E402
from nbserve.signature import PREDICT_METHOD, TensorInfo  # noqa: E402

DT_INVALID, DT_FLOAT, DT_INT32, DT_STRING, DT_INT64 = 0, 1, 3, 7, 9


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("servables")
    keras_path, keras_model = mf.write_keras_model(str(root / "keras"))
    return {
        "affine": mf.write_affine(str(root / "affine")),
        "keras": keras_path,
        "keras_model": keras_model,
        "image": mf.write_image_model(str(root / "image")),
        "v1": mf.write_v1_model(str(root / "v1")),
    }


@pytest.fixture(scope="module")
def affine(paths: dict[str, str]) -> SavedModelServable:
    return SavedModelServable.load("affine", 1, paths["affine"])


def saved_signature_defs(path: str) -> dict[str, meta_graph_pb2.SignatureDef]:
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    return dict(saved_model.meta_graphs[0].signature_def)


# ---- metadata ----------------------------------------------------------------------------------


def test_signature_metadata(affine: SavedModelServable) -> None:
    assert isinstance(affine, Servable)
    assert (affine.name, affine.version) == ("affine", 1)
    # TF Serving lists every SignatureDef of the MetaGraph, the init op included.
    assert set(affine.signatures) == {"__saved_model_init_op", "serving_default", "two_inputs"}
    sig = affine.signatures["serving_default"]
    assert sig.name == "serving_default"
    assert sig.method_name == PREDICT_METHOD
    assert sig.inputs == {"x": TensorInfo("serving_default_x:0", DT_FLOAT, (-1, 1))}
    assert list(sig.outputs) == ["y"]
    assert (sig.outputs["y"].dtype, sig.outputs["y"].shape) == (DT_FLOAT, (-1, 1))
    two = affine.signatures["two_inputs"]
    assert two.inputs["a"] == TensorInfo("two_inputs_a:0", DT_FLOAT, (-1,))
    assert two.inputs["b"] == TensorInfo("two_inputs_b:0", DT_INT64, (-1,))
    assert {k: v.dtype for k, v in two.outputs.items()} == {"sum": DT_FLOAT, "b_twice": DT_INT64}
    init = affine.signatures["__saved_model_init_op"]
    assert init.inputs == {} and init.method_name == ""
    assert init.outputs["__saved_model_init_op"] == TensorInfo("NoOp", DT_INVALID, None)  # unknown rank


def test_definition_is_the_saved_signature_def(affine: SavedModelServable, paths: dict[str, str]) -> None:
    expected = saved_signature_defs(paths["affine"])
    assert set(expected) == set(affine.signatures)
    for key, sig in affine.signatures.items():
        parsed = meta_graph_pb2.SignatureDef.FromString(sig.definition)
        assert parsed == expected[key]


def test_definition_parses_with_nbserve_protos(affine: SavedModelServable) -> None:
    ours = pytest.importorskip("nbserve.protos.tensorflow.core.protobuf.meta_graph_pb2")
    parsed = ours.SignatureDef.FromString(affine.signatures["serving_default"].definition)
    assert parsed.method_name == PREDICT_METHOD
    assert parsed.inputs["x"].name == "serving_default_x:0"
    assert [d.size for d in parsed.inputs["x"].tensor_shape.dim] == [-1, 1]


def test_keras_export_metadata_and_run(paths: dict) -> None:
    servable = SavedModelServable.load("keras", 3, paths["keras"])
    assert {"serve", "serving_default"} <= set(servable.signatures)
    sig = servable.signatures["serving_default"]
    assert sig.inputs == {"features": TensorInfo("serving_default_features:0", DT_FLOAT, (-1, 3))}
    assert sig.outputs["output_0"].shape == (-1, 2)
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    out = servable.run(sig, {"features": x}, ["output_0"])
    np.testing.assert_allclose(out["output_0"], np.asarray(paths["keras_model"](x)), rtol=1e-6)


def test_tf1_saved_model(paths: dict[str, str]) -> None:
    servable = SavedModelServable.load("v1", 123, paths["v1"])
    sig = servable.signatures["serving_default"]
    assert sig.inputs == {"x": TensorInfo("x:0", DT_FLOAT, (-1, 1))}
    assert sig.outputs == {"y": TensorInfo("y:0", DT_FLOAT, (-1, 1))}
    out = servable.run(sig, {"x": np.array([[1.0], [2.0]], np.float32)}, ["y"])
    np.testing.assert_allclose(out["y"], [[2.5], [3.0]])


# ---- running -----------------------------------------------------------------------------------


def test_run_matches_direct_call(affine: SavedModelServable, paths: dict[str, str]) -> None:
    direct = tf.saved_model.load(paths["affine"]).signatures["serving_default"]
    x = np.array([[1.0], [2.0], [5.0]], np.float32)
    out = affine.run(affine.signatures["serving_default"], {"x": x}, ["y"])
    assert set(out) == {"y"}
    assert isinstance(out["y"], np.ndarray) and out["y"].dtype == np.float32
    np.testing.assert_array_equal(out["y"], direct(x=x)["y"].numpy())
    np.testing.assert_allclose(out["y"], 0.5 * x + 2)


def test_run_returns_requested_outputs_only(affine: SavedModelServable) -> None:
    sig = affine.signatures["two_inputs"]
    inputs = {"a": np.array([1.0, 2.0], np.float32), "b": np.array([3, 4], np.int64)}
    assert set(affine.run(sig, inputs, ["b_twice"])) == {"b_twice"}
    out = affine.run(sig, inputs, [])  # empty = all outputs
    assert set(out) == {"sum", "b_twice"}
    np.testing.assert_array_equal(out["b_twice"], [6, 8])
    assert out["b_twice"].dtype == np.int64
    np.testing.assert_allclose(out["sum"], [4.0, 6.0])


def test_any_shape_the_graph_accepts_runs(affine: SavedModelServable) -> None:
    """Like TF Serving's session, the declared [-1, 1] shape does not restrict the feed."""
    sig = affine.signatures["serving_default"]
    np.testing.assert_allclose(affine.run(sig, {"x": np.array([1.0, 2.0, 3.0])}, ["y"])["y"], [2.5, 3, 3.5])
    scalar = affine.run(sig, {"x": np.float32(4)}, ["y"])["y"]
    assert isinstance(scalar, np.ndarray) and scalar.shape == () and scalar == 4.0


def test_inputs_are_cast_to_the_signature_dtype(affine: SavedModelServable) -> None:
    sig = affine.signatures["two_inputs"]
    out = affine.run(sig, {"a": np.array([1, 2]), "b": np.array([1, 2], np.int32)}, ["sum", "b_twice"])
    np.testing.assert_allclose(out["sum"], [2.0, 4.0])
    assert out["b_twice"].dtype == np.int64
    out = affine.run(sig, {"a": [0.5], "b": [7]}, ["sum"])  # plain lists work too
    np.testing.assert_allclose(out["sum"], [7.5])


@pytest.mark.parametrize(
    ("inputs", "fragments"),
    [
        ({"a": np.array(["1.0"]), "b": np.array([1])}, ["'a'", "DT_FLOAT", "str"]),
        ({"a": np.array([1.0]), "b": np.array([1.5])}, ["'b'", "DT_INT64", "float64"]),
        ({"a": np.array([1.0]), "b": np.array([True])}, ["'b'", "DT_INT64", "bool"]),
        ({"a": np.array([b"x"], dtype=object), "b": np.array([1])}, ["'a'", "DT_FLOAT", "object"]),
        ({"a": np.array([1.0]), "b": np.array([2**63], np.uint64)}, ["'b'", "DT_INT64", "range"]),
    ],
)
def test_wrong_dtype_is_invalid_argument(
    affine: SavedModelServable, inputs: dict, fragments: list[str]
) -> None:
    with pytest.raises(InvalidArgument) as info:
        affine.run(affine.signatures["two_inputs"], inputs, ["sum"])
    for fragment in fragments:
        assert fragment in info.value.message


def test_missing_extra_inputs_and_unknown_outputs(affine: SavedModelServable) -> None:
    sig = affine.signatures["two_inputs"]
    with pytest.raises(InvalidArgument, match=r"missing: \{b\}"):
        affine.run(sig, {"a": np.array([1.0])}, ["sum"])
    with pytest.raises(InvalidArgument, match=r"unexpected: \{c\}"):
        affine.run(sig, {"a": np.array([1.0]), "b": np.array([1]), "c": np.array([1])}, ["sum"])
    with pytest.raises(InvalidArgument, match="output tensor alias not found in signature: z"):
        affine.run(sig, {"a": np.array([1.0]), "b": np.array([1])}, ["z"])
    with pytest.raises(InvalidArgument, match="cannot be run"):
        affine.run(affine.signatures["__saved_model_init_op"], {}, [])


def test_tf_runtime_error_is_invalid_argument_with_tf_message(paths: dict) -> None:
    servable = SavedModelServable.load("keras", 1, paths["keras"])
    with pytest.raises(InvalidArgument) as info:
        servable.run(servable.signatures["serving_default"], {"features": np.ones((2, 4), np.float32)}, [])
    message = info.value.message
    assert "Matrix size-incompatible: In[0]: [2,4], In[1]: [3,2]" in message
    assert "[Op:" not in message and "Graph execution error" not in message


def test_string_image_bytes_input(paths: dict[str, str]) -> None:
    servable = SavedModelServable.load("image", 1, paths["image"])
    sig = servable.signatures["serving_default"]
    assert sig.inputs["image_bytes"].dtype == DT_STRING
    images = [mf.png_bytes(10), mf.png_bytes(200, size=8)]
    out = servable.run(sig, {"image_bytes": np.array(images, dtype=object)}, ["length", "mean"])
    np.testing.assert_array_equal(out["length"], [len(b) for b in images])
    np.testing.assert_allclose(out["mean"], [10.0, 200.0])
    out = servable.run(sig, {"image_bytes": np.array(images)}, ["mean"])  # fixed-width bytes array
    np.testing.assert_allclose(out["mean"], [10.0, 200.0])
    with pytest.raises(InvalidArgument, match="'image_bytes'.*DT_STRING.*float64"):
        servable.run(sig, {"image_bytes": np.array([1.0])}, ["mean"])
    with pytest.raises(InvalidArgument, match="Invalid PNG data|PNG"):
        servable.run(sig, {"image_bytes": np.array([b"not a png"], dtype=object)}, ["mean"])


def test_concurrent_runs(affine: SavedModelServable) -> None:
    sig = affine.signatures["serving_default"]
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(50):
                x = np.full((3, 1), seed * 100 + i, np.float32)
                np.testing.assert_allclose(affine.run(sig, {"x": x}, ["y"])["y"], 0.5 * x + 2)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_run_after_unload_still_works(paths: dict[str, str]) -> None:
    """A request that took the servable before an unload must still complete."""
    servable = SavedModelServable.load("affine", 1, paths["affine"])
    servable.unload()
    out = servable.run(servable.signatures["serving_default"], {"x": np.array([[2.0]], np.float32)}, ["y"])
    np.testing.assert_allclose(out["y"], [[3.0]])


# ---- load errors -------------------------------------------------------------------------------


def test_missing_saved_model(tmp_path) -> None:
    with pytest.raises(NotFound, match=f"export directory path: {tmp_path}"):
        SavedModelServable.load("m", 1, str(tmp_path))
    with pytest.raises(NotFound, match="nowhere"):
        SavedModelServable.load("m", 1, str(tmp_path / "nowhere"))


def test_corrupt_saved_model_pb(tmp_path) -> None:
    path = mf.install_corrupt_version(str(tmp_path), 1)
    with pytest.raises(DataLoss) as info:
        SavedModelServable.load("m", 1, path)
    assert f"Can't parse {path}/saved_model.pb as binary proto" in info.value.message


def test_missing_variables(tmp_path, paths: dict[str, str]) -> None:
    path = str(tmp_path / "1")
    os.makedirs(path)
    with open(os.path.join(paths["affine"], "saved_model.pb"), "rb") as src:
        with open(os.path.join(path, "saved_model.pb"), "wb") as dst:
            dst.write(src.read())
    with pytest.raises(ServingError, match=f"Failed to load SavedModel at {path}"):
        SavedModelServable.load("m", 1, path)


def test_unknown_tags(paths: dict[str, str]) -> None:
    with pytest.raises(NotFound, match=r"Could not find meta graph def matching supplied tags: \{ gpu \}"):
        SavedModelServable.load("m", 1, paths["affine"], tags=("gpu",))


def test_run_given_up_by_its_request_is_deadline_exceeded(affine: SavedModelServable) -> None:
    from nbserve.cancellation import RunControl, run_control
    from nbserve.errors import DeadlineExceeded

    signature, x = affine.signatures["serving_default"], np.ones((1, 1), np.float32)
    given_up = RunControl()
    given_up.cancel("Deadline Exceeded: gone")
    with run_control(given_up), pytest.raises(DeadlineExceeded, match="gone"):
        affine.run(signature, {"x": x}, ["y"])
    live = RunControl()
    with run_control(live):
        assert affine.run(signature, {"x": x}, ["y"])["y"].tolist() == [[2.5]]
    live.cancel("after the answer")  # nothing left to stop
    assert affine.run(signature, {"x": x}, ["y"])["y"].tolist() == [[2.5]]
