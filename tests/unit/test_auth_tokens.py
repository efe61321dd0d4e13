"""Token resolution, matching and query stripping; and nothing in the package unpickles."""

from __future__ import annotations

import pathlib
import re

import pytest

from nbserve.server import auth
from nbserve.server.options import ServerOptions
from nbserve.server.runtime import Server


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.ENV, raising=False)
    assert auth.resolve_token(host, None) == (None, False)
    assert auth.resolve_token(host, "given") == ("given", False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "example.org"])
def test_off_loopback_a_token_is_generated(host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.ENV, raising=False)
    token, generated = auth.resolve_token(host, None)
    assert generated and token and len(token) >= 32
    assert auth.resolve_token(host, None)[0] != token
    monkeypatch.setenv(auth.ENV, "from-env")
    assert auth.resolve_token(host, None) == ("from-env", False)


def test_server_generates_without_binding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(auth.ENV, raising=False)
    server = Server(options=ServerOptions(host="0.0.0.0", port=None, rest_api_port=None))
    server._guard(object(), type("D", (), {})(), server.options)  # type: ignore[arg-type]
    assert server.auth_token and server._token_generated
    banner = auth.token_banner(server.auth_token, "http://0.0.0.0:8501", "0.0.0.0:8500")
    assert server.auth_token in banner and "Bearer" in banner


def test_matching_and_parsing() -> None:
    assert auth.token_matches("abc", "abc") and not auth.token_matches("abc", "abd")
    assert not auth.token_matches("abc", None)
    assert auth.bearer("Bearer abc") == "abc" and auth.bearer("bearer  abc ") == "abc"
    assert auth.bearer("Basic abc") is None and auth.bearer(None) is None


@pytest.mark.parametrize(
    ("uri", "stripped", "token"),
    [
        ("/v1/models/m", "/v1/models/m", None),
        ("/v1/models/m?token=t", "/v1/models/m", "t"),
        ("/v1/models/m?a=1&token=t%2B&b=2", "/v1/models/m?a=1&b=2", "t+"),
        ("/v1/models/m?a=1", "/v1/models/m?a=1", None),
        ("/v1/models/m?tokens=1", "/v1/models/m?tokens=1", None),
    ],
)
def test_strip_token(uri: str, stripped: str, token: str | None) -> None:
    assert auth.strip_token(uri) == (stripped, token)


def test_nothing_in_the_package_unpickles() -> None:
    package = pathlib.Path(auth.__file__).parents[1]
    # multiprocessing's Connection.recv() unpickles too: processes talk with recv_bytes() and JSON
    pattern = re.compile(
        r"\b(pickle|marshal|dill|shelve)\.(loads?|Unpickler|open)\b|allow_pickle\s*=\s*True|\.recv\(\)"
    )
    found = [
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if "protos" not in path.parts and pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert found == []
