"""Soak: mixed REST and gRPC Predict traffic from separate client processes against a `python -m nbserve`
server process, with a hot swap every few seconds (a new version directory dropped in, the serving one
removed at the same moment). Every answer is checked; the server's RSS is sampled the whole time.
Prints a table and one JSON line; exits 1 if any request failed or RSS grew more than --max-rss-growth %.

    python bench/soak.py [--seconds 300] [--swap-every 10] [--rest-clients 2] [--grpc-clients 2]
                         [--model_base_path /abs/dir --model_name m]   # default: the demo digits model
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from server_process import ServerProcess  # noqa: E402

_MAX_MESSAGES = 5


def _client(kind: str, address: str, model: str, image: np.ndarray, until: float) -> dict[str, Any]:
    """One client process: batch-1 predictions until ``until`` (wall clock), every answer checked
    against the first one (all versions are copies of one model)."""
    from nbserve import tensors

    if kind == "rest":
        host, port = address.rsplit(":", 1)
        body = json.dumps({"instances": image.tolist()}).encode()
        path = f"/v1/models/{model}:predict"
        connection = http.client.HTTPConnection(host, int(port), timeout=30)

        def call() -> tuple[np.ndarray, str]:
            connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            answer = connection.getresponse()
            data = answer.read()
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}: {data[:300]!r}")
            return np.asarray(json.loads(data)["predictions"], np.float32), answer.getheader(
                "X-Nbserve-Model-Version", ""
            )

        def reset() -> None:
            connection.close()

    else:
        import grpc

        from nbserve.protos.tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        channel = grpc.insecure_channel(address)
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs["images"].CopyFrom(tensors.ndarray_to_tensor_proto(image))

        def call() -> tuple[np.ndarray, str]:
            answer = stub.Predict(request, timeout=30)
            scores = tensors.tensor_proto_to_ndarray(answer.outputs["scores"], "scores")
            return scores, str(answer.model_spec.version.value)

        def reset() -> None:
            pass

    latencies: list[float] = []
    failures, messages, versions = 0, [], set()
    expected: np.ndarray | None = None
    while time.time() < until:
        start = time.perf_counter()
        try:
            scores, version = call()
            if expected is None:
                expected = scores
            if scores.shape != expected.shape or not np.allclose(scores, expected, rtol=1e-5, atol=1e-7):
                raise RuntimeError(f"wrong answer from version {version}: {scores.tolist()}")
            versions.add(version)
        except Exception as error:  # any failure counts, whatever its kind
            failures += 1
            if len(messages) < _MAX_MESSAGES:
                messages.append(f"{kind}: {type(error).__name__}: {error}")
            reset()
        latencies.append((time.perf_counter() - start) * 1000.0)
    return {
        "kind": kind,
        "latencies": latencies,
        "failures": failures,
        "messages": messages,
        "versions": versions,
    }


def _install(template: str, base_path: str, version: int) -> None:
    """Drop a copy of the template in as ``version``: written beside, then renamed (atomic)."""
    temp = os.path.join(base_path, f".tmp-{version}")
    shutil.copytree(template, temp)
    os.rename(temp, os.path.join(base_path, str(version)))


def _template(args: argparse.Namespace, workdir: str) -> str:
    """The SavedModel version directory every swap copies."""
    if args.model_base_path:
        versions = [int(v) for v in os.listdir(args.model_base_path) if v.isdigit()]
        return os.path.join(args.model_base_path, str(max(versions)))
    from nbserve.demo import export_demo_model, train_digits_model

    return export_demo_model(train_digits_model(), os.path.join(workdir, "template"), version=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--swap-every", type=float, default=10)
    parser.add_argument("--rest-clients", type=int, default=2)
    parser.add_argument("--grpc-clients", type=int, default=2)
    parser.add_argument("--max-rss-growth", type=float, default=10.0, help="percent; above it the run fails")
    parser.add_argument(
        "--model_base_path",
        help="copy this model's latest version instead (a digits-like model: input 'images' float "
        "[N, 8, 8, 1], output 'scores')",
    )
    parser.add_argument("--model_name", default="digits")
    args = parser.parse_args(argv)

    import psutil

    workdir = tempfile.mkdtemp(prefix="nbserve-soak-")
    template = _template(args, workdir)
    image = np.linspace(0.0, 1.0, 64, dtype=np.float32).reshape(1, 8, 8, 1)
    base_path = os.path.join(workdir, args.model_name)
    os.makedirs(base_path)
    version = 1
    _install(template, base_path, version)
    server = ServerProcess(base_path, args.model_name)
    grpc_port, rest_port = server.grpc_port, server.rest_port
    process = psutil.Process(server.pid)
    kinds = ["rest"] * args.rest_clients + ["grpc"] * args.grpc_clients
    addresses = {"rest": f"127.0.0.1:{rest_port}", "grpc": f"127.0.0.1:{grpc_port}"}
    rss: list[int] = []
    swaps = 0
    try:
        pool = concurrent.futures.ProcessPoolExecutor(
            len(kinds), mp_context=multiprocessing.get_context("spawn")
        )
        with pool:
            until = time.time() + 3.0 + args.seconds  # 3 s for the client processes to start
            futures = [
                pool.submit(_client, kind, addresses[kind], args.model_name, image, until) for kind in kinds
            ]
            time.sleep(3.0)
            rss.append(process.memory_info().rss)
            next_swap = time.time() + args.swap_every
            while time.time() < until:
                time.sleep(max(0.0, min(1.0, next_swap - time.time(), until - time.time())))
                rss.append(process.memory_info().rss)
                if time.time() >= next_swap and until - time.time() > 1.0:
                    version += 1
                    _install(template, base_path, version)
                    shutil.rmtree(os.path.join(base_path, str(version - 1)))
                    swaps += 1
                    next_swap += args.swap_every
            results = [future.result() for future in futures]
        rss.append(process.memory_info().rss)
    finally:
        server.stop(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)

    figures: dict[str, dict[str, float]] = {}
    for kind in ("rest", "grpc", "all"):
        mine = [r for r in results if kind in ("all", r["kind"])]
        times = np.concatenate([np.asarray(r["latencies"]) for r in mine]) if mine else np.zeros(0)
        figures[kind] = {
            "requests": int(times.size),
            "failures": sum(r["failures"] for r in mine),
            "p50_ms": float(np.percentile(times, 50)) if times.size else 0.0,
            "p99_ms": float(np.percentile(times, 99)) if times.size else 0.0,
        }
    versions = sorted({v for r in results for v in r["versions"]}, key=lambda v: int(v or 0))
    messages = [m for r in results for m in r["messages"]][:_MAX_MESSAGES]
    start_mb, end_mb, peak_mb = rss[0] / 2**20, rss[-1] / 2**20, max(rss) / 2**20
    growth = (end_mb - start_mb) / start_mb * 100.0

    print(
        f"soak: {args.seconds:.0f} s, hot swap every {args.swap_every:g} s ({swaps} swaps, "
        f"{len(versions)} versions answered), "
        f"{args.rest_clients} REST + {args.grpc_clients} gRPC client processes"
    )
    print(f"{'traffic':<8}{'requests':>10}{'failures':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for kind, figure in figures.items():
        print(
            f"{kind:<8}{figure['requests']:>10}{figure['failures']:>10}"
            f"{figure['p50_ms']:>10.3f}{figure['p99_ms']:>10.3f}"
        )
    print(
        f"server RSS: start {start_mb:.1f} MB, end {end_mb:.1f} MB, peak {peak_mb:.1f} MB, "
        f"growth {growth:+.1f}%"
    )
    for message in messages:
        print(f"  failure: {message}")
    summary = {
        "bench": "soak",
        "seconds": args.seconds,
        "swap_every": args.swap_every,
        "swaps": swaps,
        "versions_answered": len(versions),
        **{f"{kind}_{key}": round(value, 4) for kind, f in figures.items() for key, value in f.items()},
        "rss_start_mb": round(start_mb, 1),
        "rss_end_mb": round(end_mb, 1),
        "rss_peak_mb": round(peak_mb, 1),
        "rss_growth_pct": round(growth, 2),
    }
    print(json.dumps(summary))
    return 0 if figures["all"]["failures"] == 0 and growth < args.max_rss_growth else 1


if __name__ == "__main__":
    sys.exit(main())
