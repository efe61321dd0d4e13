"""The demo model: a small digit classifier on scikit-learn's bundled 8x8 digits (no download).

Exported like the classic TF Serving image tutorials, with two signatures:

* ``serving_default``: ``images`` float32 ``[None, 8, 8, 1]`` in ``[0, 1]`` -> ``scores`` float32
  ``[None, 10]`` (softmax);
* ``predict_images``: ``images`` string ``[None]`` of encoded JPEG/PNG files, decoded to grayscale,
  resized to 8x8 and scaled to ``[0, 1]`` in the graph -> ``scores``.

The digits' pixel values 0..16 are stored as 8-bit grayscale (``round(v * 255 / 16)``), like an
image file holds them, and the float images are those bytes scaled exactly as the graph scales
decoded pixels. So a PNG of a digit (at 8x8, or upscaled by an integer factor with nearest-neighbour
sampling), and also a 64x64 JPEG (each pixel fills one whole JPEG block, which survives
quality-95 compression unchanged), decodes to bit-identical model inputs. Probabilities are then
equal for equal batches (a matmul's rounding may depend on the batch size).

Usage: ``python -m nbserve.demo --base_path DIR [--version N] [--images_dir DIR]``.
"""

from __future__ import annotations

import argparse
import functools
import io
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
from PIL import Image

from nbserve.exporting import IMAGES_SIGNATURE, export
from nbserve.preprocessing import PIXEL_SCALE

__all__ = [
    "HEIGHT",
    "WIDTH",
    "CHANNELS",
    "NUM_CLASSES",
    "INPUT_NAME",
    "OUTPUT_NAME",
    "IMAGES_SIGNATURE",
    "digits_images",
    "digits_pixels",
    "digits_encoded",
    "digits_jpeg_bytes",
    "digits_png_bytes",
    "write_digit_images",
    "train_digits_model",
    "evaluate",
    "export_demo_model",
    "main",
]

HEIGHT = WIDTH = 8
CHANNELS = 1
NUM_CLASSES = 10
INPUT_NAME = "images"
OUTPUT_NAME = "scores"
NUM_TEST = 360  # held-out digits (20 %); the rest (1437) is for training

_SPLIT_SEED = 20240501  # fixed, independent of the training seed, so the held-out set never moves


@functools.cache
def _dataset() -> tuple[np.ndarray, np.ndarray]:
    """All digits, shuffled once: (uint8 [1797, 8, 8, 1] in 0..255, int64 labels)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., np.newaxis]
    order = np.random.default_rng(_SPLIT_SEED).permutation(len(pixels))
    pixels, labels = pixels[order], digits.target[order].astype(np.int64)
    pixels.setflags(write=False)
    labels.setflags(write=False)
    return pixels, labels


def _split(train: bool) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = _dataset()
    cut = len(pixels) - NUM_TEST
    return (pixels[:cut], labels[:cut]) if train else (pixels[cut:], labels[cut:])


def _to_float(pixels: np.ndarray) -> np.ndarray:
    # Same arithmetic as the serving graph, so both signatures see bit-identical inputs.
    return pixels.astype(np.float32) * np.float32(PIXEL_SCALE)


def _held_out(n: int | None, start: int) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = _split(train=False)
    if start < 0 or start > len(pixels):
        raise ValueError(f"start must be in [0, {len(pixels)}], got {start}")
    stop = len(pixels) if n is None else start + n
    if n is not None and (n < 0 or stop > len(pixels)):
        raise ValueError(f"only {len(pixels)} held-out digits; asked for [{start}, {stop})")
    return pixels[start:stop], labels[start:stop]


def digits_pixels(n: int | None = None, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out digits as uint8 ``[n, 8, 8, 1]`` grayscale (0..255) and int64 labels ``[n]``
    (``n=None``: all 360 from ``start``)."""
    pixels, labels = _held_out(n, start)
    return pixels.copy(), labels.copy()


