"""Tiny real SavedModels for the servable and manager tests, written by TensorFlow 2 / Keras 3."""

from __future__ import annotations

import os
import shutil

import numpy as np
import tensorflow as tf


class Affine(tf.Module):
    """y = a*x + b (TF Serving's half_plus_two for a=0.5, b=2), plus two-input, regress and classify
    (tf.Example feature ``x``) functions."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a = tf.Variable(a)
        self.b = tf.Variable(b)

    @tf.function(input_signature=[tf.TensorSpec([None, 1], tf.float32, name="x")])
    def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"y": self.a * x + self.b}

    @tf.function(
        input_signature=[
            tf.TensorSpec([None], tf.float32, name="a"),
            tf.TensorSpec([None], tf.int64, name="b"),
        ]
    )
    def two_inputs(self, a: tf.Tensor, b: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"sum": a + tf.cast(b, tf.float32), "b_twice": b * 2}

    def _parse(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.a * self._parse(inputs) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        y = self.a * self._parse(inputs) + self.b
        return {"scores": y, "classes": tf.fill([tf.shape(y)[0], 1], "y")}


def write_affine(path: str, a: float = 0.5, b: float = 2.0) -> str:
    module = Affine(a, b)
    tf.saved_model.save(
        module, path, signatures={"serving_default": module.predict, "two_inputs": module.two_inputs}
    )
    return path


class ImageStats(tf.Module):
    """Takes encoded PNG bytes (a batch of strings) and returns their byte length and mean pixel."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image_bytes")])
    def stats(self, image_bytes: tf.Tensor) -> dict[str, tf.Tensor]:
        def mean(png: tf.Tensor) -> tf.Tensor:
            return tf.reduce_mean(tf.cast(tf.io.decode_png(png, channels=1), tf.float32))

        return {
            "length": tf.strings.length(image_bytes),
            "mean": tf.map_fn(mean, image_bytes, fn_output_signature=tf.float32),
        }


def write_image_model(path: str) -> str:
    module = ImageStats()
    tf.saved_model.save(module, path, signatures={"serving_default": module.stats})
    return path


def write_keras_model(path: str) -> tuple[str, object]:
    """A Keras 3 model exported with ``model.export``; returns (path, model)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(2, name="dense")])
    model.export(path, verbose=False)
    return path, model


def png_bytes(value: int, size: int = 4) -> bytes:
    return tf.io.encode_png(np.full((size, size, 1), value, np.uint8)).numpy()


def install_version(base_path: str, version: int, source: str) -> str:
    """Copy a written model into ``base_path/<version>`` atomically (temp dir, then rename)."""
    os.makedirs(base_path, exist_ok=True)
    final = os.path.join(base_path, str(version))
    temp = os.path.join(base_path, f".tmp-{version}")
    shutil.copytree(source, temp)
    os.rename(temp, final)
    return final


def install_corrupt_version(base_path: str, version: int) -> str:
    """A version dir whose saved_model.pb is garbage."""
    final = os.path.join(base_path, str(version))
    os.makedirs(final)
    with open(os.path.join(final, "saved_model.pb"), "wb") as f:
        f.write(b"this is not a SavedModel protobuf at all")
    return final


def write_v1_model(path: str) -> str:
    """A TF1-style (graph + Builder) SavedModel like TF Serving's own half_plus_two test data."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 1], name="x")
        a = tf.Variable(0.5, name="a")
        y = tf.add(a * x, 2.0, name="y")
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            builder = tf.compat.v1.saved_model.Builder(path)
            signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}
            )
            builder.save()
    return path
