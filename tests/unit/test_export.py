"""nbserve.export without a server: signatures written, version numbering, atomicity, validation
and the errors that name their fix (serving the exports is tested in tests/integration)."""

from __future__ import annotations

import os
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import nbserve
from nbserve.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from nbserve.exporting import VersionExists, next_version
from nbserve.servables.saved_model import SavedModelServable

DT_FLOAT, DT_STRING = 1, 7


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(1)
    return keras.Sequential(
        [
            keras.Input((8, 8, 1), name="images"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax", name="scores"),
        ]
    )


@pytest.fixture(scope="module")
def both(model, tmp_path_factory) -> nbserve.ExportResult:
    return nbserve.export(model, tmp_path_factory.mktemp("m") / "digits", signatures="both")


def _shape(info) -> tuple:
    return info.dtype, info.shape


def test_both_signatures_and_their_table(both):
    assert (both.name, both.version, both.probed) == ("digits", 1, True)
    assert both.path == os.path.join(both.base_path, "1")
    assert list(both.signatures) == ["serving_default", "predict_images"]
    tensor, images = both.signatures["serving_default"], both.signatures["predict_images"]
    assert {k: _shape(i) for k, i in tensor.inputs.items()} == {"images": (DT_FLOAT, (-1, 8, 8, 1))}
    assert {k: _shape(i) for k, i in images.inputs.items()} == {"images": (DT_STRING, (-1,))}
    for signature in (tensor, images):
        assert {k: _shape(i) for k, i in signature.outputs.items()} == {"scores": (DT_FLOAT, (-1, 3))}
        assert signature.method_name == "tensorflow/serving/predict"
    text = repr(both).splitlines()
    assert text[0].startswith("Exported digits version 1 to ") and "probed" in text[0]
    assert text[1].split() == ["signature", "inputs", "outputs", "method"]
    assert text[2].split() == [
        "serving_default", "images:", "DT_FLOAT", "[-1,", "8,", "8,", "1]",
        "scores:", "DT_FLOAT", "[-1,", "3]", "tensorflow/serving/predict",
    ]  # fmt: skip
    assert text[3].split()[:4] == ["predict_images", "images:", "DT_STRING", "[-1]"]
    html = both._repr_html_()
    assert html.startswith("<table>") and "<td" in html and "images: DT_STRING [-1]" in html


def test_image_bytes_alone_is_serving_default(model, tmp_path):
    result = nbserve.export(model, tmp_path, signatures="image-bytes", output_name="probabilities")
    [(key, signature)] = result.signatures.items()
    assert key == "serving_default"
    assert list(signature.inputs) == ["images"] and list(signature.outputs) == ["probabilities"]


def test_versions_count_up_from_what_is_on_disk(model, tmp_path):
    base = tmp_path / "m"
    assert next_version(base) == 1  # no base path yet
    base.mkdir()
    for name in ("3", ".tmp-9-abc", "notes", "0007"):
        (base / name).mkdir()
    assert next_version(base) == 8
    assert nbserve.export(model, base, probe=False).version == 8
    assert nbserve.next_version(base) == 9


def test_writes_a_hidden_temp_dir_then_renames(model, tmp_path, monkeypatch):
    seen = []
    real_rename = os.rename

    def rename(src, dst):
        seen.append((sorted(os.listdir(tmp_path)), Path(src).name, Path(dst).name))
        real_rename(src, dst)

    monkeypatch.setattr(os, "rename", rename)
    nbserve.export(model, tmp_path, version=5)
    [(visible, src, dst)] = seen
    assert visible == [src] and src.startswith(".tmp-5-") and dst == "5"
    assert os.listdir(tmp_path) == ["5"]


def test_refuses_an_existing_version(model, both):
    with pytest.raises(VersionExists, match="already exists.*Leave version out") as error:
        nbserve.export(model, both.base_path, version=1)
    assert isinstance(error.value, AlreadyExists) and isinstance(error.value, FileExistsError)
    assert sorted(os.listdir(both.base_path)) == ["1"]


def test_probe_failure_is_reported_and_nothing_is_written(tmp_path):
    class Picky(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32, name="x")])
        def __call__(self, x):
            tf.debugging.assert_positive(x, message="inputs must be positive")
            return {"y": x * 2.0}

    with pytest.raises(FailedPrecondition, match="(?s)'serving_default' on zeros.*probe=False") as error:
        nbserve.export(Picky(), tmp_path)
    assert "inputs must be positive" in str(error.value)
    assert os.listdir(tmp_path) == []
    result = nbserve.export(Picky(), tmp_path, probe=False)
    assert result.version == 1 and not result.probed and "not probed" in repr(result)


