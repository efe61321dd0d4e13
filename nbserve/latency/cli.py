"""``nbserve bench``: the latency lab from a shell. Prints the summary table; writes CSV, JSON and PNG
plots on request.

    nbserve bench --model_name digits --model_base_path /abs/digits --batching off,on -n 64
    nbserve bench --model_name digits --rest_url http://127.0.0.1:8501 --grpc_address 127.0.0.1:8500
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from nbserve.latency.plan import MODES, TRANSPORTS
from nbserve.latency.runner import LatencyError, Progress, run


def _names(known: Sequence[str]) -> object:
    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"choose from {','.join(known)}; got {text!r}")
        return names

    return parse


def _sizes(text: str) -> list[int]:
    try:
        return [int(size) for size in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected sizes like 1,8,64; got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nbserve bench",
        description="Time Predict requests: one batch of N vs N one-by-one (sequential or from k clients) "
        "and a batch-size sweep, over REST, gRPC and the in-process call, with server batching off / on. "
        "Requests come from a separate process.",
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--model_name", required=True, help="Model to measure.")
    add("--signature", default="serving_default", help="Signature to call. Default serving_default.")
    add("--model_base_path", help="The model's base path: servers are started from it (see --batching); "
        "also needed for --transports inprocess.")  # fmt: skip
    add("--rest_url", help="Measure this running server's REST API (http://host:port).")
    add("--grpc_address", help="Measure this running server's gRPC API (host:port).")
    add("--version", type=int, help="Model version to ask for (default: the server's latest).")
    add(
        "--inputs", help="A folder of images, or a .npy array of rows; default: generated from the signature."
    )
    add("-n", "--requests", dest="n", type=int, default=64, help="N: rows per run of each mode. Default 64.")
    add(
        "--transports",
        type=_names(TRANSPORTS),
        default=["rest", "grpc"],
        help="Comma-separated. Default rest,grpc.",
    )
    add(
        "--modes",
        type=_names(MODES),
        default=["batch", "sequential"],
        help="Comma-separated. Default batch,sequential.",
    )
    add("--concurrency", type=int, default=4, help="k: clients of the concurrent mode. Default 4.")
    add("--batch_sizes", type=_sizes, help="Batch sizes of the sweep. Default 1,2,4,... up to N.")
    add("--repeats", type=int, default=3, help="Rounds per case; totals are the median round. Default 3.")
    add("--warmup", type=int, default=2, help="Untimed requests per client before each case. Default 2.")
    add("--batching", type=_names(("off", "on")), help="Start a server per setting (off, on or off,on; "
        "needs --model_base_path). Default off when only --model_base_path is given.")  # fmt: skip
    add("--batching_parameters_file", help="BatchingParameters text proto for the batching-on server.")
    add("--csv", help="Write the summary table here.")
    add("--csv_requests", help="Write one line per request here.")
    add("--json", help="Write everything (settings, summary, every latency) here.")
    add("--plots", help="Write the plots as PNG files into this folder.")
    return parser


def _show_progress(progress: Progress) -> None:
    if progress.phase == "running" and sys.stderr.isatty():
        print(f"\r{progress.done}/{progress.total} requests", end="", file=sys.stderr, flush=True)
    elif progress.message:
        print(progress.message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench; 0 when every request was answered, 1 when some failed, 2 on bad settings."""
    args = build_parser().parse_args(argv)
    batching = args.batching
    if batching is None and args.model_base_path and not (args.rest_url or args.grpc_address):
        batching = ["off"]
    inputs = None
    if args.inputs:
        import numpy as np

        inputs = args.inputs if os.path.isdir(args.inputs) else np.load(args.inputs, allow_pickle=False)
    base_path = os.path.abspath(args.model_base_path) if args.model_base_path else None
    try:
        report = run(
            args.model_name, signature=args.signature, n=args.n, transports=args.transports, modes=args.modes,
            concurrency=args.concurrency, batch_sizes=args.batch_sizes, repeats=args.repeats,
            warmup=args.warmup, inputs=inputs, rest_url=args.rest_url, grpc_address=args.grpc_address,
            model_base_path=base_path,
            version=args.version, batching=batching, batching_parameters_file=args.batching_parameters_file,
            on_progress=_show_progress,
        )  # fmt: skip
    except (LatencyError, ValueError, OSError) as error:
        print(f"\nnbserve bench: {error}", file=sys.stderr)
        return 2
    print(file=sys.stderr)
    print(report.table())
    for path, write in ((args.csv, report.to_csv), (args.json, report.to_json)):
        if path:
            print(f"wrote {write(path)}")
    if args.csv_requests:
        print(f"wrote {report.to_csv(args.csv_requests, per_request=True)}")
    if args.plots:
        from nbserve.latency.plots import figures

        os.makedirs(args.plots, exist_ok=True)
        for name, figure in figures(report).items():
            path = os.path.join(args.plots, f"{name}.png")
            figure.savefig(path)
            print(f"wrote {path}")
    return 0 if report.complete else 1
