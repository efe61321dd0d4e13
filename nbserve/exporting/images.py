"""The image-bytes signature of an export: encoded JPEG/PNG files in, the model's output out, with
decoding, resizing and scaling in the graph (``nbserve.preprocessing``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from nbserve.errors import InvalidArgument
from nbserve.preprocessing import image_bytes_signature
from nbserve.servables.function import ServingFunction

__all__ = ["ImageGeometry", "image_signature", "probe_png"]


@dataclass(frozen=True)
class ImageGeometry:
    """What the graph decodes every image to."""

    height: int
    width: int
    channels: int


def image_signature(
    fn: ServingFunction,
    *,
    image_size: int | tuple[int, int] | None,
    channels: int | None,
    scale: tuple[float, float],
) -> tuple[Any, ImageGeometry]:
    """A ``tf.function`` taking a batch of encoded images for the model behind ``fn``, which must
    take one float image batch ``[batch, height, width(, channels)]`` and return one output. Size
    and channels default to the model's input shape; given, they must agree with it."""
    if len(fn.inputs) != 1 or len(fn.outputs) != 1:
        raise InvalidArgument(
            f"An image-bytes signature needs a model with one input and one output; this one takes "
            f"{list(fn.inputs)} and returns {list(fn.outputs)}. Use signatures='tensor'."
        )
    [(alias, spec)] = fn.inputs.items()
    [output] = fn.outputs
    shape = spec.shape
    if shape.rank not in (3, 4) or not spec.dtype.is_floating:
        raise InvalidArgument(
            f"An image-bytes signature needs a float image input [batch, height, width(, channels)]; "
            f"input {alias!r} is {spec.dtype.name} {shape}. Use signatures='tensor'."
        )
    geometry = _geometry(alias, shape.as_list(), image_size, channels)
    squeeze = shape.rank == 3  # e.g. MNIST's [batch, 28, 28]: decode one channel, then drop it

    def model_fn(images: tf.Tensor) -> tf.Tensor:
        if squeeze:
            images = images[..., 0]
        return fn.function(tf.cast(images, spec.dtype))[output]

    function = image_bytes_signature(
        model_fn,
        height=geometry.height,
        width=geometry.width,
        channels=geometry.channels,
        scale=scale,
        input_name=alias,
        output_name=output,
    )
    return function, geometry


def _geometry(
    alias: str, dims: list[int | None], image_size: int | tuple[int, int] | None, channels: int | None
) -> ImageGeometry:
    model_size = (dims[1], dims[2])
    model_channels = dims[3] if len(dims) == 4 else 1
    if image_size is None:
        if None in model_size:
            raise InvalidArgument(
                f"Input {alias!r} accepts any image size {dims}: pass image_size=(height, width)"
            )
        size = model_size
    else:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or any(m is not None and m != s for m, s in zip(model_size, size, strict=True)):
            raise InvalidArgument(
                f"image_size={image_size} does not fit input {alias!r} of shape {dims}: pass "
                f"image_size=({model_size[0]}, {model_size[1]}) or leave it out"
            )
    if channels is None:
        if model_channels is None:
            raise InvalidArgument(
                f"Input {alias!r} accepts any number of channels {dims}: pass channels=1, 3 or 4"
            )
        channels = model_channels
    elif model_channels is not None and channels != model_channels:
        raise InvalidArgument(
            f"channels={channels} does not fit input {alias!r} of shape {dims}: "
            f"pass channels={model_channels} or leave it out"
        )
    if channels not in (1, 3, 4):
        raise InvalidArgument(f"Images have 1, 3 or 4 channels; input {alias!r} wants {channels}")
    return ImageGeometry(int(size[0]), int(size[1]), int(channels))


def probe_png(geometry: ImageGeometry) -> bytes:
    """A mid-grey PNG of the size and channels the signature decodes to."""
    pixels = np.full((geometry.height, geometry.width, geometry.channels), 128, np.uint8)
    return tf.io.encode_png(pixels).numpy()
