"""The kernel's server session in-process: default ports that are taken move to free ones."""

from __future__ import annotations

import socket

from nbserve import ServerOptions
from nbserve.notebook.session import Session
from nbserve.ports import free_port


def test_a_busy_default_port_moves_to_a_free_one_and_says_so() -> None:
    session = Session()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy, rest = taken.getsockname()[1], free_port()
        started = session.start(ServerOptions(port=busy, rest_api_port=rest), movable_ports=["port"])
        try:
            assert started.server.grpc_port not in (None, busy)
            assert started.server.rest_port == rest
            assert f"gRPC port {busy} is in use, so a free port was picked." in str(started)
        finally:
            assert session.stop()
    assert session.server is None and not session.stop()
