"""The load process: sends a Plan's requests and times them, away from the kernel's GIL.

Runs as ``python -m nbserve.latency.load`` (a fresh interpreter: nothing of the parent's
``__main__`` is re-imported). Requests are encoded before the clock starts and sent as
bytes (keep-alive HTTP/1.1 for REST, a raw unary gRPC call), so a request's time is the transport's
and the server's, not the client's encoder. Answers are checked (status, number of rows) right after
each is timed. ``concurrent`` cases run one thread per client, each with its own connection.
Reports to the parent through a pipe: ``("progress", done)``, ``("case", index, CaseResult)``,
then ``("done",)``, ``("cancelled",)`` or ``("error", text)``.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, Protocol

import numpy as np

from nbserve.codecs.dtypes import DT_STRING
from nbserve.latency.plan import Case, Plan, decode_plan
from nbserve.latency.results import MAX_ERROR_SAMPLES, CaseResult

PREDICT_METHOD = "/tensorflow.serving.PredictionService/Predict"
_DISTINCT_PAYLOADS = 64  # requests cycle through this many pre-encoded payloads
_PROGRESS_EVERY_S = 0.1


class Cancelled(Exception):
    """The parent asked the run to stop."""


class Caller(Protocol):
    """One client connection: ``encode`` rows before timing, ``call`` (timed), ``rows`` answered."""

    def encode(self, rows: dict[str, np.ndarray]) -> Any: ...

    def call(self, payload: Any) -> Any: ...

    def rows(self, answer: Any) -> int: ...

    def close(self) -> None: ...


class RestCaller:
    """Predict over REST: row format (``instances``) for one input, columnar (``inputs``) for several."""

    def __init__(self, plan: Plan, url: str) -> None:
        parsed = urllib.parse.urlsplit(url)
        self._connection = _NoDelayConnection(parsed.hostname, parsed.port, timeout=plan.timeout_s)
        version = f"/versions/{plan.version}" if plan.version is not None else ""
        self._path = f"/v1/models/{urllib.parse.quote(plan.model, safe='')}{version}:predict"
        self._plan = plan

    def encode(self, rows: dict[str, np.ndarray]) -> bytes:
        import orjson

        values = {alias: _json_values(array, self._plan.dtypes[alias]) for alias, array in rows.items()}
        body: dict[str, Any] = {"signature_name": self._plan.signature}
        if len(values) == 1:
            body["instances"] = next(iter(values.values()))
        else:
            body["inputs"] = values
        return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)

    def call(self, payload: bytes) -> bytes:
        try:
            self._connection.request("POST", self._path, payload, {"Content-Type": "application/json"})
            answer = self._connection.getresponse()
            body = answer.read()
        except Exception:
            self._connection.close()  # the next request reconnects
            raise
        if answer.status != 200:
            raise RuntimeError(f"HTTP {answer.status}: {body[:300].decode('utf-8', 'replace')}")
        return body

    def rows(self, answer: bytes) -> int:
        import orjson

        doc = orjson.loads(answer)
        if "predictions" in doc:
            return len(doc["predictions"])
        outputs = doc["outputs"]
        return len(next(iter(outputs.values())) if isinstance(outputs, dict) else outputs)

    def close(self) -> None:
        self._connection.close()


class _NoDelayConnection(http.client.HTTPConnection):
    """Keep-alive HTTP/1.1 with TCP_NODELAY, as urllib3 (requests) sets it: http.client sends headers
    and body in two writes, and Nagle's algorithm would hold the body back until the headers are
    acknowledged (up to a delayed ACK, 40-200 ms)."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _json_values(array: np.ndarray, dtype: int) -> Any:
    if dtype == DT_STRING:
        return np.vectorize(lambda v: {"b64": base64.b64encode(v).decode("ascii")}, otypes=[object])(
            array
        ).tolist()
    return array


