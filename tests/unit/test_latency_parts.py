"""The latency lab without a server: cases per mode, request rows, result arithmetic, CSV / JSON,
plots as PNG, and the ``nbserve bench`` argument handling (real runs are in tests/integration)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest
from PIL import Image

from nbserve import cli
from nbserve.latency import plots
from nbserve.latency.inputs import request_rows
from nbserve.latency.plan import Case, build_cases, sweep_sizes
from nbserve.latency.results import CaseResult, LatencyReport
from nbserve.signature import Signature, TensorInfo

DT_FLOAT, DT_UINT8, DT_STRING, DT_INT64 = 1, 4, 7, 9
ADDRESSES = {("rest", "off"): "http://r-off", ("rest", "on"): "http://r-on", ("grpc", None): "g:1"}


def _signature(**inputs: tuple[int, tuple[int, ...] | None]) -> Signature:
    return Signature("serving_default", {a: TensorInfo(a, d, s) for a, (d, s) in inputs.items()}, {})


def test_cases_per_mode() -> None:
    cases = build_cases(10, ["grpc", "rest"], ["batch", "sequential", "concurrent", "sweep"], concurrency=3,
                        batch_sizes=[1, 4, 10], addresses=ADDRESSES)  # fmt: skip
    assert [c.transport for c in cases][:6] == ["grpc"] * 6  # transports in the order asked
    grpc = [c for c in cases if c.transport == "grpc"]
    assert [(c.mode, c.batch_size, c.requests, c.clients) for c in grpc] == [
        ("batch", 10, 1, 1),
        ("sequential", 1, 10, 1),
        ("concurrent", 1, 10, 3),
        ("sweep", 1, 10, 1),
        ("sweep", 4, 3, 1),
        ("sweep", 10, 1, 1),
    ]
    assert {c.batching for c in cases if c.transport == "rest"} == {"on", "off"}
    assert {c.address for c in cases if c.batching == "on"} == {"http://r-on"}
    assert build_cases(2, ["grpc"], ["concurrent"], concurrency=8, addresses=ADDRESSES)[0].clients == 2
    assert sweep_sizes(64) == [1, 2, 4, 8, 16, 32, 64] and sweep_sizes(20) == [1, 2, 4, 8, 16, 20]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"transports": ["http"]}, "unknown transport 'http'"),
        ({"modes": []}, "choose at least one mode"),
        ({"n": 0}, "N must be at least 1"),
    ],
)
def test_bad_cases(kwargs: dict, message: str) -> None:
    settings = {"n": 4, "transports": ["rest"], "modes": ["batch"], "addresses": ADDRESSES, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_cases(**settings)


def test_rows_generated_given_and_from_a_folder(tmp_path) -> None:
    signature = _signature(images=(DT_FLOAT, (-1, 8, 8, 1)))
    generated = request_rows(signature, None, 500)["images"]
    assert generated.shape == (256, 8, 8, 1) and generated.dtype == np.float32
    assert request_rows(signature, np.zeros((3, 8, 8, 1)), 10)["images"].dtype == np.float32

    for i in range(5):
        Image.fromarray(np.full((16, 16), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.txt").write_text("not an image")
    pixels = request_rows(signature, tmp_path, 10)["images"]
    assert pixels.shape == (5, 8, 8, 1) and 0.0 <= pixels.min() and pixels.max() <= 1.0
    encoded = request_rows(_signature(images=(DT_STRING, (-1,))), str(tmp_path), 10)["images"]
    assert encoded.dtype == object and encoded[0].startswith(b"\x89PNG")
    mixed = _signature(x=(DT_INT64, (-1, 2)), s=(DT_STRING, (-1,)))
    rows = request_rows(mixed, None, 3)
    assert rows["x"].shape == (3, 2) and rows["x"].dtype == np.int64 and len(rows["s"]) == 3


@pytest.mark.parametrize(
    "signature, inputs, message",
    [
        (_signature(x=(DT_FLOAT, (-1,)), y=(DT_FLOAT, (-1,))), np.zeros(3), "pass a dict"),
        (_signature(x=(DT_FLOAT, (-1,)), y=(DT_FLOAT, (-1,))), {"x": np.zeros(3), "y": np.zeros(2)}, "same"),
        (_signature(x=(DT_FLOAT, ())), None, "scalar"),
        (_signature(x=(DT_FLOAT, (-1,))), {"z": np.zeros(2)}, "unexpected"),
    ],
)
def test_bad_rows(signature: Signature, inputs: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        request_rows(signature, inputs, 4)


def _report() -> LatencyReport:
    """Two transports x (batch, sequential) x batching off/on, and a sweep: made-up but consistent."""
    rng = np.random.default_rng(0)
    cases = []
    for transport, base in (("rest", 0.002), ("grpc", 0.001)):
        for batching in ("off", "on"):
            batch = Case(transport, "batch", 8, 1, batching=batching)
            cases.append(CaseResult(batch, [base * 3, base * 2.5], [base * 3, base * 2.5]))
            sequential = Case(transport, "sequential", 1, 8, batching=batching)
            latencies = list(base + rng.random(16) * base)
            rounds = [sum(latencies[:8]) * 1.01, sum(latencies[8:]) * 1.01]
            cases.append(
                CaseResult(sequential, latencies, rounds, failed=[3], error_samples=["HTTP 500: boom"])
            )
        for size in (1, 2, 4, 8):
            sweep = Case(transport, "sweep", size, 8 // size, batching="off")
            latencies = [base * (1 + size / 8)] * (2 * (8 // size))
            cases.append(CaseResult(sweep, latencies, [sum(latencies) / 2] * 2))
    return LatencyReport({"model": "m", "signature": "s", "n": 8, "repeats": 2}, cases)


def test_case_arithmetic() -> None:
    report = _report()
    sequential = report.find("grpc", "sequential", "on")
    assert (sequential.sent, sequential.answered, sequential.rows) == (16, 15, 8)
    assert sequential.total_s == pytest.approx(np.median(sequential.rounds_s))
    assert sequential.per_row_s * sequential.rows_per_s == pytest.approx(1.0)
    assert len(sequential.ok_latencies_s()) == 15
    summary = sequential.summary()
    assert summary["failed"] == 1 and summary["p50_ms"] <= summary["p99_ms"] <= summary["max_ms"]
    assert report.find("rest", "sweep", batch_size=4).case.requests == 2
    with pytest.raises(KeyError):
        report.find("inprocess", "batch")
    assert not report.complete  # one request failed per sequential case
    text = report.table()
    assert "grpc sequential [batching on]" in text and "15/16" in text
    assert "<table>" in report._repr_html_()


def test_csv_and_json(tmp_path) -> None:
    report = _report()
    with open(report.to_csv(tmp_path / "summary.csv"), newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert len(summary) == len(report.cases) and summary[1]["failed"] == "1"
    assert float(summary[0]["total_ms"]) == pytest.approx(report.cases[0].total_s * 1000)
    with open(report.to_csv(tmp_path / "requests.csv", per_request=True), newline="") as handle:
        requests = list(csv.DictReader(handle))
    assert len(requests) == sum(c.sent for c in report.cases)
    assert [r["ok"] for r in requests if r["case"] == "rest sequential [batching off]"].count("False") == 1
    with open(report.to_json(tmp_path / "r.json")) as handle:
        doc = json.load(handle)
    assert doc["format"] == "nbserve-latency" and len(doc["cases"]) == len(report.cases)
    again = LatencyReport.from_json(tmp_path / "r.json")
    assert again.summaries() == report.summaries() and again.table() == report.table()


def _assert_picture(data: bytes) -> None:
    image = Image.open(io.BytesIO(data))
    assert image.width > 0 and image.height > 0
    extrema = image.convert("L").getextrema()
    assert extrema[0] < extrema[1], "a single colour"


def test_plots_are_pictures(tmp_path) -> None:
    report, previous = _report(), _report()
    figures = plots.figures(report, previous)
    assert set(figures) == {"totals", "distribution", "sweep", "batching"}
    for name, figure in figures.items():
        path = tmp_path / f"{name}.png"
        figure.savefig(path)
        _assert_picture(path.read_bytes())
    empty = LatencyReport({"model": "m"}, [])
    assert plots.figures(empty) == {}
    _assert_picture(plots.png(plots.sweep(empty)))  # says there is nothing to show


def test_bench_subcommand_arguments(capsys) -> None:
    assert cli.main(["bench", "--model_name", "m", "--transports", "rest"]) == 2
    assert "no rest address" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--model_name", "m", "--modes", "fast"])
    assert "choose from batch,sequential,concurrent,sweep" in capsys.readouterr().err
    assert cli.parse_options(["--port=0", "--model_name=m"]).model_name == "m"  # the server flags still parse
