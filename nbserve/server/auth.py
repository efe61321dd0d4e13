"""Access tokens, like Jupyter's: required when the server listens beyond loopback, and whenever one
is given. REST takes ``Authorization: Bearer <token>`` or ``?token=<token>``; gRPC the metadata
``authorization: Bearer <token>``."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

import grpc

from nbserve.errors import Unauthenticated

ENV = "NBSERVE_TOKEN"
REST_HINT = "send the header 'Authorization: Bearer <token>' or add '?token=<token>' to the URL"
GRPC_HINT = "send the metadata ('authorization', 'Bearer <token>') with the call"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and localhost; anything else (0.0.0.0, a LAN address, a name) is not."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, given: str | None) -> tuple[str | None, bool]:
    """The token to require and whether it was generated: ``--auth_token``, else ``$NBSERVE_TOKEN``,
    else a fresh one when ``host`` is not loopback, else none."""
    token = given or os.environ.get(ENV) or None
    if token is not None or is_loopback(host):
        return token, False
    return secrets.token_urlsafe(32), True


def token_matches(expected: str, presented: str | None) -> bool:
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` value."""
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def strip_token(uri: str) -> tuple[str, str | None]:
    """``uri`` without its ``token`` query parameter (other parameters untouched), and that token."""
    path, mark, query = uri.partition("?")
    if not mark:
        return uri, None
    kept, token = [], None
    for part in query.split("&"):
        if part.startswith("token="):
            token = unquote_plus(part[len("token=") :])
        else:
            kept.append(part)
    if token is None:
        return uri, None
    return (f"{path}?{'&'.join(kept)}" if kept else path), token


def unauthenticated(hint: str) -> Unauthenticated:
    return Unauthenticated(f"This server requires an access token: {hint}.")


class TokenInterceptor(grpc.ServerInterceptor):
    """Refuses every gRPC call without the token with UNAUTHENTICATED."""

    def __init__(self, token: str) -> None:
        self.token = token
        message = unauthenticated(GRPC_HINT).message

        def refuse(request: Any, context: grpc.ServicerContext) -> None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

        self._refusal = grpc.unary_unary_rpc_method_handler(refuse)

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        metadata = dict(details.invocation_metadata or ())
        value = metadata.get("authorization")
        if token_matches(self.token, bearer(value if isinstance(value, str) else None)):
            return continuation(details)
        return self._refusal


def token_banner(token: str | None, rest_url: str | None, grpc_address: str | None) -> str:
    """What to print once at start when the token was generated: how clients pass it."""
    lines = [f"nbserve: the server listens beyond loopback; clients need this access token:\n    {token}"]
    if rest_url:
        lines.append(f"    REST: {rest_url}/v1/models/<model>?token={token}, or {REST_HINT}")
    if grpc_address:
        lines.append(f"    gRPC ({grpc_address}): {GRPC_HINT}")
    lines.append(f"    Set --auth_token or ${ENV} to choose it.")
    return "\n".join(lines)
