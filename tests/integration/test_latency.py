"""The latency lab against real servers with the demo digits model: the numbers add up, every request
is answered, one batch of N beats N one-by-one per row, results are written, runs cancel cleanly."""

from __future__ import annotations

import csv
import json
import socket
import time

import numpy as np
import psutil
import pytest

from nbserve import latency
from nbserve.demo import digits_images
from nbserve.latency.plots import figures

N = 64


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return digits_images(N)[0]


def _rounds(result: latency.CaseResult) -> list[list[float]]:
    per_round = result.case.requests
    return [result.latencies_s[i : i + per_round] for i in range(0, result.sent, per_round)]


def test_batch_vs_one_by_one_over_rest_and_grpc(server, images, tmp_path) -> None:
    seen: list[latency.Progress] = []
    report = latency.run(
        "digits", server=server, n=N, inputs=images, transports=("rest", "grpc"),
        modes=("batch", "sequential", "concurrent"), concurrency=4, repeats=3, on_progress=seen.append,
    )  # fmt: skip
    assert report.complete and not report.cancelled
    assert len(report.cases) == 6 and {c.case.batching for c in report.cases} == {"off"}
    for result in report.cases:
        case = result.case
        assert result.sent == result.answered == 3 * case.requests and not result.failed
        assert result.rows == N and len(result.rounds_s) == 3
        for wall, latencies in zip(result.rounds_s, _rounds(result), strict=True):
            total = sum(latencies)
            assert max(latencies) <= wall * 1.0001
            if case.mode == "batch":
                assert wall == pytest.approx(latencies[0])
            elif case.mode == "sequential":  # one after the other: the gaps are the client's bookkeeping
                assert 0.7 * wall <= total <= wall * 1.0001
            else:  # k clients side by side
                assert total <= case.clients * wall * 1.0001
        assert result.rows_per_s == pytest.approx(N / result.total_s)
    for transport in ("rest", "grpc"):
        batch, one_by_one = report.find(transport, "batch"), report.find(transport, "sequential")
        assert batch.per_row_s < one_by_one.per_row_s, report.table()

    phases = [p.phase for p in seen]
    assert phases[0] == "servers" and phases[-1] == "done" and "running" in phases
    assert seen[-1].done == seen[-1].total == 3 * (2 * (1 + N + N))

    summary = report.to_csv(tmp_path / "summary.csv")
    with open(summary, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["case"] for r in rows] == [c.case.label for c in report.cases]
    assert all(r["failed"] == "0" and int(r["answered"]) == int(r["requests"]) for r in rows)
    with open(report.to_json(tmp_path / "run.json")) as handle:
        doc = json.load(handle)
    assert doc["meta"]["n"] == N and doc["meta"]["model"] == "digits"
    assert sum(len(c["latencies_s"]) for c in doc["cases"]) == sum(c.sent for c in report.cases)
    assert latency.LatencyReport.from_json(tmp_path / "run.json").summaries() == report.summaries()


def test_inprocess_sweep_and_batching_off_vs_on(models, images) -> None:
    report = latency.run(
        "digits", model_base_path=models.digits, n=16, inputs=images, transports=("grpc", "inprocess"),
        modes=("batch", "concurrent", "sweep"), batch_sizes=(1, 4, 16), concurrency=4, repeats=1,
        batching=("off", "on"),
    )  # fmt: skip
    assert report.complete, report.table()
    labels = {c.case.label for c in report.cases}
    assert {
        "grpc batch [batching off]",
        "grpc concurrent k=4 [batching on]",
        "inprocess sweep b=16",
    } <= labels
    assert len(report.cases) == 2 * 5 + 5  # gRPC per setting, in-process once
    assert set(figures(report)) == {"totals", "distribution", "sweep", "batching"}
    for result in report.cases:  # the ports of the servers the run started are free again
        if result.case.transport == "grpc":
            host, port = result.case.address.rsplit(":", 1)
            with socket.socket() as probe:
                assert probe.connect_ex((host, int(port))) != 0


def test_failed_requests_are_counted(server) -> None:
    wrong = np.zeros((4, 3), np.float32)  # digits wants [n, 8, 8, 1]
    report = latency.run("digits", server=server, n=4, inputs=wrong, transports=("rest", "grpc"), repeats=1)
    assert not report.complete
    for result in report.cases:
        assert result.sent == result.case.requests and result.answered == 0
        assert result.failed == list(range(result.sent)) and result.error_samples
    assert report.find("rest", "batch").error_samples[0].startswith("HTTP 400")
    assert report.find("grpc", "batch").error_samples[0].startswith("INVALID_ARGUMENT")


def test_bad_settings_fail_fast(server) -> None:
    with pytest.raises(latency.LatencyError, match="no signature 'nope'"):
        latency.run("digits", server=server, signature="nope", n=2)
    with pytest.raises(ValueError, match="unknown mode 'slow'"):
        latency.run("digits", server=server, modes=("slow",), n=2)


def test_cancel_stops_the_load_process(server, images) -> None:
    run = latency.start("digits", server=server, n=100_000, inputs=images, transports=("rest",),
                        modes=("sequential",), repeats=1)  # fmt: skip
    deadline = time.monotonic() + 60
    while run.progress.done < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.progress.phase == "running" and run.progress.done >= 20
    started = time.monotonic()
    run.cancel()
    report = run.wait(timeout=30)
    assert time.monotonic() - started < 5
    assert report.cancelled and report.cases == [] and not run.running
    assert run.process.poll() is not None
    assert run.process.pid not in {p.pid for p in psutil.Process().children(recursive=True)}
