"""Dynamic batching under load: throughput and latency with batching off vs on, over gRPC and REST.

A dense model (784 -> width x depth -> 10; at batch 1 it is bound by reading its weights, so batching pays
off even on a CPU) is exported to a temp dir and served by a separate ``nbserve`` process, once without and
once with ``--enable_batching``. Client processes send one-row Predict requests one at a time, 1, 8 and 32
clients at once, for ``--duration`` seconds per cell; then one client sends one request of N rows vs N
one-row requests (the example clients' two modes). The model's own throughput at max_batch_size by direct
call is measured in this process. The server's Prometheus page (``--monitoring_config_file``) tells the mean
executed batch size, queue delay and runtime latency of each cell. Prints a table and one JSON line.

Clients send pre-serialized requests (raw gRPC bytes, HTTP/1.1 keep-alive), so their own CPU cost, which
shares the machine with the server, stays small. Both servers get ``--grpc_max_threads`` and
``--rest_api_num_threads`` above the client count: a request waiting in a batch holds its thread.

    python bench/batching.py [--duration 5] [--max_batch_size 32] [--batch_timeout_micros 2000] [--depth 3]
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from server_process import ServerProcess

INPUTS, CLASSES = 784, 10
MODEL = "dense"
PREDICT = "/tensorflow.serving.PredictionService/Predict"
REST_PATH = f"/v1/models/{MODEL}:predict"
METRICS_PATH = "/monitoring/prometheus/metrics"
RUNTIME_BUCKET = ":tensorflow:serving:runtime_latency_bucket"


# ---------------------------------------------------------------------------------------------- model


def export_model(base_path: str, width: int, depth: int) -> str:
    """Export the dense model as ``base_path/1``: ``serving_default`` maps x [None, 784] to probabilities."""
    import tensorflow as tf

    class Dense(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            rng = tf.random.Generator.from_seed(0)
            sizes = [INPUTS] + [width] * depth + [CLASSES]
            self.weights = [
                tf.Variable(rng.normal([a, b], stddev=a**-0.5))
                for a, b in zip(sizes, sizes[1:], strict=False)
            ]

        @tf.function(input_signature=[tf.TensorSpec([None, INPUTS], tf.float32, name="x")])
        def predict(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            for w in self.weights[:-1]:
                x = tf.nn.relu(x @ w)
            return {"probabilities": tf.nn.softmax(x @ self.weights[-1])}

    module = Dense()
    path = os.path.join(base_path, "1")
    tf.saved_model.save(module, path, signatures={"serving_default": module.predict})
    return path


def time_direct(path: str, batch_sizes: list[int], seconds: float) -> tuple[dict[int, float], Any]:
    """Median seconds per call of the signature at each batch size, and its output for row 0 of the input."""
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(path).signatures["serving_default"]
    rows = _rows(max(batch_sizes))
    timings = {}
    for n in batch_sizes:
        x = tf.constant(rows[:n])
        for _ in range(5):
            signature(x=x)
        times = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 10:
            start = time.perf_counter()
            signature(x=x)["probabilities"].numpy()
            times.append(time.perf_counter() - start)
        timings[n] = float(np.median(times))
    return timings, signature(x=tf.constant(rows[:1]))["probabilities"].numpy()[0]


def _rows(n: int) -> Any:
    import numpy as np

    return np.random.default_rng(1).random((n, INPUTS), dtype=np.float32)


def grpc_request(rows: Any) -> bytes:
    from nbserve.protos.tensorflow_serving.apis import predict_pb2
    from nbserve.tensors import ndarray_to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["x"].CopyFrom(ndarray_to_tensor_proto(rows, use_tensor_content=True))
    return request.SerializeToString()


def rest_request(rows: Any) -> bytes:
    return json.dumps({"instances": rows.tolist()}).encode()


def first_row(transport: str, response: bytes) -> Any:
    """Row 0 of the ``probabilities`` output of a Predict response."""
    import numpy as np

    if transport == "rest":
        return np.asarray(json.loads(response)["predictions"][0], np.float32)
    from nbserve.protos.tensorflow_serving.apis import predict_pb2
    from nbserve.tensors import tensor_proto_to_ndarray

    message = predict_pb2.PredictResponse.FromString(response)
    return tensor_proto_to_ndarray(message.outputs["probabilities"], "probabilities")[0]


# ---------------------------------------------------------------------------------------------- clients


def _caller(transport: str, address: str) -> tuple[Callable[[bytes], bytes], Callable[[], None]]:
    """A blocking ``call(payload) -> response bytes`` over one connection, and its close."""
    if transport == "grpc":
        import grpc

        channel = grpc.insecure_channel(address)
        predict = channel.unary_unary(PREDICT)  # bytes in, bytes out: no client-side (de)serialization
        return (lambda payload: predict(payload, timeout=60)), channel.close
    host, port = address.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    headers = {"Content-Type": "application/json"}

    def post(payload: bytes) -> bytes:
        connection.request("POST", REST_PATH, payload, headers)
        answer = connection.getresponse()
        body = answer.read()
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {body[:200]!r}")
        return body

    return post, connection.close


def client_process(conn: Connection) -> None:
    """A client: runs the commands its pipe sends until it receives None."""
    while (command := conn.recv()) is not None:
        kind, transport, address, *rest = command
        call, close = _caller(transport, address)
        try:
            conn.send(_load(call, *rest) if kind == "load" else _modes(call, *rest))
        finally:
            close()


def _load(call: Callable[[bytes], bytes], payload: bytes, t_start: float, t_end: float) -> dict[str, Any]:
    """One-by-one requests from t_start to t_end (wall clock, shared by all clients)."""
    first = call(payload)  # connect before the window opens
    latencies, errors = [], []
    time.sleep(max(0.0, t_start - time.time()))
    while (start := time.time()) < t_end:
        try:
            call(payload)
        except Exception as error:  # noqa: BLE001 - reported, the load goes on
            errors.append(str(error)[:200])
            continue
        end = time.time()
        if end <= t_end:
            latencies.append(end - start)
    return {"latencies": latencies, "errors": errors, "first": first}


def _modes(
    call: Callable[[bytes], bytes], batch: bytes, single: bytes, n: int, repeats: int
) -> dict[str, Any]:
    """One request of n rows vs n one-row requests, each timed ``repeats`` times."""
    call(batch)
    call(single)
    one_batch, one_by_one = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        call(batch)
        one_batch.append(time.perf_counter() - start)
        start = time.perf_counter()
        for _ in range(n):
            call(single)
        one_by_one.append(time.perf_counter() - start)
    return {"one_batch": one_batch, "one_by_one": one_by_one}


class Clients:
    """A pool of client processes (spawned: no TensorFlow, no forked gRPC state)."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("spawn")
        self.pipes: list[Connection] = []
        self.processes = []
        for _ in range(count):
            parent, child = context.Pipe()
            process = context.Process(target=client_process, args=(child,), daemon=True)
            process.start()
            self.pipes.append(parent)
            self.processes.append(process)

    def load(self, clients: int, transport: str, address: str, payload: bytes, seconds: float) -> list[dict]:
        t_start = time.time() + 1.0
        for pipe in self.pipes[:clients]:
            pipe.send(("load", transport, address, payload, t_start, t_start + seconds))
        return [pipe.recv() for pipe in self.pipes[:clients]]

    def modes(self, transport: str, address: str, batch: bytes, single: bytes, n: int, repeats: int) -> dict:
        self.pipes[0].send(("modes", transport, address, batch, single, n, repeats))
        return self.pipes[0].recv()

    def close(self) -> None:
        for pipe in self.pipes:
            pipe.send(None)
        for process in self.processes:
            process.join(timeout=10)


