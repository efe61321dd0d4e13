"""Start and stop the model server: manager, gRPC server and Tornado REST server, all on background
threads (Tornado on its own asyncio loop), so a Jupyter kernel's own event loop is never touched."""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import sys
import threading
import weakref
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import grpc
import tornado.httpserver
import tornado.netutil

from nbserve.batching.servable import ServerBatching
from nbserve.dataplane import Dataplane
from nbserve.errors import ServingError, Unavailable
from nbserve.isolation import Isolation, default_concurrency
from nbserve.manager.config import ModelConfig
from nbserve.manager.manager import Loader, Manager
from nbserve.metrics import ServingMetrics
from nbserve.servables.saved_model import SavedModelServable
from nbserve.server.auth import TokenInterceptor, resolve_token, token_banner
from nbserve.server.grpc import add_services
from nbserve.server.options import ServerOptions
from nbserve.server.rest import RestApi
from nbserve.signature import DEFAULT_SERVING_SIGNATURE

if TYPE_CHECKING:
    from nbserve.experiments import Experiment, Mode
    from nbserve.servables.function import InputSignature
    from nbserve.server.management import ModelSummary, PolicyKind

log = logging.getLogger("nbserve")
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
        self.batching: ServerBatching | None = None
        self.metrics: ServingMetrics | None = None
        self._grpc: grpc.Server | None = None
        self._rest_api: RestApi | None = None
        self._http: tornado.httpserver.HTTPServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._config_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.auth_token: str | None = None  # required from clients when set (see resolve_token)
        self._token_generated = False

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
                loader=self._loader(options),
            )
            dataplane = Dataplane(manager) if self.metrics is None else self.metrics.dataplane(manager)
            self.manager, self.dataplane = manager, dataplane
            self._guard(manager, dataplane, options)
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
            if self._token_generated:
                print(token_banner(self.auth_token, self.rest_url, self.grpc_address), file=sys.stderr)
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

    def batching_stats(self, model: str | None = None) -> list[dict[str, Any]]:
        """Per batching queue (model, version, signature, output keys) of ``model`` or of every model:
        executed batch sizes, ``batched_with`` (N -> requests batched with N others), queue delay, padding
        waste, the last batch, queue depth and parameters (see ``BatchScheduler.stats``). Empty when
        batching is off."""
        return [] if self.batching is None else self.batching.stats(model)

    def _require_manager(self) -> Manager:
        if self.manager is None:
            raise Unavailable("The server is not running: call start() first.")
        return self.manager

    def _loader(self, options: ServerOptions) -> Loader:
        """SavedModel loading, wrapped for batching and runtime metrics when they are on."""
        self.metrics = metrics = ServingMetrics.from_config_file(options.monitoring_config_file)
        if metrics is not None and options.rest_api_port is None:
            log.warning("--monitoring_config_file: the metrics page needs the REST API (--rest_api_port)")
        params = options.batching_parameters()
        self.batching = None
        loader: Loader = SavedModelServable.load
        if params is not None:
            listener = metrics.batch_listener(params.thread_pool_name) if metrics is not None else None
            self.batching = ServerBatching(params, options.enable_per_model_batching_parameters, listener)
            loader = self.batching.loader(loader)
        return loader if metrics is None else metrics.loader(loader)

    def _guard(self, manager: Manager, dataplane: Dataplane, options: ServerOptions) -> None:
        """Per-model isolation, the instance limit and the access token (README "Security and limits")."""
        concurrency = options.model_max_concurrent_requests or default_concurrency(
            options.rest_api_num_threads, options.grpc_max_threads
        )
        dataplane.isolation = Isolation(
            concurrency,
            options.model_max_queued_requests,
            lambda name: name in manager.model_names() or name in manager.live_versions(),
        )
        dataplane.max_instances = options.max_instances_per_request
        self.auth_token, self._token_generated = resolve_token(options.host, options.auth_token)

    # -- servers ------------------------------------------------------------------------------------

    def _start_grpc(self, options: ServerOptions) -> None:
        assert self.dataplane is not None
        server = grpc.server(
            # waiters for a busy model's slot hold a thread: room for them beside the working threads
            concurrent.futures.ThreadPoolExecutor(
                options.grpc_max_threads + options.model_max_queued_requests,
                thread_name_prefix="nbserve-grpc",
            ),
            options=[
                ("grpc.max_send_message_length", options.grpc_max_message_bytes),
                ("grpc.max_receive_message_length", options.grpc_max_message_bytes),
                ("grpc.so_reuseport", 0),
            ],
            interceptors=self._grpc_interceptors(),
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

    def _grpc_interceptors(self) -> list[grpc.ServerInterceptor]:
        interceptors: list[grpc.ServerInterceptor] = []
        if self.auth_token is not None:
            interceptors.append(TokenInterceptor(self.auth_token))
        if self.metrics is not None:
            interceptors.append(self.metrics.grpc_interceptor())
        return interceptors

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
        self._rest_api.metrics = self.metrics
        self._rest_api.auth_token = self.auth_token
        self._rest_api.max_body_bytes = options.rest_api_max_body_bytes
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._loop_thread = threading.Thread(target=loop.run_forever, name="nbserve-rest-loop", daemon=True)
        self._loop_thread.start()

        async def listen() -> tornado.httpserver.HTTPServer:
            assert self._rest_api is not None
            app = self._rest_api.application()
            if self.metrics is not None:
                self.metrics.add_page(app, self.auth_token)
            # V1Handler decodes gzip itself, so a bad or oversized body gets a JSON error
            http = tornado.httpserver.HTTPServer(app, max_body_size=options.rest_api_max_body_bytes)
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
        if self.batching is not None:
            self.batching.close()
        if self._config_thread is not None:
            self._config_thread.join(timeout=5)
            self._config_thread = None
        if self.manager is not None:
            self.manager.stop()
        for experiment in self.experiments.values():
            experiment.close()
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

    # -- models from Python: the API the notebook magics and widgets use ---------------------------

    def serve(
        self,
        obj: Any,
        name: str,
        *,
        version: int | None = None,
        signature_name: str = DEFAULT_SERVING_SIGNATURE,
        input_signature: InputSignature | None = None,
    ) -> int:
        """Serve ``obj`` (a Keras model, tf.Module, tf.function, or Python callable taking and
        returning numpy) from this process, without export, as a live version of model ``name``;
        returns the version. Next to a model's disk versions it takes the next free number (or
        ``version``) and the policy never unloads it; a disk version of the same number waits until
        ``unserve``. ``input_signature`` (tf.TensorSpec, or a list or dict of them) is needed when
        ``obj`` declares none; a callable is called once on zeros to learn its outputs."""
        from nbserve.servables.live import LiveServable, live_model

        manager = self._require_manager()
        model = live_model(obj, signature_name=signature_name, input_signature=input_signature)
        return manager.add_live(name, lambda number: LiveServable(name, number, model), version)

    def unserve(self, name: str, version: int | None = None) -> list[int]:
        """Unload live ``version`` of ``name`` (default: every live version); returns those versions."""
        return self._require_manager().remove_live(name, version)

    def load(
        self,
        name: str,
        base_path: str | os.PathLike[str],
        *,
        policy: PolicyKind = "latest",
        num_versions: int = 1,
        versions: Collection[int] = (),
        labels: Mapping[str, int] | None = None,
    ) -> None:
        """Serve the version directories under ``base_path`` (made absolute) as model ``name``,
        adding it to the config or replacing its entry; ``policy`` is ``latest`` (``num_versions``),
        ``all`` or ``specific`` (``versions``). Blocks until its versions loaded, then sets
        ``labels``. When no version becomes AVAILABLE the config is restored and the error raised.
        A polled ``--model_config_file`` replaces the model list again, as in TF Serving."""
        from nbserve.server.management import load_model

        policy_args = {"policy": policy, "num_versions": num_versions, "versions": versions}
        load_model(self._require_manager(), name, base_path, **policy_args, labels=labels)

    def unload(self, name: str) -> None:
        """Stop serving model ``name``: its config entry and its live versions; blocks until unloaded."""
        from nbserve.server.management import unload_model

        unload_model(self._require_manager(), name)

    def set_label(self, name: str, label: str, version: int) -> None:
        """Point version label ``label`` of ``name`` at ``version`` (which must be AVAILABLE)."""
        self._require_manager().set_label(name, label, version)

    def remove_label(self, name: str, label: str) -> None:
        """Drop version label ``label`` of ``name``."""
        self._require_manager().remove_label(name, label)

    def model_configs(self) -> list[ModelConfig]:
        """The served disk models as ModelServerConfig entries (name, base path, policy, labels)."""
        return self._require_manager().configs()

    def models(self) -> list[ModelSummary]:
        """Every served model: base path (None when live only), policy, versions with their state
        and error, labels. Each summary has an HTML repr."""
        from nbserve.server.management import summarize

        return summarize(self._require_manager())

    def urls(self, name: str) -> dict[str, str | None]:
        """Where to reach ``name``: ``rest_predict``, ``rest_metadata``, ``rest_status``,
        ``grpc_address`` and a ``curl`` example (None for what is off or not known yet)."""
        from nbserve.server.management import model_urls

        return model_urls(self._require_manager(), name, self.rest_url, self.grpc_address)

    # -- A/B experiments ----------------------------------------------------------------------------

    def experiment(
        self,
        model: str,
        *,
        production: int | str,
        experimental: int | str,
        mode: Mode = "split",
        split: float = 10.0,
        shadow: float = 100.0,
    ) -> Experiment:
        """Start (or replace) the A/B experiment on ``model``: requests naming it without a version or
        label go to ``production`` or ``experimental`` (versions or labels). ``split``: % answered by
        experimental (sticky per ``X-Nbserve-Key`` / ``x-nbserve-key``); ``shadow``: % mirrored to
        experimental off the request path; ``off``: production only. Pinned requests bypass it."""
        from nbserve.experiments import Experiment

        if self.dataplane is None:
            raise Unavailable("The server is not running: call start() first.")
        experiment = Experiment(
            self.dataplane, model, production, experimental, mode=mode, split=split, shadow=shadow
        )
        previous = self.dataplane.experiments.get(model)
        self.dataplane.experiments = {**self.dataplane.experiments, model: experiment}
        if previous is not None:
            previous.close()
        return experiment

    def end_experiment(self, model: str) -> None:
        """Stop routing ``model`` through its experiment (unpinned requests get the latest version)."""
        if self.dataplane is not None and model in self.dataplane.experiments:
            experiments = dict(self.dataplane.experiments)
            experiments.pop(model).close()
            self.dataplane.experiments = experiments

    @property
    def experiments(self) -> dict[str, Experiment]:
        """The running experiments by model name."""
        return {} if self.dataplane is None else dict(self.dataplane.experiments)


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        server.stop()
