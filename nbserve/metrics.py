"""TF Serving's Prometheus metrics (``--monitoring_config_file``), served on the REST port.

Names, labels and units are tensorflow_model_server's. Every request is counted in one place,
``ServingMetrics.observe_request``: REST calls it from its handler's ``on_finish``, gRPC through a server
interceptor. Servables report their run time through ``loader`` (labelled with the API that ``dataplane``
is serving) and the batch scheduler its batches through ``batch_listener``. Each server has its own
``CollectorRegistry``.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from time import perf_counter
from typing import Any

import grpc
import numpy as np
import tornado.httputil
import tornado.web
from google.protobuf import text_format
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.utils import floatToGoString

from nbserve.batching.scheduler import BatchRecord
from nbserve.dataplane import ClassifyResult, Dataplane, PredictResult, RegressResult
from nbserve.errors import InvalidArgument, ServingError
from nbserve.manager.manager import Loader, Manager
from nbserve.protos.tensorflow_serving.config import monitoring_config_pb2
from nbserve.servables.base import Servable
from nbserve.servables.wrapped import WrappedServable
from nbserve.server.auth import REST_HINT, bearer, strip_token, token_matches, unauthenticated
from nbserve.server.routes import POST_APIS, parse_route
from nbserve.signature import Signature
from nbserve.tensors import error_body

__all__ = ["DEFAULT_PATH", "ServingMetrics", "read_monitoring_config"]

DEFAULT_PATH = "/monitoring/prometheus/metrics"
_PREFIX = ":tensorflow:serving:"
# TF's latency buckets: 10 µs × 1.8^k, 33 of them (printed to 6 significant digits).
_LATENCY_US = tuple(float(f"{10 * 1.8**k:.6g}") for k in range(33))
_SIZES = tuple(float(2**k) for k in range(17))
_GRPC_APIS = {
    f"/tensorflow.serving.PredictionService/{api}": api for api in ("Predict", "Classify", "Regress")
}
_serving = threading.local()  # .api: the API of the request this thread serves


def read_monitoring_config(path: str) -> str | None:
    """The Prometheus page path of a ``MonitoringConfig`` text file, or None when Prometheus is off."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidArgument(f"Cannot read --monitoring_config_file={path}: {error}") from error
    config = monitoring_config_pb2.MonitoringConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise InvalidArgument(f"Invalid MonitoringConfig text in {path}: {error}") from error
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    page = prometheus.path or DEFAULT_PATH
    if not page.startswith("/"):
        raise InvalidArgument(
            f'prometheus_config.path must be a URL path starting with "/"; got "{page}" in {path}'
        )
    return page