# ---------------------------------------------------------------------------------------------- server


# ---------------------------------------------------------------------------------------------- run


@dataclass
class Results:
    direct_s: dict[int, float]  # batch size -> seconds per direct call
    load: dict[tuple[str, str, int], dict[str, float]] = field(
        default_factory=dict
    )  # (mode, transport, clients)
    modes: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # (mode, transport)


def server_figures(server: ServerProcess) -> dict[str, float]:
    """Every histogram's ``_sum`` and ``_count``, and runtime_latency's buckets as ``name@le`` (summed over
    label sets), from the server's metrics page."""
    with urllib.request.urlopen(f"http://{server.rest}{METRICS_PATH}", timeout=10) as answer:
        page = answer.read().decode()
    figures: dict[str, float] = {}
    for line in page.splitlines():
        name = line.partition("{")[0].partition(" ")[0]
        if name == RUNTIME_BUCKET:
            name += "@" + line.split('le="', 1)[1].split('"', 1)[0]
        elif not name.endswith(("_sum", "_count")):
            continue
        figures[name] = figures.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return figures


def _runtime_p99_ms(before: dict[str, float], after: dict[str, float]) -> float:
    """The upper bound of the runtime_latency bucket holding the window's 99th percentile."""
    buckets = sorted(
        (float(key.split("@")[1]), after[key] - before.get(key, 0.0))
        for key in after
        if key.startswith(RUNTIME_BUCKET)
    )
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, cumulative in buckets if cumulative >= 0.99 * total), 0.0) / 1000


