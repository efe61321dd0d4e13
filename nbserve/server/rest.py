"""TF Serving's REST API on Tornado: a thin adapter from HTTP/JSON to the dataplane.

Decoding, inference and encoding run on a worker pool so the event loop only moves bytes;
``--rest_api_timeout_in_ms`` bounds how long a request may wait for its answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson
import tornado.web

from nbserve import tensors
from nbserve.cancellation import RunControl, run_control
from nbserve.dataplane import Dataplane, ModelSpec, Served, UnknownSignature
from nbserve.errors import DeadlineExceeded, Internal, InvalidArgument, ServingError
from nbserve.server import messages
from nbserve.server.auth import REST_HINT, bearer, strip_token, token_matches, unauthenticated
from nbserve.server.limits import DEFAULT_MAX_BODY_BYTES, BodyReader
from nbserve.server.openapi import OPENAPI_PATH, OpenApiHandler
from nbserve.server.routes import Route, parse_route

if TYPE_CHECKING:
    from nbserve.isolation import ModelGate
    from nbserve.metrics import ServingMetrics

_Answer = tuple[bytes, "Served | None"]

VERSION_HEADER = "X-Nbserve-Model-Version"
KEY_HEADER = "X-Nbserve-Key"  # sticky A/B routing key
REQUEST_ID_HEADER = "X-Nbserve-Request-Id"  # for Experiment.feedback
_ORIGIN_PREFIXES = ("http://", "https://")


class RestApi:
    """The REST handlers' shared state: dataplane, worker pool and timeout."""

    metrics: ServingMetrics | None = None  # set by the runtime with --monitoring_config_file
    auth_token: str | None = None  # required from clients when set
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES

    def __init__(
        self, dataplane: Dataplane, workers: int, timeout_ms: int, enable_cors: bool = False
    ) -> None:
        self.dataplane = dataplane
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="nbserve-rest")
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        self.enable_cors = enable_cors

    def application(self) -> tornado.web.Application:
        """Tornado application routing ``/v1/...`` (any case) to TF Serving's REST API."""
        return tornado.web.Application(
            [(r"(?i)/v1/.*", V1Handler, {"api": self}), (OPENAPI_PATH, OpenApiHandler)]
        )

    def gate(self, method: str, uri: str) -> ModelGate | None:
        """The isolation gate of the model an inference request names (None for anything else)."""
        isolation = self.dataplane.isolation
        if isolation is None or method != "POST":
            return None
        try:
            return isolation.gate(parse_route(method, uri).model)
        except ServingError:
            return None  # a malformed path: answered on the worker with its own error

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- request handling (runs on the worker pool) -------------------------------------------------

    def handle(
        self, method: str, uri: str, body: bytes, key: str | None = None
    ) -> tuple[bytes, Served | None]:
        """Answer one ``/v1`` request (``key``: sticky A/B routing key); returns the JSON body and what
        served it."""
        route = parse_route(method, uri)
        if route.api == "status":
            statuses = self.dataplane.status(route.model, route.version)
            return orjson.dumps(messages.to_json_dict(messages.status_response(statuses))), None
        spec = ModelSpec(route.model, route.version, route.label)
        if route.api == "metadata":
            servable, signatures = self.dataplane.metadata(spec)
            doc = messages.metadata_json(servable.name, servable.version, signatures)
            return orjson.dumps(doc), None
        doc = tensors.parse_json(body)
        if route.api == "predict":
            return self._predict(route, doc, key)
        return self._examples(route, doc, key)

    def _predict(self, route: Route, doc: object, key: str | None) -> tuple[bytes, Served]:
        signature_name = tensors.request_signature_name(doc)
        spec = ModelSpec(route.model, route.version, route.label, signature_name, key)
        formats: list[str] = []

        def decode(signature):
            fmt, inputs = tensors.decode_predict_inputs(doc, signature.inputs, signature_name)
            formats.append(fmt)
            return inputs

        try:
            result = self.dataplane.predict(spec, decode)
        except UnknownSignature as error:
            raise InvalidArgument(
                f'Serving signature name: "{error.key}" not found in signature def ({error.hint})'
            ) from None
        body = tensors.encode_predict_response(formats[0], result.outputs, result.output_infos)
        return body, result.served

    def _examples(self, route: Route, doc: object, key: str | None) -> tuple[bytes, Served]:
        tensors.request_signature_name(doc)
        signature_name, examples = tensors.decode_examples_request(doc, route.api)
        spec = ModelSpec(route.model, route.version, route.label, signature_name, key)
        try:
            if route.api == "classify":
                classified = self.dataplane.classify(spec, examples)
                return tensors.encode_classify_response(classified.classifications), classified.served
            regressed = self.dataplane.regress(spec, examples)
            return tensors.encode_regress_response(regressed.values), regressed.served
        except InvalidArgument as error:
            if "Data types don't match" not in error.message:
                raise
            # TF's parse error cannot know the JSON typing rule behind it (TF Serving's trap 9).
            raise InvalidArgument(
                f"{error.message} (in JSON examples 6 makes an int64 feature and 6.0 a float one)"
            ) from None


