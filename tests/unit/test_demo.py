"""The demo model: training and the exported SavedModel's signatures (the example clients are tested
against a real nbserve server in tests/integration/test_examples.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from nbserve import demo

PREDICT = "tensorflow/serving/predict"


@pytest.fixture(scope="module")
def trained() -> tuple[object, float]:
    model = demo.train_digits_model(seed=0)
    return model, demo.evaluate(model)


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("models") / "digits"
    path = demo.export_demo_model(trained[0], str(base), version=3)
    return Path(path)


@pytest.fixture(scope="module")
def loaded(exported):
    return tf.saved_model.load(str(exported))


def serving_default(loaded, images: np.ndarray) -> np.ndarray:
    return loaded.signatures["serving_default"](images=tf.constant(images))["scores"].numpy()


def predict_images(loaded, encoded: list[bytes]) -> np.ndarray:
    return loaded.signatures["predict_images"](images=tf.constant(encoded))["scores"].numpy()


def test_training_is_accurate(trained):
    _, accuracy = trained
    assert accuracy > 0.9


def test_held_out_data():
    images, labels = demo.digits_images(5, start=10)
    assert images.shape == (5, 8, 8, 1) and images.dtype == np.float32
    assert labels.shape == (5,) and set(labels) <= set(range(10))
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() == 1.0
    all_images, _ = demo.digits_images()
    assert len(all_images) == demo.NUM_TEST
    np.testing.assert_array_equal(all_images[10:15], images)
    with pytest.raises(ValueError):
        demo.digits_images(10, start=demo.NUM_TEST - 5)


def test_export_is_atomic(exported):
    assert exported.name == "3"
    assert sorted(os.listdir(exported.parent)) == ["3"]  # no .tmp-* left behind
    assert (exported / "saved_model.pb").is_file()
    assert (exported / "variables").is_dir()


def test_export_writes_a_temp_dir_then_renames(trained, tmp_path, monkeypatch):
    renames = []
    real_rename = os.rename

    def spy(src, dst):
        assert sorted(os.listdir(tmp_path)) == [Path(src).name]  # nothing visible before the rename
        renames.append((Path(src), Path(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", spy)
    path = demo.export_demo_model(trained[0], tmp_path, version=7)
    assert path == str(tmp_path / "7")
    [(src, dst)] = renames
    assert src.parent == tmp_path and src.name.startswith(".tmp-7-") and dst == tmp_path / "7"
    with pytest.raises(FileExistsError):
        demo.export_demo_model(trained[0], tmp_path, version=7)
    assert sorted(os.listdir(tmp_path)) == ["7"]


def test_failed_export_leaves_nothing(trained, tmp_path, monkeypatch):
    real_save = tf.saved_model.save

    def failing_save(obj, export_dir, signatures=None):
        real_save(obj, export_dir, signatures=signatures)
        raise OSError("disk full")

    monkeypatch.setattr(tf.saved_model, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        demo.export_demo_model(trained[0], tmp_path, version=1)
    assert os.listdir(tmp_path) == []


def test_signature_defs(exported):
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((exported / "saved_model.pb").read_bytes())
    [meta_graph] = saved_model.meta_graphs
    assert "serve" in meta_graph.meta_info_def.tags
    sigs = meta_graph.signature_def

    default = sigs["serving_default"]
    assert default.method_name == PREDICT
    assert list(default.inputs) == ["images"] and list(default.outputs) == ["scores"]
    assert default.inputs["images"].dtype == types_pb2.DT_FLOAT
    assert [d.size for d in default.inputs["images"].tensor_shape.dim] == [-1, 8, 8, 1]

    images = sigs["predict_images"]
    assert images.method_name == PREDICT
    assert list(images.inputs) == ["images"] and list(images.outputs) == ["scores"]
    assert images.inputs["images"].dtype == types_pb2.DT_STRING
    assert [d.size for d in images.inputs["images"].tensor_shape.dim] == [-1]

    for sig in (default, images):
        assert sig.outputs["scores"].dtype == types_pb2.DT_FLOAT
        assert [d.size for d in sig.outputs["scores"].tensor_shape.dim] == [-1, 10]


def test_loaded_signatures(loaded):
    assert {"serving_default", "predict_images"} <= set(loaded.signatures)
    images, labels = demo.digits_images()
    scores = serving_default(loaded, images)
    assert scores.shape == (len(images), 10) and scores.dtype == np.float32
    np.testing.assert_allclose(scores.sum(axis=1), 1.0, rtol=1e-5)
    assert np.mean(scores.argmax(axis=1) == labels) > 0.9


@pytest.mark.parametrize(("fmt", "size"), [("png", 8), ("png", 32), ("jpeg", 64)])
def test_lossless_images_give_exactly_the_float_probabilities(loaded, fmt, size):
    # Same batch on both paths: a matmul's rounding may depend on the batch size.
    images, _ = demo.digits_images(64)
    expected = serving_default(loaded, images)
    got = predict_images(loaded, demo.digits_encoded(64, fmt=fmt, size=size))
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("size", [8, 32])
def test_lossy_jpeg_mostly_agrees(loaded, size):
    images, labels = demo.digits_images()
    expected = serving_default(loaded, images).argmax(axis=1)
    got = predict_images(loaded, demo.digits_jpeg_bytes(size=size)).argmax(axis=1)
    assert np.mean(got == expected) >= 0.9
    assert np.mean(got == labels) > 0.9


def test_mixed_formats_and_sizes_in_one_batch(loaded):
    encoded = [
        demo.digits_png_bytes(1, start=0, size=8)[0],
        demo.digits_jpeg_bytes(1, start=1)[0],
        demo.digits_png_bytes(1, start=2, size=40)[0],
    ]
    scores = predict_images(loaded, encoded)
    assert scores.shape == (3, 10)
    expected = serving_default(loaded, demo.digits_images(3)[0])
    np.testing.assert_array_equal(scores.argmax(axis=1), expected.argmax(axis=1))


def test_write_digit_images(tmp_path):
    paths = demo.write_digit_images(tmp_path / "imgs", 4, start=2, fmt="png")
    _, labels = demo.digits_images(4, start=2)
    assert [p.name for p in paths] == [f"digit_{2 + i:03d}_label_{labels[i]}.png" for i in range(4)]
    assert paths[0].read_bytes() == demo.digits_png_bytes(1, start=2)[0]


def test_cli(trained, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "train_digits_model", lambda seed=0: trained[0])  # trained once above
    argv = ["--base_path", str(tmp_path / "m"), "--version", "2", "--images_dir", str(tmp_path / "i")]
    assert demo.main([*argv, "--num_images", "3"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and str(tmp_path / "m" / "2") in out
    assert (tmp_path / "m" / "2" / "saved_model.pb").is_file()
    assert len(list((tmp_path / "i").glob("*.jpg"))) == 3
    assert demo.main(["--base_path", str(tmp_path / "m"), "--version", "2"]) == 1  # already exists
