"""A client outside the kernel, as a user writes one: REST with requests, gRPC with the official
tensorflow-serving-api stubs. Prints the answers as one JSON document."""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time

import grpc
import requests
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rest", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument(
        "--inputs", required=True, help="JSON file to wait for: instances, image paths, aliases"
    )
    parser.add_argument("--images-signature", required=True)
    args = parser.parse_args(argv)
    # Started early so importing TensorFlow overlaps the kernel's work; the inputs file says "go".
    deadline = time.time() + 120
    while not os.path.exists(args.inputs) and time.time() < deadline:
        time.sleep(0.05)
    with open(args.inputs) as handle:
        spec = json.load(handle)
    images = [open(path, "rb").read() for path in spec["images"]]
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(args.grpc))
    url = f"{args.rest}/v1/models/{args.model}:predict"
    answers: dict[str, object] = {}

    answers["rest"] = requests.post(url, json={"instances": spec["instances"]}, timeout=30).json()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = args.model
    request.inputs[spec["input"]].CopyFrom(tf.make_tensor_proto(spec["instances"], dtype=tf.float32))
    answers["grpc"] = {
        k: tf.make_ndarray(v).tolist() for k, v in stub.Predict(request, timeout=30).outputs.items()
    }

    body = {
        "signature_name": args.images_signature,
        "instances": [{"b64": base64.b64encode(image).decode()} for image in images],
    }
    answers["rest_b64"] = requests.post(url, json=body, timeout=30).json()
    request = predict_pb2.PredictRequest()
    request.model_spec.name = args.model
    request.model_spec.signature_name = args.images_signature
    request.inputs[spec["image_input"]].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    answers["grpc_bytes"] = {
        k: tf.make_ndarray(v).tolist() for k, v in stub.Predict(request, timeout=30).outputs.items()
    }
    json.dump(answers, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
