"""What shadow mode costs production: batch-1 REST Predict p50 / p95 of the digits model with its
A/B experiment in ``off`` mode and in ``shadow`` mode (100 % mirrored to a perturbed model: the demo
model trained 2 epochs with another seed), interleaved rounds, one client (in its own process, as
outside clients are) on a keep-alive connection.
Also reports the shadow comparison (agreement, drops) and the evaluate() verdict. Prints a table and
one JSON line.

    python bench/ab_shadow.py [--requests 600] [--rounds 4]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import json
import multiprocessing
import os
import tempfile
import time

import numpy as np

from nbserve import Server
from nbserve.demo import digits_images, export_demo_model, train_digits_model


def _timed(port: int, bodies: list[bytes], model: str) -> np.ndarray:
    connection = http.client.HTTPConnection("127.0.0.1", port)
    times = np.empty(len(bodies))
    for i, body in enumerate(bodies):
        start = time.perf_counter()
        connection.request("POST", f"/v1/models/{model}:predict", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        times[i] = time.perf_counter() - start
        assert answer.status == 200, answer.status
    connection.close()
    return times * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    images, labels = digits_images()  # the 360 held-out digits, cycled
    bodies = [
        json.dumps({"instances": [images[i % len(images)].tolist()]}).encode() for i in range(args.requests)
    ]
    with tempfile.TemporaryDirectory() as base:
        export_demo_model(train_digits_model(), base, version=1)
        export_demo_model(train_digits_model(seed=7, epochs=2), base, version=2)
        spawn = multiprocessing.get_context("spawn")
        with (
            Server(port=0, rest_api_port=0) as server,
            concurrent.futures.ProcessPoolExecutor(1, spawn) as client,
        ):
            server.load("digits", base, policy="all")
            experiment = server.experiment("digits", production=1, experimental=2, mode="off")
            client.submit(_timed, server.rest_port, bodies[:100], "digits").result()  # warm up
            figures: dict[str, list[np.ndarray]] = {"off": [], "shadow": []}
            for _ in range(args.rounds):
                for mode in ("off", "shadow"):
                    experiment.mode = mode
                    figures[mode].append(client.submit(_timed, server.rest_port, bodies, "digits").result())
                    experiment.wait_shadow(30)
            evaluation = experiment.evaluate([(images, labels)])
            shadow = experiment.snapshot()["shadow_stats"]
    p = {m: {q: float(np.percentile(np.concatenate(v), q)) for q in (50, 95)} for m, v in figures.items()}
    overhead = (p["shadow"][50] / p["off"][50] - 1) * 100
    print(f"{'mode':8} {'p50 ms':>8} {'p95 ms':>8}")
    for mode, q in p.items():
        print(f"{mode:8} {q[50]:8.3f} {q[95]:8.3f}")
    print(f"shadow adds {overhead:+.1f} % to production p50 (target < 10 %)")
    agreement, dropped = shadow["agreement"], shadow["dropped"]
    print(f"shadow pairs {shadow['pairs']}, top-1 agreement {agreement:.3f}, dropped {dropped}")
    print(f"evaluate: {evaluation['verdict']} (difference {evaluation['difference']:+.3f})")
    figures_json = {f"{q}_{mode}_ms": p[mode][int(q[1:])] for mode in p for q in ("p50", "p95")}
    print(json.dumps({"bench": "ab_shadow", **figures_json, "p50_overhead_pct": overhead,
                      "pairs": shadow["pairs"], "agreement": agreement, "dropped": dropped,
                      "evaluate_p_value": evaluation["p_value"]}))  # fmt: skip


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
