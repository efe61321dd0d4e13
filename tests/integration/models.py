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
    final = os.path.join(base_path, str(version))
    temp = os.path.join(base_path, f".tmp-{version}")
    tf.saved_model.save(module, temp, signatures=signatures)
    os.rename(temp, final)
    return final
