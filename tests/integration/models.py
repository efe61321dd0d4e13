"""Real SavedModels the integration tests serve, written by TensorFlow into a temp dir."""

from __future__ import annotations

import os

import tensorflow as tf


class HalfPlusTwo(tf.Module):
    """TF Serving's classic test model: y = a*x + b, with predict, classify and regress signatures."""

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
        features = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})
        return features["x"]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"outputs": self.a * self._parse(inputs) + self.b}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        y = self.a * self._parse(inputs) + self.b
        batch = tf.shape(y)[0]
        return {"scores": y, "classes": tf.fill([batch, 1], "y")}


def write_half_plus_two(base_path: str, version: int, a: float = 0.5, b: float = 2.0) -> str:
    """Export HalfPlusTwo(a, b) as ``base_path/<version>`` atomically; returns the version dir."""
    module = HalfPlusTwo(a, b)
    signatures = {
        "serving_default": module.predict,
        "two_inputs": module.two_inputs,
        "regress_x_to_y": module.regress,
        "classify_x_to_y": module.classify,
    }
    final = os.path.join(base_path, str(version))
    temp = os.path.join(base_path, f".tmp-{version}")
    tf.saved_model.save(module, temp, signatures=signatures)
    os.rename(temp, final)
    return final
