"""Batch-1 Predict latency over REST and gRPC, next to the direct in-process call of the same signature.

The server runs as a separate `nbserve` process (as in production); the clients and the direct call run
here, one request at a time. REST is timed with a keep-alive http.client connection (the lean client, so
the figure is the server's) and, for reference, with `requests` (whose own cost is about 1 ms a call).
Prints a table and one JSON line.

    python bench/latency.py [--requests 2000] [--model_base_path /abs/dir --model_name m --signature s]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np
from server_process import ServerProcess


def _measure(call: Callable[[], object], count: int, warmup: int) -> np.ndarray:
    for _ in range(warmup):
        call()
    times = np.empty(count)
    for index in range(count):
        start = time.perf_counter()
        call()
        times[index] = time.perf_counter() - start
    return times * 1000.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--model_base_path", help="serve this model instead of the demo digits model")
    parser.add_argument("--model_name", default="digits")
    parser.add_argument("--signature", default="serving_default")
    args = parser.parse_args(argv)

    import grpc
    import requests
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    base_path = args.model_base_path
    if base_path is None:
        from nbserve.demo import export_demo_model, train_digits_model

        base_path = os.path.join(tempfile.mkdtemp(prefix="nbserve-bench-"), args.model_name)
        export_demo_model(train_digits_model(), base_path, version=1)
    version = max(int(v) for v in os.listdir(base_path) if v.isdigit())
    signature = tf.saved_model.load(os.path.join(base_path, str(version))).signatures[args.signature]
    ((alias, spec),) = signature.structured_input_signature[1].items()
    example = np.zeros([1 if d is None else d for d in spec.shape], spec.dtype.as_numpy_dtype)

    server = ServerProcess(base_path, args.model_name)
    grpc_port, rest_port = server.grpc_port, server.rest_port
    try:
        direct_input = tf.constant(example)
        results = {"direct": _measure(lambda: signature(**{alias: direct_input}), args.requests, args.warmup)}

        stub = prediction_service_pb2_grpc.PredictionServiceStub(
            grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        )
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = args.model_name, args.signature
        request.inputs[alias].CopyFrom(tf.make_tensor_proto(example))
        results["grpc"] = _measure(lambda: stub.Predict(request, timeout=30), args.requests, args.warmup)

        body = json.dumps({"signature_name": args.signature, "instances": example.tolist()}).encode()
        headers = {"Content-Type": "application/json"}
        path = f"/v1/models/{args.model_name}:predict"
        connection = http.client.HTTPConnection("127.0.0.1", rest_port)

        def rest_call() -> bytes:
            connection.request("POST", path, body=body, headers=headers)
            return connection.getresponse().read()

        results["rest"] = _measure(rest_call, args.requests, args.warmup)
        session = requests.Session()
        url = f"http://127.0.0.1:{rest_port}{path}"
        results["rest_requests"] = _measure(
            lambda: session.post(url, data=body, headers=headers), args.requests, args.warmup
        )
    finally:
        server.stop()

    figures = {
        name: {
            "p50_ms": float(np.percentile(t, 50)),
            "p99_ms": float(np.percentile(t, 99)),
            "mean_ms": float(t.mean()),
        }
        for name, t in results.items()
    }
    direct = figures["direct"]
    print(f"batch-1 Predict, {args.model_name}/{args.signature}, {args.requests} sequential requests each")
    print(f"{'path':<14}{'p50 ms':>10}{'p99 ms':>10}{'mean ms':>10}{'p50 - direct':>15}")
    for name, figure in figures.items():
        extra = figure["p50_ms"] - direct["p50_ms"]
        print(
            f"{name:<14}{figure['p50_ms']:>10.3f}{figure['p99_ms']:>10.3f}{figure['mean_ms']:>10.3f}{extra:>15.3f}"
        )
    summary = {
        "bench": "latency",
        "requests": args.requests,
        **{
            f"{name}_{key}": round(value, 4)
            for name, figure in figures.items()
            for key, value in figure.items()
        },
        "grpc_overhead_p50_ms": round(figures["grpc"]["p50_ms"] - direct["p50_ms"], 4),
        "rest_overhead_p50_ms": round(figures["rest"]["p50_ms"] - direct["p50_ms"], 4),
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
