"""A real IPython kernel driven over jupyter_client, plus port helpers, for the notebook tests."""

from __future__ import annotations

import json
import os
import queue
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

KERNEL_NAME = "nbserve-test"


@dataclass
class Reply:
    """What one execute request produced."""

    status: str
    stdout: str = ""
    stderr: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)  # execute_result / display_data bundles
    error: dict[str, Any] | None = None

    def html(self) -> str:
        return "\n".join(r.get("text/html", "") for r in self.results)

    def text(self) -> str:
        return "\n".join(r.get("text/plain", "") for r in self.results)


class Kernel:
    """A kernel process driven over its shell and iopub channels."""

    def __init__(self, cwd: Path) -> None:
        spec_dir = cwd / "kernels" / KERNEL_NAME
        spec_dir.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        (spec_dir / "kernel.json").write_text(
            json.dumps({"argv": argv, "display_name": KERNEL_NAME, "language": "python"})
        )
        self.cwd = cwd
        self.manager = KernelManager(
            kernel_name=KERNEL_NAME, kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(spec_dir.parent)])
        )
        self.start()

    def start(self) -> None:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""}
        self.manager.start_kernel(cwd=str(self.cwd), env=env)
        self._connect()

    def _connect(self) -> None:
        self.client = self.manager.blocking_client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)

    def request_shutdown(self, restart: bool) -> dict[str, Any]:
        """Ask the kernel to shut down, as a frontend does; returns its shutdown_reply, which it sends
        once its shutdown hooks ran (the process exits later)."""
        msg_id = self.client.shutdown(restart=restart)
        while True:
            reply = self.client.get_control_msg(timeout=30)
            if reply["parent_header"].get("msg_id") == msg_id:
                return reply["content"]

    def restart(self) -> None:
        """Restart as a frontend does: the old process is gone when this returns."""
        self.client.stop_channels()
        self.manager.restart_kernel(now=False)
        self._connect()

    def submit(self, code: str) -> str:
        return self.client.execute(code, store_history=True)

    def collect(self, msg_id: str, timeout: float = 120) -> Reply:
        reply = Reply(status="")
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty:
                raise TimeoutError(f"no output from the kernel for {timeout} s") from None
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                setattr(reply, content["name"], getattr(reply, content["name"]) + content["text"])
            elif kind in ("execute_result", "display_data"):
                reply.results.append(content["data"])
            elif kind == "error":
                reply.error = content
            elif kind == "status" and content["execution_state"] == "idle":
                break
        shell = self.client.get_shell_msg(timeout=timeout)
        while shell["parent_header"].get("msg_id") != msg_id:  # e.g. a late kernel_info_reply
            shell = self.client.get_shell_msg(timeout=timeout)
        reply.status = shell["content"]["status"]
        return reply

    def run(self, code: str, timeout: float = 120) -> Reply:
        return self.collect(self.submit(code), timeout)

    def ok(self, code: str, timeout: float = 120) -> Reply:
        """Run ``code`` and fail the test with the kernel's error if it raised."""
        reply = self.run(code, timeout)
        assert reply.status == "ok", reply.error and "\n".join(reply.error["traceback"])
        return reply

    def shutdown(self) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=False)
