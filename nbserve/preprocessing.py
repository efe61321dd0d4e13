"""In-graph preprocessing for serving signatures.

The classic TF Serving image models (inception, mnist) export a signature that takes the encoded
image files themselves (``DT_STRING``) and does decoding, resizing and scaling inside the graph, so
clients only send file bytes (base64 in REST, ``tf.make_tensor_proto(list_of_bytes)`` in gRPC).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import tensorflow as tf

__all__ = ["PIXEL_SCALE", "decode_and_scale", "image_bytes_signature"]

PIXEL_SCALE = 1.0 / 255.0
"""Maps 8-bit pixel values to [0, 1]: the graph computes ``pixels * float32(PIXEL_SCALE)``."""


def decode_and_scale(
    encoded: tf.Tensor,
    *,
    height: int,
    width: int,
    channels: int,
    scale: tuple[float, float] = (0.0, 1.0),
) -> tf.Tensor:
    """Decode one encoded image (JPEG, PNG, GIF or BMP; scalar ``tf.string``) into a float32
    ``[height, width, channels]`` tensor with pixel values mapped from ``[0, 255]`` to ``scale``.

    Resizing is bilinear without antialiasing, so an image already at the target size, or one
    upscaled from it by an integer factor with nearest-neighbour sampling, gives back exactly the
    original pixels.
    """
    lo, hi = float(scale[0]), float(scale[1])
    image = tf.io.decode_image(encoded, channels=channels, expand_animations=False)
    image.set_shape([None, None, channels])
    image = tf.image.resize(image, (height, width))  # bilinear: always float32
    # Multiply by the float32 reciprocal: Grappler rewrites division by a constant into exactly
    # this, so writing it out keeps eager, graph and ``pixels * np.float32(1 / 255)`` bit-identical.
    image = image * tf.constant(PIXEL_SCALE, tf.float32)
    if (lo, hi) != (0.0, 1.0):
        image = image * (hi - lo) + lo
    return image


def image_bytes_signature(
    model_fn: Callable[[tf.Tensor], Any],
    *,
    height: int,
    width: int,
    channels: int,
    scale: tuple[float, float] = (0.0, 1.0),
    input_name: str = "images",
    output_name: str = "scores",
) -> tf.types.experimental.PolymorphicFunction:
    """Wrap ``model_fn`` (float32 ``[batch, height, width, channels]`` -> tensor) into a
    ``tf.function`` that takes a batch of encoded images instead.

    The returned function has ``input_signature=[tf.TensorSpec([None], tf.string, name=input_name)]``;
    each element is decoded with :func:`decode_and_scale` (``tf.map_fn`` over the batch, so images
    may differ in size and format), the float batch is passed to ``model_fn`` and the result is
    returned as ``{output_name: result}``. Use it as a SavedModel signature, e.g.
    ``tf.saved_model.save(module, path, signatures={"predict_images": fn})``; everything happens in
    the graph, so the exported model needs no Python preprocessing at serving time.
    """
    if height <= 0 or width <= 0 or channels not in (1, 3, 4):
        raise ValueError(f"bad image geometry: height={height}, width={width}, channels={channels}")

    def _decode(encoded: tf.Tensor) -> tf.Tensor:
        return decode_and_scale(encoded, height=height, width=width, channels=channels, scale=scale)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=input_name)])
    def serve_image_bytes(encoded_images: tf.Tensor) -> dict[str, tf.Tensor]:
        images = tf.map_fn(
            _decode,
            encoded_images,
            fn_output_signature=tf.TensorSpec([height, width, channels], tf.float32),
        )
        return {output_name: model_fn(images)}

    return serve_image_bytes