def digits_images(n: int | None = None, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Held-out digits as float32 ``[n, 8, 8, 1]`` in ``[0, 1]`` (the ``serving_default`` input)
    and int64 labels ``[n]``."""
    pixels, labels = _held_out(n, start)
    return _to_float(pixels), labels.copy()


def digits_encoded(n: int | None = None, start: int = 0, *, fmt: str = "jpeg", size: int = 64) -> list[bytes]:
    """Held-out digits as encoded image files (``fmt`` "jpeg" or "png"), grayscale, upscaled with
    nearest-neighbour sampling to ``size`` x ``size`` (the served graph resizes back to 8x8).

    Upscaling keeps JPEG artefacts small (none at 64, where each pixel is one 8x8 JPEG block);
    PNG at any multiple of 8 decodes and resizes in the graph back to the exact pixels.
    """
    fmt = fmt.lower()
    pil_format = {"jpeg": "JPEG", "jpg": "JPEG", "png": "PNG"}.get(fmt)
    if pil_format is None:
        raise ValueError(f"fmt must be 'jpeg' or 'png', got {fmt!r}")
    pixels, _ = _held_out(n, start)
    encoded = []
    for image in pixels:
        pil = Image.fromarray(image[..., 0], mode="L")
        if size != HEIGHT:
            pil = pil.resize((size, size), Image.Resampling.NEAREST)
        buf = io.BytesIO()
        if pil_format == "JPEG":
            pil.save(buf, format="JPEG", quality=95)
        else:
            pil.save(buf, format="PNG")
        encoded.append(buf.getvalue())
    return encoded


def digits_jpeg_bytes(n: int | None = None, start: int = 0, *, size: int = 64) -> list[bytes]:
    """Held-out digits as JPEG files (see :func:`digits_encoded`)."""
    return digits_encoded(n, start, fmt="jpeg", size=size)


def digits_png_bytes(n: int | None = None, start: int = 0, *, size: int = 64) -> list[bytes]:
    """Held-out digits as PNG files (see :func:`digits_encoded`)."""
    return digits_encoded(n, start, fmt="png", size=size)


def write_digit_images(
    directory: str | os.PathLike[str],
    n: int = 10,
    start: int = 0,
    *,
    fmt: str = "jpeg",
    size: int = 64,
) -> list[Path]:
    """Write ``n`` held-out digits as ``digit_<index>_label_<label>.<ext>`` into ``directory``
    (created if needed) for the example clients; returns the paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ext = "png" if fmt.lower() == "png" else "jpg"
    _, labels = _held_out(n, start)
    paths = []
    for i, (data, label) in enumerate(zip(digits_encoded(n, start, fmt=fmt, size=size), labels, strict=True)):
        path = directory / f"digit_{start + i:03d}_label_{label}.{ext}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def train_digits_model(seed: int = 0, *, epochs: int = 20, verbose: int = 0) -> keras.Model:
    """Train a small dense net on the digits' training split (a few seconds on a CPU).

    Input float32 ``[None, 8, 8, 1]`` in ``[0, 1]``, output softmax ``[None, 10]``; held-out
    accuracy is about 0.97 (see :func:`evaluate`).
    """
    keras.utils.set_random_seed(seed)
    pixels, labels = _split(train=True)
    model = keras.Sequential(
        [
            keras.Input((HEIGHT, WIDTH, CHANNELS), name=INPUT_NAME),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(NUM_CLASSES, activation="softmax", name=OUTPUT_NAME),
        ],
        name="digits",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        # Several steps per tf.function call and no XLA: per-step Python and compile overhead
        # dominate for a model this small.
        steps_per_execution=16,
        jit_compile=False,
    )
    model.fit(_to_float(pixels), labels, batch_size=32, epochs=epochs, shuffle=True, verbose=verbose)
    return model


def evaluate(model: keras.Model) -> float:
    """Accuracy of ``model`` on the held-out digits."""
    images, labels = digits_images()
    scores = np.asarray(model.predict(images, batch_size=256, verbose=0))
    return float(np.mean(scores.argmax(axis=1) == labels))


def export_demo_model(model: keras.Model, base_path: str | os.PathLike[str], version: int = 1) -> str:
    """Save ``model`` as a SavedModel at ``base_path/<version>/`` with the ``serving_default`` and
    ``predict_images`` signatures (method ``tensorflow/serving/predict``); returns that path.

    Written by :func:`nbserve.export`: into a hidden ``base_path/.tmp-<version>-<random>`` directory
    first, then renamed, so a server watching ``base_path`` never sees a half-written version.
    Raises ``FileExistsError`` (``nbserve.exporting.VersionExists``) if the version already exists.
    """
    result = export(
        model,
        base_path,
        version=version,
        signatures="both",
        image_size=(HEIGHT, WIDTH),
        channels=CHANNELS,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
    )
    return result.path


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: train the demo model, export it and optionally write sample images."""
    parser = argparse.ArgumentParser(
        prog="python -m nbserve.demo", description="Train and export the digits demo model."
    )
    parser.add_argument("--base_path", required=True, help="model base path; the version goes below it")
    parser.add_argument("--version", type=int, default=1, help="version directory to write (default 1)")
    parser.add_argument("--images_dir", default=None, help="also write sample digit images here")
    parser.add_argument("--num_images", type=int, default=10, help="how many sample images (default 10)")
    parser.add_argument("--image_format", choices=["jpeg", "png"], default="jpeg")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if (Path(args.base_path) / str(args.version)).exists():  # fail before spending time on training
        print(f"error: {Path(args.base_path) / str(args.version)} already exists", file=sys.stderr)
        return 1

    start = time.perf_counter()
    model = train_digits_model(seed=args.seed)
    trained = time.perf_counter() - start
    print(f"trained digits model in {trained:.1f}s; held-out accuracy {evaluate(model):.4f}")
    try:
        path = export_demo_model(model, args.base_path, args.version)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"exported SavedModel to {path} (signatures: serving_default, {IMAGES_SIGNATURE})")
    if args.images_dir:
        paths = write_digit_images(args.images_dir, args.num_images, fmt=args.image_format)
        print(f"wrote {len(paths)} {args.image_format} images to {args.images_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