class ServingMetrics:
    """The server's metrics and the hooks that record them; ``path`` is where REST serves the page."""

    def __init__(self, path: str = DEFAULT_PATH) -> None:
        self.path = path
        self.registry = registry = CollectorRegistry()

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(_PREFIX + name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> Histogram:
            return Histogram(_PREFIX + name, doc, labels, buckets=buckets, registry=registry)

        self.request_count = counter(
            "request_count", "The total number of requests.", ["model_name", "status"]
        )
        self.request_latency = histogram(
            "request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ["model_name", "API", "entrypoint"],
            _LATENCY_US,
        )
        self.runtime_latency = histogram(
            "runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ["model_name", "API", "runtime"],
            _LATENCY_US,
        )
        self.queuing_latency = histogram(
            "batching_session:queuing_latency",
            "Tracks the batch queuing latency (in microseconds) on the inputs by thread_pool_name.",
            ["thread_pool_name"],
            _LATENCY_US,
        )
        self.input_batch_size = histogram(
            "batching_session:input_batch_size",
            "Tracks the batch size distribution on the inputs.",
            (),
            _SIZES,
        )
        self.processed_batch_size = histogram(
            "batching_session:processed_batch_size",
            "Tracks the batch size distribution on processing.",
            (),
            _SIZES,
        )
        self.padding_size = histogram(
            "batching_session:padding_size", "Tracks the padding size distribution on batches.", (), _SIZES
        )
        self.wrapped_run_count = counter(
            "batching_session:wrapped_run_count", "Tracks the number of batched session run calls."
        )

    @classmethod
    def from_config_file(cls, path: str | None) -> ServingMetrics | None:
        """Metrics for a ``--monitoring_config_file``; None without one or with Prometheus off."""
        page = read_monitoring_config(path) if path else None
        return None if page is None else cls(page)

    # -- recording ----------------------------------------------------------------------------------

    def observe_request(self, model_name: str, api: str, entrypoint: str, code: str, seconds: float) -> None:
        """Count one request by status; time it when it succeeded (as TF Serving does)."""
        self.request_count.labels(model_name, code).inc()
        if code == "OK":
            self.request_latency.labels(model_name, api, entrypoint).observe(seconds * 1e6)

    def observe_rest(self, request: tornado.httputil.HTTPServerRequest, code: str) -> None:
        """One answered ``/v1`` request; ``code`` is the TF status name of the answer."""
        method, uri = request.method or "", request.uri or ""
        if method == "OPTIONS":  # CORS preflight, not an API call
            return
        try:
            route = parse_route(method, uri)
        except ServingError:
            model_name, api = "", ""
        else:
            model_name, api = route.model, route.api if route.api in POST_APIS else ""
        self.observe_request(model_name, api, "REST", code, request.request_time())

    def grpc_interceptor(self) -> grpc.ServerInterceptor:
        """Counts and times PredictionService Predict / Classify / Regress."""
        return _GrpcMetrics(self.observe_request)

    def dataplane(self, manager: Manager) -> Dataplane:
        """A Dataplane that tells the servables which API each run serves (``runtime_latency``'s label)."""
        return _LabelledDataplane(manager)

    def loader(self, load: Loader) -> Loader:
        """Wrap a ``loader(name, version, path)`` so its servables record ``runtime_latency``."""

        def load_timed(name: str, version: int, path: str) -> Servable:
            return _TimedServable(load(name, version, path), self.runtime_latency)

        return load_timed

    def batch_listener(self, thread_pool_name: str) -> Callable[[BatchRecord], None]:
        """A BatchScheduler listener recording the batching_session metrics."""
        queuing = self.queuing_latency.labels(thread_pool_name)

        def on_batch(record: BatchRecord) -> None:
            for delay in record.queue_delays_s:
                queuing.observe(delay * 1e6)
            self.input_batch_size.observe(record.batch_size - record.padding)
            self.processed_batch_size.observe(record.batch_size)
            self.padding_size.observe(record.padding)
            self.wrapped_run_count.inc(record.num_tasks)

        return on_batch

    # -- the page -----------------------------------------------------------------------------------

    def text(self) -> bytes:
        """The Prometheus text page."""
        return _exposition(self.registry)

    def add_page(self, app: tornado.web.Application, token: str | None = None) -> None:
        """Serve the page at ``path`` on a REST application, ahead of its other routes; with a
        ``token`` the page needs it like every other REST call (Bearer header or ``?token=``)."""
        page = {"metrics": self, "token": token}
        app.add_handlers(r".*", [(re.escape(self.path), _PageHandler, page)])


def _exposition(registry: CollectorRegistry) -> bytes:
    """TF Serving's page: ``# TYPE`` lines only, counters under their own name (prometheus-client's writer
    would rename them ``..._total``), no ``_created`` series."""
    lines = []
    for family in registry.collect():
        lines.append(f"# TYPE {family.name} {family.type}")
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            name = family.name if family.type == "counter" else sample.name
            pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(sample.labels.items()))
            labels = "{%s}" % pairs if pairs else ""
            lines.append(f"{name}{labels} {floatToGoString(sample.value)}")
    lines.append("")
    return "\n".join(lines).encode()


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _PageHandler(tornado.web.RequestHandler):
    def initialize(self, metrics: ServingMetrics, token: str | None) -> None:
        self.metrics = metrics
        self.token = token

    def get(self) -> None:
        uri, query_token = strip_token(self.request.uri or "")
        presented = bearer(self.request.headers.get("Authorization")) or query_token
        if self.token is not None and not token_matches(self.token, presented):
            self.set_status(401)
            self.set_header("Content-Type", "application/json")
            self.finish(error_body(unauthenticated(REST_HINT).message))
            return
        if uri != self.metrics.path:
            self.set_status(400)
            self.finish(f"Unexpected path: {uri}. Should be {self.metrics.path}")
            return
        self.set_header("Content-Type", CONTENT_TYPE_PLAIN_0_0_4)
        self.finish(self.metrics.text())


class _GrpcMetrics(grpc.ServerInterceptor):
    def __init__(self, observe: Callable[[str, str, str, str, float], None]) -> None:
        self._observe = observe
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method  # type: ignore[attr-defined]
        api = _GRPC_APIS.get(method)
        if handler is None or api is None:
            return handler
        cached = self._wrapped.get(method)
        if cached is None or cached[0] is not handler:
            cached = self._wrapped[method] = (handler, self._wrap(handler, api))
        return cached[1]

    def _wrap(self, handler: grpc.RpcMethodHandler, api: str) -> grpc.RpcMethodHandler:
        run, observe = handler.unary_unary, self._observe

        def measured(request: Any, context: grpc.ServicerContext) -> Any:
            start = perf_counter()
            code = "UNKNOWN"  # raised without setting a status
            try:
                response = run(request, context)
                code = "OK"
                return response
            finally:
                status = context.code()  # set by abort() on every mapped error
                observe(
                    request.model_spec.name,
                    api,
                    "GRPC",
                    code if status is None else status.name,
                    perf_counter() - start,
                )

        return grpc.unary_unary_rpc_method_handler(
            measured,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class _LabelledDataplane(Dataplane):
    def predict(self, *args: Any, **kwargs: Any) -> PredictResult:
        _serving.api = "Predict"
        return super().predict(*args, **kwargs)

    def classify(self, *args: Any, **kwargs: Any) -> ClassifyResult:
        _serving.api = "Classify"
        return super().classify(*args, **kwargs)

    def regress(self, *args: Any, **kwargs: Any) -> RegressResult:
        _serving.api = "Regress"
        return super().regress(*args, **kwargs)


class _TimedServable(WrappedServable):
    """Records each successful run in ``runtime_latency``, labelled with the API that asked for it."""

    def __init__(self, inner: Servable, histogram: Histogram) -> None:
        super().__init__(inner)
        self._histogram = histogram

    def run(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_keys: Sequence[str]
    ) -> dict[str, np.ndarray]:
        start = perf_counter()
        outputs = self.inner.run(signature, inputs, output_keys)
        api = getattr(_serving, "api", "Predict")
        self._histogram.labels(self.name, api, "TF1").observe((perf_counter() - start) * 1e6)
        return outputs
