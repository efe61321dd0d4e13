"""An OpenAPI 3 document of TF Serving's REST API as nbserve serves it, at ``GET /openapi.json``
(outside ``/v1``, where TF Serving routes every path to the model API)."""

from __future__ import annotations

from typing import Any

import orjson
import tornado.web

OPENAPI_PATH = "/openapi.json"

_ANY: dict[str, Any] = {}
_REF = "#/components/schemas/"


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF + schema}}}}


_ERRORS = {
    "400": _json("Error", "INVALID_ARGUMENT / FAILED_PRECONDITION: the message names the fix"),
    "401": _json("Error", "UNAUTHENTICATED: the server has an access token and the request lacks it"),
    "404": _json("Error", "NOT_FOUND: no such model, version or label"),
    "413": _json("Error", "RESOURCE_EXHAUSTED: the body is larger than --rest_api_max_body_bytes"),
    "503": _json("Error", "UNAVAILABLE: the model is overloaded or not loaded yet"),
    "504": _json("Error", "DEADLINE_EXCEEDED: longer than --rest_api_timeout_in_ms"),
    "default": _json("Error", "Any other TF status, in the same shape"),
}

_MODEL = {
    "name": "model",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[^/:]+$"},
}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
}
_LABEL = {
    "name": "label",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[^/:]+$"},
}
_TARGETS = {"": [_MODEL], "/versions/{version}": [_MODEL, _VERSION], "/labels/{label}": [_MODEL, _LABEL]}

_POSTS = {
    "predict": (
        "PredictRequest",
        "PredictResponse",
        "Run the model on row (instances) or column (inputs) data",
    ),
    "classify": ("ExamplesRequest", "ClassifyResponse", "Classify tf.Examples given as JSON objects"),
    "regress": ("ExamplesRequest", "RegressResponse", "Regress tf.Examples given as JSON objects"),
}

_SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "PredictRequest": {
        "type": "object",
        "description": "Exactly one of instances (row format) or inputs (columnar format).",
        "properties": {
            "signature_name": {"type": "string"},
            "instances": {"type": "array"},
            "inputs": _ANY,
        },
    },
    "PredictResponse": {
        "type": "object",
        "description": "predictions for a row-format request, outputs for a columnar one.",
        "properties": {"predictions": {"type": "array"}, "outputs": _ANY},
    },
    "ExamplesRequest": {
        "type": "object",
        "required": ["examples"],
        "properties": {
            "signature_name": {"type": "string"},
            "context": {"type": "object"},
            "examples": {"type": "array", "items": {"type": "object"}},
        },
    },
    "ClassifyResponse": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "items": {
                    "type": "array",
                    "items": {"type": "array", "prefixItems": [{"type": "string"}, {"type": "number"}]},
                },
            }
        },
    },
    "RegressResponse": {
        "type": "object",
        "required": ["results"],
        "properties": {"results": {"type": "array", "items": {"type": "number"}}},
    },
    "StatusResponse": {
        "type": "object",
        "required": ["model_version_status"],
        "properties": {
            "model_version_status": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["version", "state", "status"],
                    "properties": {
                        "version": {"type": "string"},
                        "state": {"type": "string"},
                        "status": {
                            "type": "object",
                            "properties": {
                                "error_code": {"type": "string"},
                                "error_message": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
    "MetadataResponse": {
        "type": "object",
        "required": ["model_spec", "metadata"],
        "properties": {
            "model_spec": {
                "type": "object",
                "properties": {"name": {"type": "string"}, "version": {"type": "string"}},
            },
            "metadata": {"type": "object", "properties": {"signature_def": {"type": "object"}}},
        },
    },
}


def _operation(summary: str, parameters: list, response: str, request: str | None = None) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "parameters": parameters,
        "responses": {"200": _json(response, "OK"), **_ERRORS},
    }
    if request is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": _REF + request}}},
        }
    return operation


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document: every model path TF Serving's REST API answers."""
    paths: dict[str, Any] = {}
    for suffix, parameters in _TARGETS.items():
        base = "/v1/models/{model}" + suffix
        paths[base] = {"get": _operation("Model version status", parameters, "StatusResponse")}
        paths[base + "/metadata"] = {
            "get": _operation("Signatures (SignatureDefs)", parameters, "MetadataResponse")
        }
        for api, (request, response, summary) in _POSTS.items():
            paths[f"{base}:{api}"] = {"post": _operation(summary, parameters, response, request)}
    return {
        "openapi": "3.1.0",
        "info": {"title": "nbserve (TensorFlow Serving REST API)", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Only when the server has a token",
                },
                "query": {"type": "apiKey", "in": "query", "name": "token"},
            },
        },
        "security": [{}, {"bearer": []}, {"query": []}],
    }


_BODY = orjson.dumps(openapi_document())


class OpenApiHandler(tornado.web.RequestHandler):
    """``GET /openapi.json``: public (it describes the API, not the models)."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(_BODY)
