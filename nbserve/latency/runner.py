"""Run a latency bench from the kernel (or the CLI) without blocking it: a driver thread starts the
servers a batching comparison needs, builds the plan, starts the load process (``python -m
nbserve.latency.load``), relays its progress, and collects the results. ``cancel()`` stops it (the
load process is terminated if it does not stop by itself within a moment); the servers it started
are stopped in every case."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from nbserve.latency.inputs import Inputs, request_rows, signature_of
from nbserve.latency.plan import MODES, TRANSPORTS, Plan, build_cases, check_names, encode_plan
from nbserve.latency.results import LatencyReport, case_result_from_dict
from nbserve.signature import DEFAULT_SERVING_SIGNATURE

if TYPE_CHECKING:
    from nbserve.server.runtime import Server

_CANCEL_GRACE_S = 3.0
_POLL_S = 0.05


class LatencyError(RuntimeError):
    """The run could not be made (bad settings, unreachable server, load process failure)."""


@dataclass
class Progress:
    """Where a run is: ``phase`` ("servers", "load", "running", "done", "cancelled", "failed") and
    ``done`` of ``total`` timed requests."""

    phase: str
    done: int = 0
    total: int = 0
    message: str = ""

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 0.0


@dataclass
class BenchConfig:
    """What to measure. The target is ``server`` (an ``nbserve.Server``), or ``rest_url`` /
    ``grpc_address`` of any TF-Serving-compatible server; ``model_base_path`` (or the given server's
    base path for ``model``) is needed for the ``inprocess`` transport and for ``batching``, a list of
    "off" / "on": one server per setting is started here (``--enable_batching``,
    ``batching_parameters_file``) and each transport is measured against each."""

    model: str
    signature: str = DEFAULT_SERVING_SIGNATURE
    n: int = 64
    transports: Sequence[str] = ("rest", "grpc")
    modes: Sequence[str] = ("batch", "sequential")
    concurrency: int = 4
    batch_sizes: Sequence[int] | None = None
    repeats: int = 3
    warmup: int = 2
    inputs: Inputs = None
    server: Server | None = None
    rest_url: str | None = None
    grpc_address: str | None = None
    model_base_path: str | None = None
    version: int | None = None
    batching: Sequence[str] | None = None
    batching_parameters_file: str | None = None
    timeout_s: float = 60.0
    extra_meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_names("transport", list(self.transports), TRANSPORTS)
        check_names("mode", list(self.modes), MODES)
        if self.batching is not None:
            check_names("batching setting", list(self.batching), ("off", "on"))
        if self.n < 1 or self.concurrency < 1:
            raise ValueError(f"N and concurrency must be at least 1, got {self.n} and {self.concurrency}")

    def meta(self) -> dict[str, Any]:
        """The settings a report records (JSON-ready)."""
        keep = (
            "model",
            "signature",
            "n",
            "concurrency",
            "repeats",
            "warmup",
            "version",
            "batching_parameters_file",
        )
        return {
            **{name: getattr(self, name) for name in keep},
            "transports": list(self.transports),
            "modes": list(self.modes),
            "batching": list(self.batching) if self.batching else None,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            **self.extra_meta,
        }


class LatencyRun:
    """One run of ``config``: ``start()`` returns at once; ``wait()`` gives the LatencyReport."""

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self.progress = Progress("idle")
        self.report: LatencyReport | None = None
        self.error: str | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._on_progress: Callable[[Progress], None] | None = None
        self._cancelled = threading.Event()
        self._thread: threading.Thread | None = None
        self._servers: list[Server] = []

    # -- public -----------------------------------------------------------------------------------------

    def start(self, on_progress: Callable[[Progress], None] | None = None) -> LatencyRun:
        """Start on a background thread; ``on_progress(Progress)`` is called from that thread."""
        if self._thread is not None:
            raise LatencyError("this run was started already; make a new LatencyRun")
        self._on_progress = on_progress
        self._thread = threading.Thread(target=self._drive, name="nbserve-latency", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Stop the run as soon as possible; ``wait()`` then returns the cases finished so far."""
        self._cancelled.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> LatencyReport:
        """Block until the run ends; its report (``cancelled`` if it was). LatencyError if it failed,
        TimeoutError if it is still running after ``timeout`` s."""
        if self._thread is None:
            raise LatencyError("start() the run first")
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError(f"the latency run is still going after {timeout} s")
        if self.error is not None:
            raise LatencyError(self.error)
        assert self.report is not None
        return self.report

    # -- the driver thread ----------------------------------------------------------------------------------

    def _drive(self) -> None:
        try:
            self._report(Progress("servers", message="preparing"))
            plan = self._plan()
            report = LatencyReport(self.config.meta())
            self.report = report
            finished = False
            if not self._cancelled.is_set():
                self._report(Progress("load", 0, plan.total_requests, "starting the load process"))
                finished = self._run_load(plan, report)
            report.cancelled = not finished
            phase = "cancelled" if report.cancelled else "done"
            self._report(Progress(phase, self.progress.done, plan.total_requests))
        except Exception as error:  # noqa: BLE001 - reported through wait() and the progress
            self.error = str(error) if isinstance(error, LatencyError) else f"{type(error).__name__}: {error}"
            self._report(Progress("failed", self.progress.done, self.progress.total, self.error))
        finally:
            self._stop_servers()

    def _report(self, progress: Progress) -> None:
        self.progress = progress
        if self._on_progress is not None:
            with contextlib.suppress(Exception):  # a broken display must not break the run
                self._on_progress(progress)

    def _plan(self) -> Plan:
        config = self.config
        addresses = self._addresses()
        rest = next((a for (t, _), a in addresses.items() if t == "rest"), None)
        grpc = next((a for (t, _), a in addresses.items() if t == "grpc"), None)
        saved_model = addresses.get(("inprocess", None))
        signature = signature_of(
            config.model,
            config.signature,
            rest_url=rest,
            grpc_address=grpc,
            saved_model_dir=saved_model,
            version=config.version,
        )
        rows = request_rows(signature, config.inputs, config.n)
        cases = build_cases(
            config.n,
            config.transports,
            config.modes,
            concurrency=config.concurrency,
            batch_sizes=config.batch_sizes,
            addresses=addresses,
        )
        dtypes = {alias: info.dtype for alias, info in signature.inputs.items()}
        return Plan(
            config.model,
            config.signature,
            rows,
            dtypes,
            tuple(cases),
            max(1, config.repeats),
            max(0, config.warmup),
            config.timeout_s,
            config.version,
        )

    def _addresses(self) -> dict[tuple[str, str | None], str]:
        """(transport, batching setting) -> URL, gRPC address or SavedModel directory."""
        config = self.config
        wanted = set(config.transports)
        addresses: dict[tuple[str, str | None], str] = {}
        if "inprocess" in wanted:
            addresses["inprocess", None] = saved_model_dir(
                self._base_path("the inprocess transport"), config.version
            )
        if not wanted & {"rest", "grpc"}:
            return addresses
        if config.batching:
            for setting in config.batching:
                server = self._start_server(setting)
                addresses.update({("rest", setting): server.rest_url, ("grpc", setting): server.grpc_address})
        elif config.server is not None:
            setting = "on" if config.server.options.enable_batching else "off"
            addresses.update(
                {("rest", setting): config.server.rest_url, ("grpc", setting): config.server.grpc_address}
            )
        else:
            addresses.update({("rest", None): config.rest_url, ("grpc", None): config.grpc_address})
        for (transport, _), address in list(addresses.items()):
            if transport in wanted and not address:
                raise LatencyError(
                    f"no {transport} address: the server has it off, or pass {transport} settings"
                )
        return {key: address for key, address in addresses.items() if key[0] in wanted}

    def _base_path(self, purpose: str) -> str:
        config = self.config
        if config.model_base_path:
            return config.model_base_path
        if config.server is not None and config.server.running:
            model = next((m for m in config.server.models() if m.name == config.model), None)
            if model is not None and model.base_path:
                return model.base_path
        raise LatencyError(f"{purpose} needs the model's SavedModel: pass model_base_path")

    def _start_server(self, setting: str) -> Server:
        from nbserve.server.options import DEFAULT_THREADS
        from nbserve.server.runtime import Server

        self._report(Progress("servers", message=f"starting a server with batching {setting}"))
        # a request waiting in a batch holds a server thread: leave room for every client
        threads = max(DEFAULT_THREADS, 2 * self.config.concurrency)
        on = setting == "on"
        server = Server(
            self._base_path("a batching comparison"),
            self.config.model,
            port=0,
            rest_api_port=0,
            enable_batching=on,
            batching_parameters_file=self.config.batching_parameters_file if on else None,
            grpc_max_threads=threads,
            rest_api_num_threads=threads,
        )
        self._servers.append(server)
        server.start()
        return server

    def _stop_servers(self) -> None:
        while self._servers:
            with contextlib.suppress(Exception):
                self._servers.pop().stop()

    def _run_load(self, plan: Plan, report: LatencyReport) -> bool:
        """Run the plan in the load process; True when every case ran (not cancelled)."""
        read_fd, write_fd = os.pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "nbserve.latency.load", str(write_fd)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, pass_fds=(write_fd,), env=_child_env(),
            )  # fmt: skip
        finally:
            os.close(write_fd)
        self.process = process
        events = Connection(read_fd, writable=False)
        try:
            assert process.stdin is not None
            if not self._cancelled.is_set():
                data = encode_plan(plan)
                process.stdin.write(len(data).to_bytes(8, "big") + data)
                process.stdin.flush()
            return self._relay(process, events, plan.total_requests, report)
        except BrokenPipeError:
            raise LatencyError(f"the load process exited with code {process.wait()}") from None
        finally:
            _end(process)
            events.close()

    def _relay(
        self, process: subprocess.Popen[bytes], events: Connection, total: int, report: LatencyReport
    ) -> bool:
        """Pass the load process's events on until it finishes; on cancel, close its stdin (its signal to
        stop) and give it a moment to send what it has."""
        deadline: float | None = None
        while True:
            if self._cancelled.is_set() and deadline is None:
                deadline = time.monotonic() + _CANCEL_GRACE_S
                with contextlib.suppress(OSError):
                    process.stdin.close()  # type: ignore[union-attr]
            if deadline is not None and time.monotonic() > deadline:
                return False  # it did not stop by itself: terminated by the caller
            try:
                if not events.poll(_POLL_S):
                    continue
                event = json.loads(events.recv_bytes())
            except (EOFError, OSError):
                if self._cancelled.is_set():
                    return False
                raise LatencyError(f"the load process exited with code {process.wait()}") from None
            kind = event[0]
            if kind == "progress":
                self._report(Progress("running", event[1], total))
            elif kind == "case":
                report.cases.append(case_result_from_dict(event[2]))
            elif kind == "error":
                raise LatencyError(f"the load process failed: {event[1]}")
            else:
                return kind == "done"


