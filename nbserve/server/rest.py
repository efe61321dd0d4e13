"""TF Serving's REST API on Tornado: a thin adapter from HTTP/JSON to the dataplane.

Decoding, inference and encoding run on a worker pool so the event loop only moves bytes;
``--rest_api_timeout_in_ms`` bounds how long a request may wait for its answer.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable

import orjson
import tornado.web

from nbserve import tensors
from nbserve.dataplane import Dataplane, ModelSpec, Served
from nbserve.errors import DeadlineExceeded, Internal, InvalidArgument, ServingError
from nbserve.server import messages
from nbserve.server.routes import Route, parse_route

VERSION_HEADER = "X-Nbserve-Model-Version"
_ORIGIN_PREFIXES = ("http://", "https://")


class RestApi:
    """The REST handlers' shared state: dataplane, worker pool and timeout."""

    def __init__(
        self, dataplane: Dataplane, workers: int, timeout_ms: int, enable_cors: bool = False
    ) -> None:
        self.dataplane = dataplane
        self.pool = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="nbserve-rest")
        self.timeout = timeout_ms / 1000 if timeout_ms > 0 else None
        self.enable_cors = enable_cors

    def application(self) -> tornado.web.Application:
        """Tornado application routing ``/v1/...`` (any case) to TF Serving's REST API."""
        return tornado.web.Application([(r"(?i)/v1/.*", V1Handler, {"api": self})])

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    # -- request handling (runs on the worker pool) -------------------------------------------------

    def handle(self, method: str, uri: str, body: bytes) -> tuple[bytes, Served | None]:
        """Answer one ``/v1`` request; returns the JSON body and what served it."""
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
            return self._predict(route, doc)
        return self._examples(route, doc)

    def _predict(self, route: Route, doc: object) -> tuple[bytes, Served]:
        signature_name = tensors.request_signature_name(doc)
        spec = ModelSpec(route.model, route.version, route.label, signature_name)
        formats: list[str] = []

        def decode(signature):
            fmt, inputs = tensors.decode_predict_inputs(doc, signature.inputs, signature_name)
            formats.append(fmt)
            return inputs

        result = self.dataplane.predict(spec, decode)
        body = tensors.encode_predict_response(formats[0], result.outputs, result.output_infos)
        return body, result.served

    def _examples(self, route: Route, doc: object) -> tuple[bytes, Served]:
        tensors.request_signature_name(doc)
        signature_name, examples = tensors.decode_examples_request(doc, route.api)
        spec = ModelSpec(route.model, route.version, route.label, signature_name)
        if route.api == "classify":
            classified = self.dataplane.classify(spec, examples)
            return tensors.encode_classify_response(classified.classifications), classified.served
        regressed = self.dataplane.regress(spec, examples)
        return tensors.encode_regress_response(regressed.values), regressed.served


class V1Handler(tornado.web.RequestHandler):
    """Every ``/v1`` path; anything else gets Tornado's own (non-JSON) 404, as TF Serving's does."""

    def initialize(self, api: RestApi) -> None:
        self.api = api

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
        request = self.request
        call: Callable[[], tuple[bytes, Served | None]] = lambda: self.api.handle(  # noqa: E731
            method, request.uri or "", request.body
        )
        try:
            future = asyncio.wrap_future(self.api.pool.submit(call))
            body, served = await asyncio.wait_for(future, self.api.timeout)
        except TimeoutError:
            self._error(
                DeadlineExceeded(
                    f"Deadline Exceeded: the request took longer than --rest_api_timeout_in_ms="
                    f"{int(self.api.timeout * 1000)} ms; raise the flag or send smaller batches."
                )
            )
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
        self._cors()
        self.finish(body)

    def _error(self, error: ServingError) -> None:
        self.set_status(error.http_status, _reason(error.http_status))
        self._cors()
        self.finish(tensors.error_body(error.message))


def _reason(status: int) -> str | None:
    # Tornado refuses unknown codes without a reason phrase (499 is nginx's, TF uses it for CANCELLED).
    return "Client Closed Request" if status == 499 else None