def _mean(before: dict[str, float], after: dict[str, float], metric: str) -> float:
    name = f":tensorflow:serving:{metric}"
    count = after.get(name + "_count", 0.0) - before.get(name + "_count", 0.0)
    return (after.get(name + "_sum", 0.0) - before.get(name + "_sum", 0.0)) / count if count else 0.0


def run(args: argparse.Namespace, clients: list[int], transports: list[str]) -> Results:
    import numpy as np

    workdir = tempfile.mkdtemp(prefix="nbserve-bench-batching-")
    base_path = os.path.join(workdir, MODEL)
    path = export_model(base_path, args.width, args.depth)
    direct, expected = time_direct(path, [1, args.max_batch_size], seconds=2.0)
    results = Results(direct)
    params = _write(
        os.path.join(workdir, "batching.pbtxt"),
        f"max_batch_size {{ value: {args.max_batch_size} }} batch_timeout_micros {{ value: "
        f"{args.batch_timeout_micros} }} max_enqueued_batches {{ value: 1000 }} num_batch_threads {{ value: "
        f"{args.num_batch_threads} }}",
    )
    monitoring = _write(os.path.join(workdir, "monitoring.pbtxt"), "prometheus_config { enable: true }")
    common = [
        f"--grpc_max_threads={args.server_threads}",
        f"--rest_api_num_threads={args.server_threads}",
        f"--monitoring_config_file={monitoring}",
    ]
    modes = {"off": common, "on": [*common, "--enable_batching", f"--batching_parameters_file={params}"]}
    rows = _rows(args.n)
    payloads = {
        "grpc": (grpc_request(rows[:1]), grpc_request(rows)),
        "rest": (rest_request(rows[:1]), rest_request(rows)),
    }
    pool = Clients(max(clients))
    try:
        for mode, flags in modes.items():
            server = ServerProcess(base_path, MODEL, flags)
            try:
                for transport in transports:
                    single, batch = payloads[transport]
                    address = server.address(transport)
                    pool.load(max(clients), transport, address, single, 1.0)  # warm up
                    for count in clients:
                        before = server_figures(server)
                        answers = pool.load(count, transport, address, single, args.duration)
                        after = server_figures(server)
                        errors = [e for r in answers for e in r["errors"]]
                        if errors:
                            raise SystemExit(
                                f"{mode}/{transport}/{count}: {len(errors)} errors, e.g. {errors[0]}"
                            )
                        if not np.allclose(first_row(transport, answers[0]["first"]), expected, atol=1e-5):
                            raise SystemExit(
                                f"{mode}/{transport}: the server's answer differs from the model's"
                            )
                        latencies = np.concatenate([r["latencies"] for r in answers]) * 1000
                        results.load[mode, transport, count] = {
                            "rps": len(latencies) / args.duration,
                            "p50_ms": float(np.percentile(latencies, 50)),
                            "p99_ms": float(np.percentile(latencies, 99)),
                            "mean_batch": _mean(before, after, "batching_session:processed_batch_size"),
                            "queue_ms": _mean(before, after, "batching_session:queuing_latency") / 1000,
                            "runtime_ms": _mean(before, after, "runtime_latency") / 1000,
                            "runtime_p99_ms": _runtime_p99_ms(before, after),
                        }
                    timed = pool.modes(transport, address, batch, single, args.n, args.repeats)
                    results.modes[mode, transport] = {k: float(np.median(v)) * 1000 for k, v in timed.items()}
            finally:
                server.stop()
    finally:
        pool.close()
    return results