def _child_env() -> dict[str, str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    # the child imports nbserve from where this process did, installed or not
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _end(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(OSError):
        process.stdin.close()  # type: ignore[union-attr]
    try:
        process.wait(_CANCEL_GRACE_S)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(_CANCEL_GRACE_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def saved_model_dir(base_path: str, version: int | None = None) -> str:
    """``base_path/<version>``, the highest numbered version when ``version`` is None."""
    if version is None:
        numbers = [int(name) for name in os.listdir(base_path) if name.isdigit()]
        if not numbers:
            raise LatencyError(f"no version directories under {base_path}")
        version = max(numbers)
    path = os.path.join(base_path, str(version))
    if not os.path.isdir(path):
        raise LatencyError(f"no version {version} under {base_path}")
    return path


def start(
    model: str, *, on_progress: Callable[[Progress], None] | None = None, **settings: Any
) -> LatencyRun:
    """Start a run in the background (see :class:`BenchConfig` for ``settings``); returns the LatencyRun."""
    return LatencyRun(BenchConfig(model, **settings)).start(on_progress)


def run(
    model: str, *, on_progress: Callable[[Progress], None] | None = None, **settings: Any
) -> LatencyReport:
    """Run a bench and return its report; Ctrl-C (KeyboardInterrupt) cancels it and returns what finished."""
    latency_run = start(model, on_progress=on_progress, **settings)
    try:
        return latency_run.wait()
    except KeyboardInterrupt:
        latency_run.cancel()
        return latency_run.wait()
