"""What a latency run measures: transports, modes, and the cases (one transport x mode x batch size x
server batching setting) a run is made of. Sent to the load process as JSON (``encode_plan``), never
pickled."""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

TRANSPORTS = ("rest", "grpc", "inprocess")
MODES = ("batch", "sequential", "concurrent", "sweep")
MODE_TITLES = {
    "batch": "one batch of N",
    "sequential": "N one-by-one",
    "concurrent": "N one-by-one, k clients",
    "sweep": "batch-size sweep",
}


@dataclass(frozen=True)
class Case:
    """One measured setting. ``requests`` requests of ``batch_size`` rows each are sent per round,
    spread over ``clients`` clients that each send their share one at a time. ``batching`` is the
    server's setting ("on", "off"), or None when unknown or not applicable (in-process)."""

    transport: str
    mode: str
    batch_size: int
    requests: int
    clients: int = 1
    batching: str | None = None
    address: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        """Short name for tables and plots, e.g. ``rest batch 64`` or ``grpc concurrent k=4 [on]``."""
        if self.mode == "sweep":
            what = f"sweep b={self.batch_size}"
        elif self.mode == "concurrent":
            what = f"concurrent k={self.clients}"
        else:
            what = self.mode
        tail = f" [batching {self.batching}]" if self.batching else ""
        return f"{self.transport} {what}{tail}"


@dataclass(frozen=True)
class Plan:
    """Everything the load process needs: the model, the request rows (alias -> batch-major array,
    cycled when a case needs more rows), the signature's input dtypes (TF DataType enum) and the cases."""

    model: str
    signature: str
    rows: dict[str, np.ndarray]
    dtypes: dict[str, int]
    cases: tuple[Case, ...]
    repeats: int = 1
    warmup: int = 2
    timeout_s: float = 60.0
    version: int | None = None

    @property
    def total_requests(self) -> int:
        """Timed requests of the whole run (what progress counts)."""
        return sum(case.requests for case in self.cases) * self.repeats


def sweep_sizes(n: int) -> list[int]:
    """1, 2, 4, ... up to ``n``, and ``n`` itself."""
    sizes = [2**i for i in range(int(math.log2(max(n, 1))) + 1)]
    return sizes if sizes[-1] == n else [*sizes, n]


def build_cases(
    n: int,
    transports: Iterable[str],
    modes: Iterable[str],
    *,
    concurrency: int = 4,
    batch_sizes: Sequence[int] | None = None,
    addresses: dict[tuple[str, str | None], str],
) -> list[Case]:
    """The cases for ``n`` rows: ``batch`` (one request of n rows), ``sequential`` (n one-row requests),
    ``concurrent`` (n one-row requests from ``concurrency`` clients), ``sweep`` (for each batch size b,
    ceil(n / b) requests of b rows, one at a time). ``addresses`` maps (transport, batching) to where
    to send; a case is made for each of its keys whose transport is asked for."""
    transports, modes = list(transports), list(modes)
    check_names("transport", transports, TRANSPORTS)
    check_names("mode", modes, MODES)
    if n < 1:
        raise ValueError(f"N must be at least 1, got {n}")
    if concurrency < 1:
        raise ValueError(f"concurrency must be at least 1, got {concurrency}")
    sizes = sorted(set(batch_sizes)) if batch_sizes else sweep_sizes(n)
    if sizes[0] < 1:
        raise ValueError(f"batch sizes must be positive, got {sizes}")
    cases = []
    in_order = [(key, to) for transport in transports for key, to in addresses.items() if key[0] == transport]
    for (transport, batching), address in in_order:
        for mode in modes:
            common: dict[str, Any] = {"transport": transport, "mode": mode, "batching": batching}
            common["address"] = address
            if mode == "batch":
                cases.append(Case(batch_size=n, requests=1, **common))
            elif mode == "sequential":
                cases.append(Case(batch_size=1, requests=n, **common))
            elif mode == "concurrent":
                cases.append(Case(batch_size=1, requests=n, clients=min(concurrency, n), **common))
            else:
                cases += [Case(batch_size=b, requests=math.ceil(n / b), **common) for b in sizes]
    return cases


def check_names(kind: str, given: list[str], known: tuple[str, ...]) -> None:
    """ValueError unless ``given`` is a non-empty selection of ``known``."""
    unknown = [name for name in given if name not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {', '.join(map(repr, unknown))}; choose from {', '.join(known)}")
    if not given:
        raise ValueError(f"choose at least one {kind} from {', '.join(known)}")


def encode_plan(plan: Plan) -> bytes:
    """The plan as JSON; request rows travel as serialized TensorProtos (any dtype, strings included)."""
    from nbserve import tensors

    doc = asdict(plan)
    doc["rows"] = {
        alias: base64.b64encode(tensors.ndarray_to_tensor_proto(rows).SerializeToString()).decode("ascii")
        for alias, rows in plan.rows.items()
    }
    return json.dumps(doc).encode()


def decode_plan(data: bytes) -> Plan:
    """Inverse of :func:`encode_plan`."""
    from nbserve import tensors
    from nbserve.protos.tensorflow.core.framework.tensor_pb2 import TensorProto

    doc = json.loads(data)
    rows = {}
    for alias, text in doc.pop("rows").items():
        proto = TensorProto.FromString(base64.b64decode(text))
        rows[alias] = np.array(tensors.tensor_proto_to_ndarray(proto, alias))
    cases = tuple(Case(**case) for case in doc.pop("cases"))
    return Plan(rows=rows, cases=cases, **doc)
