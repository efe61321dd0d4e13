"""Start and stop the model server: manager, gRPC server and Tornado REST server, all on background
threads (Tornado on its own asyncio loop), so a Jupyter kernel's own event loop is never touched."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import threading
import weakref
from dataclasses import replace
from typing import Any

import grpc
import tornado.httpserver
import tornado.netutil

from nbserve.dataplane import Dataplane
from nbserve.errors import ServingError, Unavailable
from nbserve.manager.manager import Manager
from nbserve.server.grpc import add_services
from nbserve.server.options import ServerOptions
from nbserve.server.rest import RestApi

log = logging.getLogger("nbserve")
_MAX_GRPC_MESSAGE = 2**31 - 1
_running: weakref.WeakSet[Server] = weakref.WeakSet()


class Server:
    """A TF-Serving-compatible model server: ``Server(model_base_path="/abs/path", model_name="m")``.

    Takes tensorflow_model_server's flags as keyword arguments (see ``ServerOptions``).
    ``start()`` returns once the configured models are available and both ports listen;
    ``stop()`` frees the ports. Also a context manager.
    """

    def __init__(self, model_base_path: str | None = None, model_name: str = "default", **flags: Any) -> None:
        base = flags.pop("options", None) or ServerOptions()
        self.options = replace(base, **flags)
        if model_base_path is not None:
            self.options = replace(self.options, model_base_path=model_base_path, model_name=model_name)
        self.manager: Manager | None = None
        self.dataplane: Dataplane | None = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._grpc: grpc.Server | None = None
        self._rest_api: RestApi | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._config_thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> Server:
        """Load the configured models, then open the gRPC and REST ports. Non-blocking once started."""
        with self._lock:
            if self.manager is not None:
                return self
            options = self.options
            self._stopping.clear()
            manager = Manager(
                file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
                allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
            )
            self.manager, self.dataplane = manager, Dataplane(manager)
            try:
                manager.start()
                manager.reload_config(options.model_configs(), wait=True)
                if options.port is not None:
                    self._start_grpc(options)
                if options.rest_api_port is not None:
                    self._start_rest(options)
            except BaseException:
                self._shutdown()
                raise
            if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
                self._config_thread = threading.Thread(
                    target=self._poll_config_file, name="nbserve-config-poll", daemon=True
                )
                self._config_thread.start()
            _running.add(self)
            log.info("nbserve serving: gRPC %s, REST %s", self.grpc_address, self.rest_url)
            return self

    def stop(self) -> None:
        """Stop both servers and unload every model; frees the ports. Safe to call twice."""
        with self._lock:
            self._shutdown()
            _running.discard(self)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self.manager is not None

    @property
    def grpc_address(self) -> str | None:
        """``host:port`` for ``grpc.insecure_channel``, or None when gRPC is off."""
        return None if self.grpc_port is None else f"{_url_host(self.options.host)}:{self.grpc_port}"

    @property
    def rest_url(self) -> str | None:
        """``http://host:port`` of the REST API, or None when REST is off."""
        return None if self.rest_port is None else f"http://{_url_host(self.options.host)}:{self.rest_port}"

    def reload_config(self, text_or_configs: Any) -> None:
        """Replace the served models with a ModelServerConfig (text proto or parsed ModelConfigs)."""
        from nbserve.manager.config import parse_model_server_config

        configs = (
            parse_model_server_config(text_or_configs)
            if isinstance(text_or_configs, str)
            else text_or_configs
        )
        self._require_manager().reload_config(list(configs), wait=True)

    def _require_manager(self) -> Manager:
        if self.manager is None:
            raise Unavailable("The server is not running: call start() first.")
        return self.manager

    # -- servers ------------------------------------------------------------------------------------

    def _start_grpc(self, options: ServerOptions) -> None:
        assert self.dataplane is not None
        server = grpc.server(
            concurrent.futures.ThreadPoolExecutor(
                options.grpc_max_threads, thread_name_prefix="nbserve-grpc"
            ),
            options=[
                ("grpc.max_send_message_length", _MAX_GRPC_MESSAGE),
                ("grpc.max_receive_message_length", _MAX_GRPC_MESSAGE),
                ("grpc.so_reuseport", 0),
            ],
        )
        add_services(server, self.dataplane)
        address = f"{_url_host(options.host)}:{options.port}"
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise Unavailable(f"Cannot bind gRPC to {address}: {error}. Pick another --port.") from error
        if port == 0:
            raise Unavailable(f"Cannot bind gRPC to {address}: the port is in use. Pick another --port.")
        server.start()
        self._grpc, self.grpc_port = server, port

    def _start_rest(self, options: ServerOptions) -> None:
        assert self.dataplane is not None
        try:
            sockets = tornado.netutil.bind_sockets(
                options.rest_api_port, address=options.host, reuse_port=False
            )
        except OSError as error:
            raise Unavailable(
                f"Cannot bind REST to {options.host}:{options.rest_api_port}: {error.strerror}. "
                "Pick another --rest_api_port."
            ) from error
        self.rest_port = sockets[0].getsockname()[1]
        self._rest_api = RestApi(
            self.dataplane,
            options.rest_api_num_threads,
            options.rest_api_timeout_in_ms,
            options.rest_api_enable_cors_support,
        )
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._loop_thread = threading.Thread(target=loop.run_forever, name="nbserve-rest-loop", daemon=True)
        self._loop_thread.start()

        async def listen() -> tornado.httpserver.HTTPServer:
            assert self._rest_api is not None
            http = tornado.httpserver.HTTPServer(self._rest_api.application(), decompress_request=True)
            http.add_sockets(sockets)
            return http

        self._http = asyncio.run_coroutine_threadsafe(listen(), loop).result()

    def _stop_rest(self) -> None:
        loop, http = self._loop, self._http
        if loop is None:
            return
        if http is not None:

            async def close() -> None:
                http.stop()
                await http.close_all_connections()

            try:
                asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=5)
            except (concurrent.futures.TimeoutError, RuntimeError):
                log.warning("REST connections did not close within 5 s; stopping anyway")
        loop.call_soon_threadsafe(loop.stop)
        if self._loop_thread is not None:
            self._loop_thread.join(timeout=5)
        loop.close()
        if self._rest_api is not None:
            self._rest_api.close()
        self._loop = self._http = self._loop_thread = self._rest_api = None
        self.rest_port = None

    def _shutdown(self) -> None:
        self._stopping.set()
        self._stop_rest()
        if self._grpc is not None:
            self._grpc.stop(grace=1).wait()
            self._grpc, self.grpc_port = None, None
        if self._config_thread is not None:
            self._config_thread.join(timeout=5)
            self._config_thread = None
        if self.manager is not None:
            self.manager.stop()
        self.manager = self.dataplane = None

    def _poll_config_file(self) -> None:
        options = self.options
        while not self._stopping.wait(options.model_config_file_poll_wait_seconds):
            manager = self.manager
            if manager is None:
                return
            try:
                manager.reload_config(options.model_configs(), wait=False)
            except ServingError as error:
                log.error("Keeping the current config: %s is not valid: %s", options.model_config_file, error)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()
