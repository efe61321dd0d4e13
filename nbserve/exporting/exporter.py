"""``nbserve.export``: a model held in the kernel or saved to a file, written as the next version of a
SavedModel base path that TF Serving (and nbserve) serve."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal

import tensorflow as tf

from nbserve.errors import InvalidArgument
from nbserve.exporting.files import load_model_file
from nbserve.exporting.images import ImageGeometry, image_signature
from nbserve.exporting.probe import probe_version
from nbserve.exporting.result import ExportResult
from nbserve.exporting.versions import write_version
from nbserve.manager.source import local_path
from nbserve.servables.function import InputSignature, serving_function
from nbserve.servables.saved_model import read_meta_graph, signature_from_def
from nbserve.signature import DEFAULT_SERVING_SIGNATURE, Signature

__all__ = ["IMAGES_SIGNATURE", "SignatureKind", "export"]

IMAGES_SIGNATURE = "predict_images"
"""The image-bytes signature's key when it sits next to the tensor one (``signatures="both"``)."""

SignatureKind = Literal["tensor", "image-bytes", "both"]


def export(
    model: Any,
    base_path: str | os.PathLike[str],
    *,
    name: str | None = None,
    version: int | None = None,
    signatures: SignatureKind = "tensor",
    image_size: int | tuple[int, int] | None = None,
    channels: int | None = None,
    scale: tuple[float, float] = (0.0, 1.0),
    input_name: str | None = None,
    output_name: str | None = None,
    input_signature: InputSignature | None = None,
    build_fn: Callable[[], Any] | None = None,
    probe: bool = True,
) -> ExportResult:
    """Write ``model`` as SavedModel ``base_path/<version>`` (default: the next free version).

    ``model``: a Keras 3 model, a ``tf.Module`` or a ``tf.function`` (``input_signature`` when it
    declares none), or the path of a ``.keras`` / ``.h5`` file or of a TF checkpoint (with
    ``build_fn`` returning the model to restore it into).
    ``signatures``: ``"tensor"`` (``serving_default`` takes the model's inputs), ``"image-bytes"``
    (``serving_default`` takes encoded JPEG/PNG files, decoded to ``image_size`` x ``channels``,
    which default to the model's input shape, and scaled from [0, 255] to ``scale`` in the graph)
    or ``"both"`` (tensor ``serving_default`` and image-bytes ``predict_images``).
    ``input_name`` / ``output_name`` rename a single input / output (defaults: the model's names).

    The version appears atomically, so a server polling ``base_path`` loads it by itself. With
    ``probe`` it is first loaded back and every signature run once (zeros; a PNG for images).
    """
    if signatures not in ("tensor", "image-bytes", "both"):
        raise InvalidArgument(f"signatures must be 'tensor', 'image-bytes' or 'both', got {signatures!r}")
    base = os.path.abspath(local_path(os.fspath(base_path)))
    name = name or os.path.basename(base)
    if isinstance(model, str | os.PathLike):
        model = load_model_file(model, build_fn)
    elif build_fn is not None:
        raise InvalidArgument("build_fn only applies when model is the path of a TF checkpoint")
    fn = serving_function(
        model, input_signature=input_signature, input_name=input_name, output_name=output_name
    )
    if fn.kind == "python":
        raise InvalidArgument(
            "export needs a Keras model, a tf.Module or a tf.function (something TensorFlow can save); "
            "serve a plain Python callable without export: server.serve(fn, name)"
        )
    functions: dict[str, Any] = {}
    images: dict[str, ImageGeometry] = {}
    if signatures in ("tensor", "both"):
        functions[DEFAULT_SERVING_SIGNATURE] = fn.function
    if signatures in ("image-bytes", "both"):
        key = IMAGES_SIGNATURE if signatures == "both" else DEFAULT_SERVING_SIGNATURE
        functions[key], images[key] = image_signature(
            fn, image_size=image_size, channels=channels, scale=scale
        )
    root = tf.Module()
    root.model = fn.trackable  # the SavedModel holds the variables of what it tracks

    def write(path: str) -> None:
        tf.saved_model.save(root, path, signatures=functions)

    def check(path: str, number: int) -> dict[str, Signature]:
        if probe:
            return probe_version(name, number, path, list(functions), images)
        defs = read_meta_graph(path).signature_def
        return {key: signature_from_def(key, defs[key]) for key in functions}

    number, path, written = write_version(base, version, write, check)
    return ExportResult(name, number, path, base, written, probe)
