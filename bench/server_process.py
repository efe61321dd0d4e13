"""`python -m nbserve` in its own process for the benches, on free loopback ports, until `stop()`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request

from nbserve.ports import free_port


class ServerProcess:
    """Starts the server with ``flags`` and returns once ``name`` reports a version AVAILABLE."""

    def __init__(self, base_path: str, name: str, flags: list[str] | tuple[str, ...] = ()) -> None:
        self.grpc = f"127.0.0.1:{free_port()}"
        self.rest = f"127.0.0.1:{free_port()}"
        self.grpc_port = int(self.grpc.rsplit(":", 1)[1])
        self.rest_port = int(self.rest.rsplit(":", 1)[1])
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nbserve",
                f"--port={self.grpc_port}",
                f"--rest_api_port={self.rest_port}",
                f"--model_name={name}",
                f"--model_base_path={base_path}",
                *flags,
            ],
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://{self.rest}/v1/models/{name}", timeout=2) as answer:
                    if b"AVAILABLE" in answer.read():
                        return
            except OSError:
                time.sleep(0.3)
        self.process.kill()
        raise SystemExit(f"nbserve {' '.join(flags)} did not start")

    @property
    def pid(self) -> int:
        return self.process.pid

    def address(self, transport: str) -> str:
        return self.grpc if transport == "grpc" else self.rest

    def stop(self, timeout: float = 30) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=timeout)
