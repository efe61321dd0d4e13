"""``nbserve``: the model server outside a notebook, with tensorflow_model_server's flags."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import fields

from nbserve.errors import ServingError
from nbserve.server.options import ServerOptions

_DEFAULTS = ServerOptions()


def _flag_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with tensorflow_model_server's flag names and defaults."""
    parser = argparse.ArgumentParser(
        prog="nbserve",
        description="Serve TensorFlow SavedModels over TF Serving's REST and gRPC APIs.",
        epilog="Example: nbserve --model_name=digits --model_base_path=/abs/path/to/digits",
    )
    add = parser.add_argument
    add("--port", type=int, default=_DEFAULTS.port, help="gRPC port (0 disables gRPC). Default 8500.")
    add("--rest_api_port", type=int, default=_DEFAULTS.rest_api_port, help="REST port (0 disables REST).")
    add("--host", default=_DEFAULTS.host, help="Address both servers bind. Default 127.0.0.1 (loopback).")
    add("--model_name", default=_DEFAULTS.model_name, help="Model name in single-model mode.")
    add("--model_base_path", default=None, help="Absolute path of the model's version directories.")
    add("--model_config_file", default=None, help="ModelServerConfig text proto; overrides the two above.")
    add(
        "--model_config_file_poll_wait_seconds",
        type=float,
        default=0,
        help="Re-read the config file every N s.",
    )
    add("--file_system_poll_wait_seconds", type=float, default=1, help="Poll base paths every N s.")
    add("--rest_api_timeout_in_ms", type=int, default=_DEFAULTS.rest_api_timeout_in_ms)
    add("--rest_api_num_threads", type=int, default=_DEFAULTS.rest_api_num_threads)
    add("--grpc_max_threads", type=int, default=_DEFAULTS.grpc_max_threads)
    add("--batching_parameters_file", default=None, help="BatchingParameters text proto.")
    add("--monitoring_config_file", default=None, help="MonitoringConfig text proto.")
    add(
        "--model_max_concurrent_requests",
        type=int,
        default=_DEFAULTS.model_max_concurrent_requests,
        help="Requests one model runs at once (0: half the smaller worker pool); isolates models.",
    )
    add(
        "--model_max_queued_requests",
        type=int,
        default=_DEFAULTS.model_max_queued_requests,
        help="Requests waiting per model for a slot; beyond it the model answers UNAVAILABLE (503).",
    )
    add("--rest_api_max_body_bytes", type=int, default=_DEFAULTS.rest_api_max_body_bytes, help="413 above.")
    add("--grpc_max_message_bytes", type=int, default=_DEFAULTS.grpc_max_message_bytes)
    add("--max_instances_per_request", type=int, default=_DEFAULTS.max_instances_per_request)
    add("--auth_token", default=None, help="Access token (else $NBSERVE_TOKEN; generated off loopback).")
    for flag in (
        "rest_api_enable_cors_support",
        "allow_version_labels_for_unavailable_models",
        "enable_batching",
        "enable_per_model_batching_parameters",
    ):
        add(f"--{flag}", type=_flag_bool, nargs="?", const=True, default=False)
    return parser


def parse_options(argv: Sequence[str]) -> ServerOptions:
    """Parse flags into ServerOptions; unknown flags are reported but, as in TF Serving, not fatal."""
    args, unknown = build_parser().parse_known_args(list(argv))
    for argument in unknown:
        print(f"unknown argument: {argument}", file=sys.stderr)
    values = {f.name: getattr(args, f.name) for f in fields(ServerOptions) if hasattr(args, f.name)}
    values["port"] = values["port"] or None
    values["rest_api_port"] = values["rest_api_port"] or None
    return ServerOptions(**values)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT or SIGTERM; ``nbserve bench ...`` runs the latency lab instead."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        from nbserve.latency.cli import main as bench

        return bench(argv[1:])
    from nbserve.server.runtime import Server

    options = parse_options(argv)
    if options.port is None and options.rest_api_port is None:
        print("Both --port and --rest_api_port are 0: nothing would listen.", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    server = Server(options=options)
    try:
        server.start()
    except ServingError as error:
        print(f"Failed to start server. Error: {error.code}: {error}", file=sys.stderr)
        return 1
    print(f"Running gRPC ModelServer at {server.grpc_address or 'off'} ...", flush=True)
    print(f"Exporting HTTP/REST API at:{server.rest_url or 'off'} ...", flush=True)
    stop.wait()
    print("Shutting down.", flush=True)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
