"""Real SavedModels the integration tests serve, written by TensorFlow into a temp dir."""

from __future__ import annotations

import os
import sys

import tensorflow as tf

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))

from model_factory import Affine  # noqa: E402


def write_half_plus_two(base_path: str, version: int, a: float = 0.5, b: float = 2.0) -> str:
    """Export y = a*x + b as ``base_path/<version>`` atomically, with TF Serving's half_plus_two
    signatures (serving_default, two_inputs, regress_x_to_y, classify_x_to_y); returns the version dir."""
    module = Affine(a, b)
    signatures = {
        "serving_default": module.predict,
        "two_inputs": module.two_inputs,
        "regress_x_to_y": module.regress,
        "classify_x_to_y": module.classify,
    }
    return _save(module, signatures, base_path, version)


class Faulty(tf.Module):
    """A model that fails on some inputs (``checked``: sqrt of x, x must be >= 0) and one that takes
    as long as asked (``spin``: counts to n in a graph loop, about 4 s per million)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def checked(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.control_dependencies([tf.debugging.assert_non_negative(x, message="x must be >= 0")]):
            return {"y": tf.sqrt(x)}

    @tf.function(input_signature=[tf.TensorSpec([], tf.int64, name="n")])
    def spin(self, n: tf.Tensor) -> dict[str, tf.Tensor]:
        (count,) = tf.while_loop(lambda i: i < n, lambda i: (i + 1,), (tf.constant(0, tf.int64),))
        return {"count": count}


def write_faulty(base_path: str, version: int) -> str:
    """Export Faulty as ``base_path/<version>`` (signatures serving_default = checked, spin)."""
    module = Faulty()
    return _save(module, {"serving_default": module.checked, "spin": module.spin}, base_path, version)


def _save(module: tf.Module, signatures: dict, base_path: str, version: int) -> str:
    # Written beside, then renamed: the server's poll never sees half a version.
    final = os.path.join(base_path, str(version))
    temp = os.path.join(base_path, f".tmp-{version}")
    tf.saved_model.save(module, temp, signatures=signatures)
    os.rename(temp, final)
    return final
