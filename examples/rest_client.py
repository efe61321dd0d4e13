#!/usr/bin/env python
"""Send images to a TensorFlow Serving REST endpoint and print the predicted classes.

A client in the style of TF Serving's classic image tutorials: it works with nbserve or a real
TensorFlow Serving (REST port 8501 by default) serving a model with a signature that takes encoded
image bytes, such as the demo model's ``predict_images`` (``python -m nbserve.demo``).

    python examples/rest_client.py --server 127.0.0.1:8501 --image_path demo_images --batch_mode

Each image travels base64-encoded in the row ("instances") format:
``{"signature_name": "predict_images", "instances": [{"b64": "..."}, ...]}``.
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import requests

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


def predict_url(server: str, model_name: str, model_version: int | None = None) -> str:
    """The ``:predict`` URL; ``server`` is ``host:port`` or a full ``http(s)://`` base URL."""
    base = server if "://" in server else f"http://{server}"
    version = f"/versions/{model_version}" if model_version is not None else ""
    return f"{base.rstrip('/')}/v1/models/{model_name}{version}:predict"


def build_request(images: Sequence[bytes], signature_name: str) -> dict[str, Any]:
    """The JSON body: one ``{"b64": ...}`` instance per encoded image (row format)."""
    return {
        "signature_name": signature_name,
        "instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images],
    }


def parse_predictions(body: dict[str, Any], output_name: str = "scores") -> list[Prediction]:
    """Turn a row-format response into one :class:`Prediction` per instance.

    With a single output each prediction is the score list itself; with several outputs it is a
    dict and ``output_name`` selects the scores.
    """
    if "predictions" not in body:
        raise ValueError(f"response has no 'predictions': {body!r:.200}")
    results = []
    for row in body["predictions"]:
        scores = [float(s) for s in (row[output_name] if isinstance(row, dict) else row)]
        label = max(range(len(scores)), key=scores.__getitem__)
        results.append(Prediction(label, scores[label], scores))
    return results


def _post(session: requests.Session, url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    response = session.post(url, json=body, timeout=timeout)
    if response.status_code != 200:
        try:
            message = response.json().get("error", response.text)
        except ValueError:
            message = response.text
        raise RuntimeError(f"HTTP {response.status_code} from {url}: {message}")
    return response.json()


def predict(
    server: str,
    images: Sequence[bytes],
    *,
    model_name: str = "digits",
    signature_name: str = "predict_images",
    batch_mode: bool = False,
    model_version: int | None = None,
    output_name: str = "scores",
    timeout: float = 30.0,
    session: requests.Session | None = None,
) -> list[Prediction]:
    """Predict every image: one request for all of them (``batch_mode``) or one request each."""
    url = predict_url(server, model_name, model_version)
    batches = [list(images)] if batch_mode else [[image] for image in images]
    own_session = session is None
    session = session or requests.Session()
    try:
        results: list[Prediction] = []
        for batch in batches:
            body = _post(session, url, build_request(batch, signature_name), timeout)
            predictions = parse_predictions(body, output_name)
            if len(predictions) != len(batch):
                raise RuntimeError(f"sent {len(batch)} images, got {len(predictions)} predictions")
            results.extend(predictions)
        return results
    finally:
        if own_session:
            session.close()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="TF Serving REST image classification client.")
    parser.add_argument("--server", default="127.0.0.1:8501", help="REST host:port (default %(default)s)")
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
    parser.add_argument("--output_name", default="scores", help="output to read if there are several")
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
            output_name=args.output_name,
            timeout=args.timeout,
        )
    except (requests.RequestException, RuntimeError, ValueError) as exc:
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
