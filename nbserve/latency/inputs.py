"""The signature under test (asked of the server over REST or gRPC, or read from a SavedModel) and the
request rows: a numpy array (or alias -> array), images from a folder, or values generated from the
signature's dtypes and shapes."""

from __future__ import annotations

import io
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nbserve.codecs.dtypes import DT_STRING, data_type_name, numpy_dtype
from nbserve.signature import Signature

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
MAX_GENERATED_ROWS = 256
_PIL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}

Inputs = np.ndarray | Mapping[str, Any] | Sequence[bytes] | str | os.PathLike[str] | None


def signature_of(model: str, signature: str, **where: Any) -> Signature:
    """Signature ``signature`` of ``model`` (``where``: as for :func:`signatures_of`)."""
    signatures = signatures_of(model, **where)
    if signature not in signatures:
        raise ValueError(
            f"model {model} has no signature {signature!r}; it has {', '.join(sorted(signatures))}"
        )
    return signatures[signature]


def signatures_of(
    model: str,
    *,
    rest_url: str | None = None,
    grpc_address: str | None = None,
    saved_model_dir: str | None = None,
    version: int | None = None,
) -> dict[str, Signature]:
    """The signatures of ``model``: from the server's metadata (REST when given, else gRPC), or from
    ``saved_model_dir``."""
    from nbserve.protos.tensorflow_serving.apis import get_model_metadata_pb2
    from nbserve.servables.saved_model import read_meta_graph, signature_from_def

    if rest_url:
        signatures = get_model_metadata_pb2.SignatureDefMap()
        path = f"/v1/models/{urllib.parse.quote(model, safe='')}"
        path += f"/versions/{version}" if version is not None else ""
        with urllib.request.urlopen(f"{rest_url}{path}/metadata", timeout=60) as answer:
            doc = json.loads(answer.read())
        from google.protobuf import json_format

        json_format.ParseDict(doc["metadata"]["signature_def"], signatures, ignore_unknown_fields=True)
        defs = signatures.signature_def
    elif grpc_address:
        defs = _grpc_signature_defs(model, grpc_address, version)
    elif saved_model_dir:
        defs = read_meta_graph(saved_model_dir).signature_def
    else:
        raise ValueError("give a server (rest_url or grpc_address) or a SavedModel directory")
    return {key: signature_from_def(key, defs[key]) for key in sorted(defs)}


def _grpc_signature_defs(model: str, address: str, version: int | None) -> Any:
    import grpc

    from nbserve.protos.tensorflow_serving.apis import get_model_metadata_pb2, prediction_service_pb2_grpc

    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = model
    if version is not None:
        request.model_spec.version.value = version
    with grpc.insecure_channel(address) as channel:
        answer = prediction_service_pb2_grpc.PredictionServiceStub(channel).GetModelMetadata(
            request, timeout=60
        )
    signatures = get_model_metadata_pb2.SignatureDefMap()
    answer.metadata["signature_def"].Unpack(signatures)
    return signatures.signature_def


def request_rows(signature: Signature, inputs: Inputs, n: int) -> dict[str, np.ndarray]:
    """Rows to send, alias -> batch-major array: ``inputs`` as given (an array or list of encoded images
    for a one-input signature, or a mapping alias -> array), images read from a folder, or, for None,
    ``min(n, 256)`` generated rows (uniform [0, 1) floats, small integers, a tiny PNG for strings)."""
    aliases = list(signature.inputs)
    if inputs is None:
        rows = {alias: _generated(signature, alias, min(n, MAX_GENERATED_ROWS)) for alias in aliases}
    elif isinstance(inputs, Mapping):
        unknown = sorted(set(inputs) - set(aliases))
        if unknown:
            raise ValueError(f"signature {signature.name} takes inputs {aliases}; unexpected {unknown}")
        rows = {alias: _as_rows(value, signature.inputs[alias].dtype) for alias, value in inputs.items()}
    else:
        if len(aliases) != 1:
            raise ValueError(
                f"signature {signature.name} has inputs {', '.join(aliases)}: pass a dict alias -> array"
            )
        (alias,) = aliases
        if isinstance(inputs, str | os.PathLike):
            rows = {alias: folder_images(inputs, signature, alias)}
        else:
            rows = {alias: _as_rows(inputs, signature.inputs[alias].dtype)}
    missing = sorted(set(aliases) - set(rows))
    if missing:
        raise ValueError(f"signature {signature.name} takes inputs {aliases}; missing {missing}")
    counts = {len(array) for array in rows.values()}
    if len(counts) != 1 or 0 in counts:
        raise ValueError(f"every input needs the same, non-zero number of rows; got {counts}")
    return rows


def _as_rows(value: Any, dtype: int) -> np.ndarray:
    if dtype == DT_STRING:
        return np.array(list(value), dtype=object)
    array = np.asarray(value, dtype=numpy_dtype(dtype))
    if array.ndim == 0:
        raise ValueError("a scalar input has no rows to batch: give an array with a batch dimension")
    return array


def _generated(signature: Signature, alias: str, count: int) -> np.ndarray:
    info = signature.inputs[alias]
    if info.shape == ():
        raise ValueError(f"input {alias} of {signature.name} is a scalar: it cannot be sent in batches")
    shape = (count, *(d if d > 0 else 1 for d in (info.shape or (-1,))[1:]))
    if info.dtype == DT_STRING:
        return np.array([_tiny_png()] * count, dtype=object)
    dtype = numpy_dtype(info.dtype)
    rng = np.random.default_rng(0)
    if dtype.kind == "f" or dtype.kind == "c":
        return rng.random(shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(0, 10, shape).astype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    raise ValueError(f"cannot generate {data_type_name(info.dtype)} values for input {alias}: pass inputs")


def _tiny_png() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("L", (8, 8), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def folder_images(folder: str | os.PathLike[str], signature: Signature, alias: str) -> np.ndarray:
    """The image files in ``folder`` (sorted by name) as rows for input ``alias``: the encoded bytes
    for a string input, else decoded, converted to the input's channels, resized to its height and
    width, and scaled to [0, 1] for a float input."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    info = signature.inputs[alias]
    if info.dtype == DT_STRING:
        return np.array([p.read_bytes() for p in paths], dtype=object)
    shape = info.shape or ()
    if len(shape) not in (3, 4):
        raise ValueError(f"input {alias} has shape {shape}: images need [batch, height, width(, channels)]")
    from PIL import Image

    channels = shape[3] if len(shape) == 4 and shape[3] > 0 else 3
    if channels not in _PIL_MODES:
        raise ValueError(f"input {alias} wants {channels} channels; images have 1, 3 or 4")
    images = []
    for path in paths:
        with Image.open(path) as image:
            image = image.convert(_PIL_MODES[channels])
            size = (shape[2] if shape[2] > 0 else image.width, shape[1] if shape[1] > 0 else image.height)
            if images and size != images[0].shape[1::-1]:
                size = images[0].shape[1::-1]  # free dimensions: all like the first image
            images.append(np.asarray(image.resize(size) if image.size != size else image))
    pixels = np.stack(images)
    if len(shape) == 4 and pixels.ndim == 3:
        pixels = pixels[..., np.newaxis]
    dtype = numpy_dtype(info.dtype)
    return (pixels / 255.0).astype(dtype) if dtype.kind == "f" else pixels.astype(dtype)