class GrpcCaller:
    """Predict over gRPC with pre-serialized requests (numeric tensors in ``tensor_content``)."""

    def __init__(self, plan: Plan, address: str) -> None:
        import grpc

        options = [
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
            ("grpc.use_local_subchannel_pool", 1),  # each client its own connection, as separate clients have
        ]
        self._channel = grpc.insecure_channel(address, options=options)
        self._predict = self._channel.unary_unary(PREDICT_METHOD)
        self._plan = plan

    def encode(self, rows: dict[str, np.ndarray]) -> bytes:
        from nbserve.protos.tensorflow_serving.apis import predict_pb2
        from nbserve.tensors import ndarray_to_tensor_proto

        plan = self._plan
        request = predict_pb2.PredictRequest()
        request.model_spec.name = plan.model
        request.model_spec.signature_name = plan.signature
        if plan.version is not None:
            request.model_spec.version.value = plan.version
        for alias, array in rows.items():
            dtype = plan.dtypes[alias]
            proto = ndarray_to_tensor_proto(array, dtype, use_tensor_content=dtype != DT_STRING)
            request.inputs[alias].CopyFrom(proto)
        return request.SerializeToString()

    def call(self, payload: bytes) -> bytes:
        import grpc

        try:
            return self._predict(payload, timeout=self._plan.timeout_s)
        except grpc.RpcError as error:
            raise RuntimeError(f"{error.code().name}: {error.details()}") from None

    def rows(self, answer: bytes) -> int:
        from nbserve.protos.tensorflow_serving.apis import predict_pb2

        outputs = predict_pb2.PredictResponse.FromString(answer).outputs
        first = outputs[sorted(outputs)[0]]
        return first.tensor_shape.dim[0].size if first.tensor_shape.dim else 1

    def close(self) -> None:
        self._channel.close()


