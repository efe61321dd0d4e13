"""The `make demo` job: train the digits model, export it as version 1 with two signatures, start
`nbserve` (as a separate process, the way you would run tensorflow_model_server), then run the REST
and gRPC example clients in batch and one-by-one mode."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from nbserve.ports import free_port

HERE = os.path.dirname(os.path.abspath(__file__))
MODEL = "digits"


def _run(*args: str) -> None:
    print(f"\n$ {' '.join(args)}", flush=True)
    subprocess.run([sys.executable, *args], check=True)


def _wait_until_serving(url: str, server: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"nbserve exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                if b"AVAILABLE" in answer.read():
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.3)
    raise SystemExit(f"nbserve did not answer {url} within {timeout} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", default="demo_models", help="where the model and sample images go")
    args = parser.parse_args(argv)
    workdir = os.path.abspath(args.workdir)
    base_path, images = os.path.join(workdir, MODEL), os.path.join(workdir, "images")
    version = 1
    if os.path.isdir(base_path):
        versions = [int(name) for name in os.listdir(base_path) if name.isdigit()]
        version = max(versions, default=0) + 1
    _run("-m", "nbserve.demo", "--base_path", base_path, "--version", str(version), "--images_dir", images)

    grpc_port, rest_port = free_port(), free_port()
    command = [
        sys.executable,
        "-m",
        "nbserve",
        f"--port={grpc_port}",
        f"--rest_api_port={rest_port}",
        f"--model_name={MODEL}",
        f"--model_base_path={base_path}",
    ]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    server = subprocess.Popen(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        _wait_until_serving(f"http://127.0.0.1:{rest_port}/v1/models/{MODEL}", server)
        print(f"\nServing {MODEL}: REST http://127.0.0.1:{rest_port}, gRPC 127.0.0.1:{grpc_port}")
        print(f"  curl http://127.0.0.1:{rest_port}/v1/models/{MODEL}/metadata", flush=True)
        for client, port in (("rest_client.py", rest_port), ("grpc_client.py", grpc_port)):
            for mode in ("--batch_mode", "--no-batch_mode"):
                _run(os.path.join(HERE, client), f"--server=127.0.0.1:{port}", f"--image_path={images}", mode)
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