def test_signatures_run_like_the_model(model, both):
    servable = SavedModelServable.load("digits", 1, both.path)
    x = np.random.default_rng(0).random((5, 8, 8, 1), np.float32)
    got = servable.run(servable.signatures["serving_default"], {"images": x}, [])["scores"]
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_a_tf_function_with_rank_3_images_and_named_input(tmp_path):
    weights = tf.Variable(tf.random.stateless_normal([16, 2], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None, 4, 4], tf.float32)])
    def logits(pixels):
        return tf.matmul(tf.reshape(pixels, [-1, 16]), weights)

    result = nbserve.export(logits, tmp_path, signatures="both", input_name="pixels")
    tensor, images = result.signatures["serving_default"], result.signatures["predict_images"]
    assert _shape(tensor.inputs["pixels"]) == (DT_FLOAT, (-1, 4, 4))
    assert list(images.inputs) == ["pixels"] and list(images.outputs) == ["output_0"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"signatures": "pictures"}, "signatures must be 'tensor', 'image-bytes' or 'both'"),
        ({"signatures": "both", "image_size": (4, 4)}, r"image_size=\(4, 4\) does not fit.*=\(8, 8\)"),
        ({"signatures": "both", "channels": 3}, "channels=3 does not fit.*pass channels=1"),
        ({"input_name": "a", "input_signature": [tf.TensorSpec([None, 8, 8, 1])] * 2}, "renames a single"),
        ({"build_fn": lambda: None}, "build_fn only applies"),
        ({"version": -1}, "non-negative integer"),
    ],
)
def test_bad_arguments_name_the_fix(model, tmp_path, kwargs, message):
    with pytest.raises(InvalidArgument, match=message):
        nbserve.export(model, tmp_path, **kwargs)
    assert not os.listdir(tmp_path)


def test_what_cannot_be_exported(tmp_path):
    def numpy_fn(x):
        return x * 2

    spec = tf.TensorSpec([None, 2], tf.float32)
    with pytest.raises(InvalidArgument, match=r"server.serve\(fn, name\)"):
        nbserve.export(numpy_fn, tmp_path, input_signature=spec)
    with pytest.raises(InvalidArgument, match="declares no input signature: pass input_signature="):
        nbserve.export(tf.function(lambda x: x), tmp_path)
    a, b = keras.Input((4, 4, 1), name="a"), keras.Input((4, 4, 1), name="b")
    two_inputs = keras.Model([a, b], keras.layers.Add()([a, b]))
    with pytest.raises(InvalidArgument, match="one input and one output.*signatures='tensor'"):
        nbserve.export(two_inputs, tmp_path, signatures="image-bytes")
    flat = keras.Sequential([keras.Input((5,)), keras.layers.Dense(1)])
    with pytest.raises(InvalidArgument, match="needs a float image input"):
        nbserve.export(flat, tmp_path, signatures="image-bytes")
    assert not os.listdir(tmp_path)


def test_files_that_are_no_model(tmp_path):
    with pytest.raises(NotFound, match="neither a Keras file .* nor a TF checkpoint"):
        nbserve.export(str(tmp_path / "nothing"), tmp_path / "out")
    with pytest.raises(NotFound, match="No Keras file"):
        nbserve.export(str(tmp_path / "missing.keras"), tmp_path / "out")


def test_checkpoints_need_a_matching_build_fn(model, tmp_path):
    prefix = tf.train.Checkpoint(net=model).save(str(tmp_path / "ckpt" / "ckpt"))
    with pytest.raises(InvalidArgument, match="holds weights only: pass build_fn"):
        nbserve.export(prefix, tmp_path / "out")
    with pytest.raises(InvalidArgument, match=r"build it \(give it a keras.Input"):
        nbserve.export(prefix, tmp_path / "out", build_fn=lambda: keras.Sequential([keras.layers.Dense(3)]))

    def other():
        return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(4)])

    with pytest.raises(InvalidArgument, match="does not match checkpoint"):
        nbserve.export(prefix, tmp_path / "out", build_fn=other)
    # Any top-level name works (here "net"), and a directory means its latest checkpoint.
    result = nbserve.export(
        str(tmp_path / "ckpt"), tmp_path / "out", build_fn=lambda: keras.models.clone_model(model)
    )
    x = np.ones((1, 8, 8, 1), np.float32)
    servable = SavedModelServable.load("m", 1, result.path)
    got = servable.run(servable.signatures["serving_default"], {"images": x}, [])["scores"]
    np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-6)
