"""``%%nbserve predict``: send a TF Serving JSON request (row or columnar) to the kernel's server over
REST or gRPC and show the outputs as a table.

The gRPC path encodes the JSON with nbserve's own codecs and protos against the signature the server
reports (GetModelMetadata), so the kernel needs no tensorflow-serving-api.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nbserve.errors import ServingError
from nbserve.notebook.errors import NotebookError
from nbserve.signature import DEFAULT_SERVING_SIGNATURE
from nbserve.tables import html_table, text_table

if TYPE_CHECKING:
    from nbserve.server.runtime import Server

_VERSION_HEADER = "X-Nbserve-Model-Version"
_TIMEOUT_S = 60


@dataclass(frozen=True)
class Prediction:
    """A Predict answer: ``outputs`` maps each output alias to its batch-major array."""

    model: str
    version: int | None
    transport: str
    outputs: dict[str, np.ndarray]

    def rows(self) -> list[list[str]]:
        """One row per instance: its index, then each output's value."""
        count = max((len(a) for a in self.outputs.values()), default=0)
        return [[str(i), *(_cell(a, i) for a in self.outputs.values())] for i in range(count)]

    def _caption(self) -> str:
        version = "" if self.version is None else f" version {self.version}"
        return f"{self.model}{version} via {self.transport}"

    def _repr_html_(self) -> str:
        return html_table(["#", *self.outputs], self.rows(), caption=self._caption())

    def __repr__(self) -> str:
        return self._caption() + "\n" + text_table(["#", *self.outputs], self.rows())


def predict(
    server: Server,
    model: str,
    body: str,
    *,
    signature: str | None = None,
    version: int | None = None,
    label: str | None = None,
    use_grpc: bool = False,
) -> Prediction:
    """Send the JSON ``body`` as a Predict request for ``model``; raise NotebookError with the
    server's error text when it fails."""
    if version is not None and label is not None:
        raise NotebookError("Pass at most one of --version and --label.", "INVALID_ARGUMENT")
    try:
        if use_grpc:
            return _predict_grpc(server, model, body, signature, version, label)
        return _predict_rest(server, model, body, signature, version, label)
    except ServingError as error:  # raised by the local JSON codec on the gRPC path
        raise NotebookError(error.message, error.code) from None


# -- REST ----------------------------------------------------------------------------------------------


def _predict_rest(
    server: Server, model: str, body: str, signature: str | None, version: int | None, label: str | None
) -> Prediction:
    if server.rest_url is None:
        raise NotebookError("REST is off on this server (--rest_api_port=0): use --grpc.", "UNAVAILABLE")
    url = f"{server.rest_url}/v1/models/{urllib.parse.quote(model, safe='')}"
    if version is not None:
        url += f"/versions/{version}"
    elif label is not None:
        url += f"/labels/{urllib.parse.quote(label, safe='')}"
    body = _with_signature(body, signature)
    answer, served = _rest_call(f"{url}:predict", body.encode("utf-8"))
    outputs = _rest_outputs(answer)
    if len(outputs) == 1:  # a single output comes back unnamed: take its alias from the metadata
        metadata, _ = _rest_call(f"{url}/metadata")
        signatures = metadata["metadata"]["signature_def"]["signature_def"]
        aliases = list(signatures.get(_signature_key(body), {}).get("outputs", ()))
        if len(aliases) == 1:
            outputs = {aliases[0]: next(iter(outputs.values()))}
    return Prediction(model, int(served) if served else None, "REST", outputs)


def _rest_call(url: str, data: bytes | None = None) -> tuple[Any, str | None]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            return json.loads(response.read()), response.headers.get(_VERSION_HEADER)
    except urllib.error.HTTPError as error:
        raise NotebookError(_rest_error_text(error), f"HTTP {error.code}") from None
    except urllib.error.URLError as error:
        raise NotebookError(f"Cannot reach {url}: {error.reason}", "UNAVAILABLE") from None


def _signature_key(body: str) -> str:
    doc = json.loads(body)  # the server just accepted it
    return doc.get("signature_name") or DEFAULT_SERVING_SIGNATURE


def _with_signature(body: str, signature: str | None) -> str:
    if not signature:
        return body
    try:
        doc = json.loads(body)
    except ValueError:
        return body  # the server reports the parse error in its own words
    if isinstance(doc, dict):
        doc["signature_name"] = signature
    return json.dumps(doc)


def _rest_error_text(error: urllib.error.HTTPError) -> str:
    text = error.read().decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text or str(error.reason)


def _rest_outputs(answer: dict[str, Any]) -> dict[str, np.ndarray]:
    if "predictions" in answer:
        rows = answer["predictions"]
        if rows and all(isinstance(row, dict) for row in rows):
            return {name: np.asarray([row[name] for row in rows]) for name in rows[0]}
        return {"predictions": np.asarray(rows)}
    outputs = answer.get("outputs")
    named = outputs if isinstance(outputs, dict) else {"outputs": outputs}
    return {name: np.atleast_1d(np.asarray(value)) for name, value in named.items()}


# -- gRPC ----------------------------------------------------------------------------------------------


def _predict_grpc(
    server: Server, model: str, body: str, signature: str | None, version: int | None, label: str | None
) -> Prediction:
    import grpc

    from nbserve import tensors
    from nbserve.protos.tensorflow_serving.apis import (
        get_model_metadata_pb2,
        predict_pb2,
        prediction_service_pb2_grpc,
    )
    from nbserve.servables.saved_model import signature_from_def

    if server.grpc_address is None:
        raise NotebookError("gRPC is off on this server (--port=0): drop --grpc.", "UNAVAILABLE")
    doc = tensors.parse_json(body)
    key = signature or tensors.request_signature_name(doc) or DEFAULT_SERVING_SIGNATURE

    def spec(target: Any) -> None:
        target.name = model
        target.signature_name = key
        if version is not None:
            target.version.value = version
        elif label is not None:
            target.version_label = label

    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        try:
            metadata_request = get_model_metadata_pb2.GetModelMetadataRequest(
                metadata_field=["signature_def"]
            )
            spec(metadata_request.model_spec)
            metadata = stub.GetModelMetadata(metadata_request, timeout=_TIMEOUT_S)
            signatures = get_model_metadata_pb2.SignatureDefMap()
            metadata.metadata["signature_def"].Unpack(signatures)
            request = predict_pb2.PredictRequest()
            spec(request.model_spec)
            # An unknown signature goes out without inputs, so the server words the error.
            if key in signatures.signature_def:
                inputs = signature_from_def(key, signatures.signature_def[key]).inputs
                _, arrays = tensors.decode_predict_inputs(doc, inputs, key)
                for alias, array in arrays.items():
                    request.inputs[alias].CopyFrom(
                        tensors.ndarray_to_tensor_proto(array, inputs[alias].dtype)
                    )
            response = stub.Predict(request, timeout=_TIMEOUT_S)
        except grpc.RpcError as error:
            raise NotebookError(error.details() or str(error), error.code().name) from None
    outputs = {
        alias: np.atleast_1d(tensors.tensor_proto_to_ndarray(proto, alias))
        for alias, proto in sorted(response.outputs.items())
    }
    return Prediction(model, response.model_spec.version.value, "gRPC", outputs)


def _cell(array: np.ndarray, row: int) -> str:
    if row >= len(array):
        return ""
    value = array[row]
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return np.array2string(np.asarray(value), precision=6, separator=", ", threshold=16, edgeitems=4)
