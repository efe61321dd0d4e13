"""The OpenAPI document nbserve serves, and a bounded schemathesis run against a live server: no 5xx,
every answer (errors included) as documented."""

from __future__ import annotations

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nbserve.server.openapi import OPENAPI_PATH
from nbserve.server.runtime import Server

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_document_is_served_outside_v1(server: Server) -> None:
    document = requests.get(server.rest_url + OPENAPI_PATH, timeout=30).json()
    assert document["openapi"].startswith("3.")
    assert "/v1/models/{model}/labels/{label}:predict" in document["paths"]
    assert document["components"]["schemas"]["Error"]["required"] == ["error"]


def test_api_conforms(server: Server) -> None:
    # operation by operation through hypothesis: schemathesis' pytest plugin does not load on this pytest
    api = schemathesis.openapi.from_url(server.rest_url + OPENAPI_PATH)
    operations = [result.ok() for result in api.get_all_operations()]
    assert len(operations) == 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def conforms(case) -> None:
            case.call_and_validate(checks=CHECKS)

        conforms()