@tornado.web.stream_request_body
class V1Handler(tornado.web.RequestHandler):
    """Every ``/v1`` path; anything else gets Tornado's own (non-JSON) 404, as TF Serving's does."""

    code = "OK"  # TF status name of the answer, for metrics

    def initialize(self, api: RestApi) -> None:
        self.api = api

    def prepare(self) -> None:
        """Before the body arrives: check the token and the declared body size."""
        request = self.request
        self._reader = BodyReader(self.api.max_body_bytes, request.headers.get("Content-Encoding"))
        if request.method == "OPTIONS":  # CORS preflights carry no credentials
            return
        request.uri, query_token = strip_token(request.uri or "")
        try:
            token = self.api.auth_token
            presented = bearer(request.headers.get("Authorization")) or query_token
            if token is not None and not token_matches(token, presented):
                raise unauthenticated(REST_HINT)
            self._reader.check_length(request.headers.get("Content-Length"))
        except ServingError as error:
            self._error(error)  # Tornado then drops the unread body and closes the connection

    def data_received(self, chunk: bytes) -> None:
        if self._finished:
            return
        try:
            self._reader.feed(chunk)
        except ServingError as error:
            self._error(error)

    def on_finish(self) -> None:
        if self.api.metrics is not None:
            self.api.metrics.observe_rest(self.request, self.code)

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json")

    def check_xsrf_cookie(self) -> None:
        """A JSON API for programs: no browser forms, so no XSRF cookie."""

    async def get(self) -> None:
        await self._answer("GET")

    async def post(self) -> None:
        await self._answer("POST")

    async def put(self) -> None:
        await self._answer("PUT")

    async def delete(self) -> None:
        await self._answer("DELETE")

    async def patch(self) -> None:
        await self._answer("PATCH")

    async def head(self) -> None:
        await self._answer("HEAD")

    def options(self) -> None:
        self.clear_header("Content-Type")
        origin = self.request.headers.get("Origin", "")
        if not origin.startswith(_ORIGIN_PREFIXES):
            self.set_status(400)
            self.finish(b"Origin header is missing in CORS preflight")
            return
        self._cors()
        self.finish()

    def _cors(self) -> None:
        if self.api.enable_cors:
            self.set_header("Access-Control-Allow-Origin", "*")
            self.set_header("Access-Control-Allow-Methods", "POST, GET")
            self.set_header("Access-Control-Allow-Headers", "Content-Type")

    async def _answer(self, method: str) -> None:
        if self._finished:  # refused while the body streamed in
            return
        request = self.request
        control = RunControl()
        key = request.headers.get(KEY_HEADER)

        def call() -> tuple[bytes, Served | None]:
            with run_control(control):
                return self.api.handle(method, request.uri or "", self._reader.body(), key)

        try:
            body, served = await asyncio.wait_for(self._run(method, call), self.api.timeout)
        except TimeoutError:
            error = DeadlineExceeded(
                f"Deadline Exceeded: the request took longer than --rest_api_timeout_in_ms="
                f"{int(self.api.timeout * 1000)} ms; raise the flag or send smaller batches."
            )
            control.cancel(error.message)  # stop the model run too, freeing its worker
            self._error(error)
            return
        except ServingError as error:
            self._error(error)
            return
        except RecursionError:
            self._error(InvalidArgument("JSON Parse error: the document is nested too deeply."))
            return
        except Exception as error:  # a bug or a model failure must still answer in TF Serving's shape
            self._error(Internal(f"{type(error).__name__}: {error}"))
            return
        if served is not None:
            self.set_header(VERSION_HEADER, str(served.version))
            if served.request_id is not None:
                self.set_header(REQUEST_ID_HEADER, served.request_id)
        self._cors()
        self.finish(body)

    async def _run(self, method: str, call: Callable[[], _Answer]) -> _Answer:
        """Run ``call`` on the worker pool once the model's gate admits it: waiting happens here on
        the event loop, so a saturated model holds no more workers than its gate's slots."""
        gate = self.api.gate(method, self.request.uri or "")
        if gate is None:
            return await asyncio.wrap_future(self.api.pool.submit(call))
        await gate.admit_async()
        try:
            future = self.api.pool.submit(call)
        except BaseException:
            gate.release()
            raise
        future.add_done_callback(lambda _: gate.release())  # the slot is free when the worker is
        return await asyncio.wrap_future(future)

    def _error(self, error: ServingError) -> None:
        self.code = error.code
        self.set_status(error.http_status, _reason(error.http_status))
        self._cors()
        self.finish(tensors.error_body(error.message))


def _reason(status: int) -> str | None:
    # Tornado refuses unknown codes without a reason phrase (499 is nginx's, TF uses it for CANCELLED).
    return "Client Closed Request" if status == 499 else None