class InProcessCaller:
    """The signature called directly in this process (nbserve's SavedModel servable, as the server
    runs it, minus the server): the model's own time."""

    _servables: dict[str, Any] = {}

    def __init__(self, plan: Plan, path: str) -> None:
        from nbserve.servables.saved_model import SavedModelServable

        servable = self._servables.get(path)
        if servable is None:
            version = int(os.path.basename(os.path.normpath(path)))
            servable = self._servables[path] = SavedModelServable.load(plan.model, version, path)
        self._servable = servable
        self._signature = servable.signatures[plan.signature]

    def encode(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return rows

    def call(self, payload: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._servable.run(self._signature, payload, ())

    def rows(self, answer: dict[str, np.ndarray]) -> int:
        first = answer[sorted(answer)[0]]
        return len(first) if first.ndim else 1

    def close(self) -> None:
        pass


CALLERS: dict[str, Callable[[Plan, str], Caller]] = {
    "rest": RestCaller,
    "grpc": GrpcCaller,
    "inprocess": InProcessCaller,
}


def payloads(caller: Caller, rows: dict[str, np.ndarray], batch_size: int, count: int) -> list[Any]:
    """Encoded requests of ``batch_size`` rows: the rows in order, wrapping around at the end."""
    total = len(next(iter(rows.values())))
    encoded = []
    for j in range(min(count, _DISTINCT_PAYLOADS)):
        index = np.arange(j * batch_size, (j + 1) * batch_size) % total
        encoded.append(caller.encode({alias: array[index] for alias, array in rows.items()}))
    return encoded


class _Progress:
    """Counts finished requests (from any client thread) and reports at most every 0.1 s."""

    def __init__(self, send: Callable[[tuple], None]) -> None:
        self.done = 0
        self._send = send
        self._lock = threading.Lock()
        self._last = 0.0

    def tick(self) -> None:
        with self._lock:
            self.done += 1
            now = time.monotonic()
            if now - self._last < _PROGRESS_EVERY_S:
                return
            self._last = now
        self._send(("progress", self.done))

    def flush(self) -> None:
        self._send(("progress", self.done))


def _client(
    caller: Caller,
    encoded: list[Any],
    count: int,
    expected: int,
    cancel: threading.Event,
    progress: _Progress,
) -> tuple[list[float], list[float], list[int], list[str]]:
    """Send ``count`` requests one at a time: start times, latencies, failed indices, error texts."""
    starts, latencies, failed, errors = [], [], [], []
    for j in range(count):
        if cancel.is_set():
            break
        start = time.perf_counter()
        answer, error = None, None
        try:
            answer = caller.call(encoded[j % len(encoded)])
        except Exception as failure:  # noqa: BLE001 - counted and reported; the run goes on
            error = _describe(failure)
        latency = time.perf_counter() - start
        if error is None:
            try:
                rows = caller.rows(answer)
                error = None if rows == expected else f"answered {rows} rows for a request of {expected}"
            except Exception as failure:  # noqa: BLE001
                error = _describe(failure)
        if error is not None:
            failed.append(j)
            errors.append(error)
        starts.append(start)
        latencies.append(latency)
        progress.tick()
    return starts, latencies, failed, errors


def _describe(error: Exception) -> str:
    text = str(error) if type(error) is RuntimeError else f"{type(error).__name__}: {error}"
    return text[:300]


def run_case(plan: Plan, case: Case, cancel: threading.Event, progress: _Progress) -> CaseResult:
    """Warm up, then ``plan.repeats`` timed rounds of ``case``."""
    callers = [CALLERS[case.transport](plan, case.address) for _ in range(case.clients)]
    try:
        shares = [
            case.requests // case.clients + (i < case.requests % case.clients) for i in range(case.clients)
        ]
        encoded = [
            payloads(c, plan.rows, case.batch_size, share) for c, share in zip(callers, shares, strict=True)
        ]
        for caller, requests in zip(callers, encoded, strict=True):
            for j in range(plan.warmup):
                with contextlib.suppress(Exception):  # a failing server shows in the timed requests
                    caller.call(requests[j % len(requests)])
        result = CaseResult(case)
        for _ in range(plan.repeats):
            outcomes = _round(callers, encoded, shares, case.batch_size, cancel, progress)
            if cancel.is_set():
                raise Cancelled
            starts = [s for o in outcomes for s in o[0]]
            ends = [s + t for o in outcomes for s, t in zip(o[0], o[1], strict=True)]
            result.rounds_s.append(max(ends) - min(starts))
            for _, latencies, failed, errors in outcomes:
                result.failed += [len(result.latencies_s) + j for j in failed]
                result.latencies_s += latencies
                for text in errors:
                    if text not in result.error_samples and len(result.error_samples) < MAX_ERROR_SAMPLES:
                        result.error_samples.append(text)
        return result
    finally:
        for caller in callers:
            caller.close()


def _round(
    callers: list[Caller],
    encoded: list[list[Any]],
    shares: list[int],
    batch_size: int,
    cancel: threading.Event,
    progress: _Progress,
) -> list[tuple[list[float], list[float], list[int], list[str]]]:
    if len(callers) == 1:
        return [_client(callers[0], encoded[0], shares[0], batch_size, cancel, progress)]
    outcomes: list[Any] = [None] * len(callers)
    barrier = threading.Barrier(len(callers))

    def client(i: int) -> None:
        barrier.wait()
        outcomes[i] = _client(callers[i], encoded[i], shares[i], batch_size, cancel, progress)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(len(callers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def worker(plan: Plan, send: Callable[[tuple], None], cancel: threading.Event) -> None:
    """Run every case of ``plan``, reporting through ``send``; stops early once ``cancel`` is set."""
    progress = _Progress(send)
    try:
        for index, case in enumerate(plan.cases):
            if cancel.is_set():
                raise Cancelled
            send(("case", index, asdict(run_case(plan, case, cancel, progress))))
            progress.flush()
    except (Cancelled, KeyboardInterrupt):
        send(("cancelled",))
    except BaseException as error:  # noqa: BLE001 - the parent shows it
        send(("error", f"{type(error).__name__}: {error}"))
    else:
        send(("done",))


def _read_exactly(size: int) -> bytes:
    data = sys.stdin.buffer.read(size)
    if len(data) < size:
        raise EOFError
    return data


def _watch_stdin(cancel: threading.Event) -> None:
    # a byte, or EOF when the parent closed the pipe or died; os.read holds no lock that would
    # trouble interpreter shutdown while this daemon thread waits
    os.read(sys.stdin.fileno(), 1)
    cancel.set()


def main() -> None:
    """``python -m nbserve.latency.load FD``: read a Plan from stdin (8-byte length, then its JSON),
    send events (JSON) on the pipe ``FD``; any further byte on stdin, or its end, cancels."""
    from multiprocessing.connection import Connection

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal reaches the parent, which cancels
    events = Connection(int(sys.argv[1]), readable=False)
    try:
        size = int.from_bytes(_read_exactly(8), "big")
        plan = decode_plan(_read_exactly(size))
    except EOFError:  # cancelled before it started
        return
    cancel = threading.Event()
    threading.Thread(target=_watch_stdin, args=(cancel,), daemon=True).start()
    lock = threading.Lock()

    def send(event: tuple) -> None:
        with lock:  # client threads report progress concurrently
            events.send_bytes(json.dumps(event).encode())

    worker(plan, send, cancel)
    events.close()


if __name__ == "__main__":
    main()