def report(args: argparse.Namespace, results: Results, clients: list[int], transports: list[str]) -> dict:
    """Print the table; return the summary for the JSON line."""
    direct, model_ms = results.direct_s, results.direct_s[args.max_batch_size] * 1000
    print(
        f"{MODEL} model (784 -> {args.width} x {args.depth} -> 10), one-row Predict requests; batching on: "
        f"max_batch_size={args.max_batch_size} batch_timeout_micros={args.batch_timeout_micros} "
        f"num_batch_threads={args.num_batch_threads}; {args.duration:g} s per cell, {os.cpu_count()} CPUs"
    )
    print(
        f"{'transport':<10}{'clients':>8}{'off req/s':>11}{'on req/s':>10}{'speedup':>9}{'off p50':>9}"
        f"{'off p99':>9}{'on p50':>9}{'on p99':>9}{'batch':>7}{'queue':>7}{'run':>7}"
    )
    for transport in transports:
        for count in clients:
            off, on = results.load["off", transport, count], results.load["on", transport, count]
            speedup = on["rps"] / off["rps"]
            print(
                f"{transport:<10}{count:>8}{off['rps']:>11.0f}{on['rps']:>10.0f}{speedup:>8.2f}x"
                f"{off['p50_ms']:>9.2f}{off['p99_ms']:>9.2f}{on['p50_ms']:>9.2f}{on['p99_ms']:>9.2f}"
                f"{on['mean_batch']:>7.1f}{on['queue_ms']:>7.2f}{on['runtime_ms']:>7.2f}"
            )
    print(
        "(latencies in ms, at the clients; batching on, from the server's metrics: mean executed batch size,"
        " mean queue delay, mean runtime_latency = queue delay + batch run)"
    )
    print(f"one batch of {args.n} rows vs {args.n} one-by-one requests (ms, median of {args.repeats}):")
    for (mode, transport), figures in results.modes.items():
        print(
            f"  batching {mode:<4}{transport:<6}one batch {figures['one_batch']:>8.2f}"
            f"   one-by-one {figures['one_by_one']:>8.2f}"
        )
    max_rate = args.max_batch_size / direct[args.max_batch_size]
    print(
        f"direct call: batch 1 {direct[1] * 1000:.2f} ms ({1 / direct[1]:.0f} rows/s), "
        f"batch {args.max_batch_size} {model_ms:.2f} ms ({max_rate:.0f} rows/s)"
    )
    summary: dict[str, Any] = {
        "bench": "batching",
        "cpus": os.cpu_count(),
        "duration_s": args.duration,
        "max_batch_size": args.max_batch_size,
        "batch_timeout_micros": args.batch_timeout_micros,
        "num_batch_threads": args.num_batch_threads,
        "direct_batch1_ms": round(direct[1] * 1000, 4),
        "direct_max_batch_ms": round(model_ms, 4),
        "direct_max_batch_rows_per_s": round(max_rate, 1),
    }
    for (mode, transport, count), figures in results.load.items():
        summary.update({f"{transport}_{count}_{mode}_{k}": round(v, 3) for k, v in figures.items()})
    for (mode, transport), figures in results.modes.items():
        summary.update({f"{transport}_{mode}_{k}_{args.n}_ms": round(v, 3) for k, v in figures.items()})
    if "grpc" in transports:
        top = max(clients)
        on, off = results.load["on", "grpc", top], results.load["off", "grpc", top]
        bound = 3 * args.batch_timeout_micros / 1000 + model_ms
        speedup = on["rps"] / off["rps"]
        print(
            f"target, gRPC {top} clients: speedup {speedup:.2f}x (>= 4x); p99 {on['p99_ms']:.1f} ms at the "
            f"clients, <= {on['runtime_p99_ms']:.1f} ms in batching (runtime_latency bucket) vs 3 x "
            f"batch_timeout + batch-{args.max_batch_size} model time = {bound:.1f} ms"
        )
        summary.update(
            {
                f"grpc_{top}_speedup": round(speedup, 3),
                f"grpc_{top}_p99_bound_ms": round(bound, 3),
                "target_met": on["rps"] >= 4 * off["rps"] and on["p99_ms"] <= bound,
            }
        )
    return summary


def _write(path: str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load cell")
    parser.add_argument("--clients", default="1,8,32", help="concurrent one-by-one clients per cell")
    parser.add_argument("--transports", default="grpc,rest")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--depth", type=int, default=3)
    parser.add_argument("--max_batch_size", type=int, default=32)
    parser.add_argument("--batch_timeout_micros", type=int, default=2000)
    # TF runs each batch on every core already: on a small CPU box one batch thread keeps batches fuller.
    parser.add_argument("--num_batch_threads", type=int, default=1)
    parser.add_argument(
        "--server_threads", type=int, default=64, help="--grpc_max_threads, --rest_api_num_threads"
    )
    parser.add_argument("--n", type=int, default=32, help="rows for one batch of N vs N one-by-one")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    clients = [int(c) for c in args.clients.split(",")]
    transports = args.transports.split(",")
    summary = report(args, run(args, clients, transports), clients, transports)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
