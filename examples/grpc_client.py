#!/usr/bin/env python
"""Send images to a TensorFlow Serving gRPC endpoint and print the predicted classes.

A client in the style of TF Serving's classic image tutorials (mnist_client, inception_client):
it works with nbserve or a real TensorFlow Serving (gRPC port 8500 by default) serving a model with
a signature that takes encoded image bytes, such as the demo model's ``predict_images``
(``python -m nbserve.demo``). Needs ``tensorflow`` and ``tensorflow-serving-api``.

    python examples/grpc_client.py --server 127.0.0.1:8500 --image_path demo_images --batch_mode
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".bmp"}


class Prediction(NamedTuple):
    """One image's result: the arg-max class, its score and all class scores."""

    label: int
    score: float
    scores: list[float]


def find_images(image_path: str | Path) -> list[Path]:
    """``image_path`` itself if it is a file, else the image files in that directory, sorted."""
    path = Path(image_path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or directory: {path}")
    images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {path}")
    return images


def build_request(
    images: Sequence[bytes],
    *,
    model_name: str = "digits",
    signature_name: str = "predict_images",
    input_name: str = "images",
    model_version: int | None = None,
) -> predict_pb2.PredictRequest:
    """A PredictRequest whose ``input_name`` is a DT_STRING tensor ``[len(images)]`` of file bytes."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature_name
    if model_version is not None:
        request.model_spec.version.value = model_version
    request.inputs[input_name].CopyFrom(
        tf.make_tensor_proto(list(images), dtype=tf.string, shape=[len(images)])
    )
    return request


def parse_response(response: predict_pb2.PredictResponse, output_name: str = "scores") -> list[Prediction]:
    """One :class:`Prediction` per row of the ``output_name`` tensor ``[batch, classes]``."""
    if output_name not in response.outputs:
        raise ValueError(f"no output {output_name!r} in response (has {sorted(response.outputs)})")
    scores = np.asarray(tf.make_ndarray(response.outputs[output_name]), dtype=np.float64)
    scores = scores.reshape(scores.shape[0], -1)
    labels = scores.argmax(axis=1)
    return [Prediction(int(c), float(row[c]), row.tolist()) for c, row in zip(labels, scores, strict=True)]


def predict(
    server: str,
    images: Sequence[bytes],
    *,
    model_name: str = "digits",
    signature_name: str = "predict_images",
    batch_mode: bool = False,
    model_version: int | None = None,
    input_name: str = "images",
    output_name: str = "scores",
    timeout: float = 30.0,
    stub: prediction_service_pb2_grpc.PredictionServiceStub | None = None,
) -> list[Prediction]:
    """Predict every image: one request for all of them (``batch_mode``) or one request each.

    Opens an insecure channel to ``server`` (``host:port``) unless a ``stub`` is given.
    """
    batches = [list(images)] if batch_mode else [[image] for image in images]
    channel = None
    if stub is None:
        channel = grpc.insecure_channel(server)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    try:
        results: list[Prediction] = []
        for batch in batches:
            request = build_request(
                batch,
                model_name=model_name,
                signature_name=signature_name,
                input_name=input_name,
                model_version=model_version,
            )
            predictions = parse_response(stub.Predict(request, timeout=timeout), output_name)
            if len(predictions) != len(batch):
                raise RuntimeError(f"sent {len(batch)} images, got {len(predictions)} predictions")
            results.extend(predictions)
        return results
    finally:
        if channel is not None:
            channel.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="TF Serving gRPC image classification client.")
    parser.add_argument("--server", default="127.0.0.1:8500", help="gRPC host:port (default %(default)s)")
    parser.add_argument("--image_path", required=True, help="an image file or a directory of images")
    parser.add_argument(
        "--batch_mode",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="send all images in one request (default: one request per image)",
    )
    parser.add_argument("--model_name", default="digits")
    parser.add_argument("--model_version", type=int, default=None, help="default: the latest")
    parser.add_argument("--signature_name", default="predict_images")
    parser.add_argument("--input_name", default="images")
    parser.add_argument("--output_name", default="scores")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        paths = find_images(args.image_path)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    images = [p.read_bytes() for p in paths]

    start = time.perf_counter()
    try:
        predictions = predict(
            args.server,
            images,
            model_name=args.model_name,
            signature_name=args.signature_name,
            batch_mode=args.batch_mode,
            model_version=args.model_version,
            input_name=args.input_name,
            output_name=args.output_name,
            timeout=args.timeout,
        )
    except grpc.RpcError as exc:
        print(f"error: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start

    for path, prediction in zip(paths, predictions, strict=True):
        print(f"{path.name}: class {prediction.label} (score {prediction.score:.4f})")
    requests_sent = 1 if args.batch_mode else len(images)
    print(
        f"{len(images)} image(s) in {requests_sent} request(s): {elapsed:.4f} s total, "
        f"{1000 * elapsed / len(images):.2f} ms per image"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
