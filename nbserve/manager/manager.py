"""The manager: polls base paths, loads and unloads versions toward the aspired set, serves lookups.

Semantics follow TF Serving's AspiredVersionsManager with the AvailabilityPreservingPolicy: a new
version loads (on its own thread) while the old one serves, the old one unloads once an aspired
version is AVAILABLE, and a failed load leaves the old one serving.

Live versions (``add_live``: a servable built in the process, e.g. a Keras model held in a notebook
kernel) are versions of a model like any other for lookups, labels and status, but no base path
backs them: the version policy and polling never touch them, config reloads keep them, and they go
only through ``remove_live`` (or ``stop``). A model may have only live versions.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import NamedTuple

from nbserve.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ServingError,
    Unknown,
)
from nbserve.manager.config import ModelConfig, check_model_name, validate_model_configs
from nbserve.manager.policy import aspired_versions
from nbserve.manager.source import FileSystemSource, version_stamp
from nbserve.servables.base import Servable
from nbserve.servables.saved_model import SavedModelServable

log = logging.getLogger(__name__)


class ServableState(IntEnum):
    """TF Serving's ``ModelVersionStatus.State`` values."""

    START = 10
    LOADING = 20
    AVAILABLE = 30
    UNLOADING = 40
    END = 50


@dataclass(frozen=True)
class VersionStatus:
    """One version's state as GetModelStatus reports it."""

    version: int
    state: ServableState
    error_code: str = "OK"
    error_message: str = ""


Listener = Callable[[str, VersionStatus], None]
Loader = Callable[[str, int, str], Servable]


class _Version:
    __slots__ = ("version", "path", "live", "state", "aspired", "servable", "error", "stamp")

    def __init__(self, version: int, path: str, live: bool = False) -> None:
        self.version = version
        self.path = path
        self.live = live
        self.state = ServableState.START
        self.aspired = True
        self.servable: Servable | None = None
        self.error: ServingError | None = None
        self.stamp: tuple[int, ...] = ()


class _Model:
    __slots__ = ("config", "versions", "loading", "configured")

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, _Version] = {}
        self.loading = False
        self.configured = True

    @property
    def serving(self) -> bool:
        """Whether the model is known to clients: in the config, or with live versions."""
        return self.configured or any(r.live for r in self.versions.values())


class _Route(NamedTuple):
    """What request threads read: immutable, swapped as a whole on every change."""

    available: dict[int, Servable]
    latest: Servable | None
    labels: dict[str, int]


class Manager:
    """Owns the models of a server: their versions, states, labels and loaded servables."""

    def __init__(
        self,
        *,
        file_system_poll_wait_seconds: float = 1.0,
        allow_version_labels_for_unavailable_models: bool = False,
        loader: Loader = SavedModelServable.load,
    ) -> None:
        self._poll_wait = file_system_poll_wait_seconds
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._loader = loader
        self._source = FileSystemSource()
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._poll_lock = threading.Lock()  # serializes polls and config swaps
        self._dispatch_lock = threading.RLock()  # a listener may call back into the manager
        self._configs: list[ModelConfig] = []
        self._models: dict[str, _Model] = {}
        self._routes: dict[str, _Route] = {}
        self._history: dict[str, dict[int, VersionStatus]] = {}
        self._listeners: list[Listener] = []
        self._events: list[tuple[str, VersionStatus]] = []
        self._workers: set[threading.Thread] = set()
        self._stop_event = threading.Event()
        self._poll_thread: threading.Thread | None = None
        self._stopped = False
        self.last_poll_error: ServingError | None = None

    # ---- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Start polling every ``file_system_poll_wait_seconds`` (0: only the polls of
        reload_config, < 0: never, as in TF Serving)."""
        with self._lock:
            if self._stopped:
                raise FailedPrecondition("The manager is stopped")
            if self._poll_thread is not None or self._poll_wait <= 0:
                return
            self._poll_thread = threading.Thread(target=self._poll_loop, name="nbserve-poll", daemon=True)
            self._poll_thread.start()

    def stop(self) -> None:
        """Stop polling, wait for loads in flight, unload every version. Idempotent."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._stop_event.set()
        if self._poll_thread is not None:
            self._poll_thread.join()
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join()
        with self._lock:
            retiring = []
            for name, model in self._models.items():
                for rec in model.versions.values():
                    if rec.state == ServableState.AVAILABLE:
                        self._set_state(name, rec, ServableState.UNLOADING)
                        retiring.append((name, rec))
            self._routes = {}
        for name, rec in retiring:
            self._unload_servable(name, rec)
        with self._lock:
            for name, model in self._models.items():
                for rec in model.versions.values():
                    if rec.state != ServableState.END:
                        rec.servable = None
                        self._set_state(name, rec, ServableState.END)
            self._models.clear()
            self._configs = []
            self._changed.notify_all()
        self._dispatch()

    def __enter__(self) -> Manager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- configuration ---------------------------------------------------------------------------

    def reload_config(
        self,
        configs: Iterable[ModelConfig],
        wait: bool = True,
        timeout: float | None = None,
        *,
        settle: Collection[str] = (),
    ) -> None:
        """Replace the model list (models left out unload), poll at once, and with ``wait`` block
        until every newly added model has a version AVAILABLE or failed to get one (Unknown).
        Models named in ``settle`` are waited for until each of their aspired versions finished
        loading (AVAILABLE or failed), not only the first one."""
        configs = list(configs)
        validate_model_configs(configs)
        poll_error: ServingError | None = None
        with self._poll_lock:
            with self._lock:
                if self._stopped:
                    raise FailedPrecondition("The manager is stopped")
                for config in configs:
                    self._check_labels(config.name, config.version_labels)
                old = {c.name for c in self._configs}
                added = [c.name for c in configs if c.name not in old]
                self._swap_configs(configs)
            try:
                self._poll_locked()
            except ServingError as e:
                poll_error = e
        self._dispatch()
        if wait and (added or settle):
            names = added + [n for n in settle if n not in added]
            self._wait_available(names, poll_error, timeout, settle=frozenset(settle))

    def configs(self) -> list[ModelConfig]:
        """The current model list, labels included."""
        with self._lock:
            return list(self._configs)

    def model_names(self) -> list[str]:
        with self._lock:
            return [c.name for c in self._configs]

    def labels(self, name: str) -> dict[str, int]:
        with self._lock:
            return dict(self._configured(name).config.version_labels)

    def set_label(self, name: str, label: str, version: int) -> None:
        """Point ``label`` at ``version`` (which must be AVAILABLE, see reload_config)."""
        with self._lock:
            model = self._configured(name)
            self._check_labels(name, {label: version})
            self._set_labels(model, {**model.config.version_labels, label: version})

    def remove_label(self, name: str, label: str) -> None:
        with self._lock:
            model = self._configured(name)
            if label not in model.config.version_labels:
                raise InvalidArgument(f"Unrecognized servable version label: {label}")
            self._set_labels(model, {k: v for k, v in model.config.version_labels.items() if k != label})

    # ---- live versions ---------------------------------------------------------------------------

    def add_live(self, name: str, make: Callable[[int], Servable], version: int | None = None) -> int:
        """Serve ``make(version)`` (a cheap call: build the model beforehand) as a live version of
        ``name``, AVAILABLE at once. The default version is one above every version the model has,
        had, or has on disk. Returns the version."""
        if not name:
            raise InvalidArgument("A live model needs a name")
        check_model_name(name)
        if version is not None and version < 0:
            raise InvalidArgument(f"Version {version} of model {name} is negative; versions start at 0")
        with self._lock:
            model = self._models.get(name)
            base_path = model.config.base_path if model is not None and model.configured else None
        on_disk: Collection[int] = ()
        if base_path is not None:
            try:
                on_disk = self._source.list_versions(name, base_path)
            except ServingError:
                pass  # the poll reports a missing base path; a live version needs none
        with self._lock:
            if self._stopped:
                raise FailedPrecondition("The manager is stopped")
            model = self._models.get(name)
            tracked = set(model.versions) if model is not None else set()
            if version is None:
                version = max({*tracked, *self._history.get(name, ()), *on_disk}, default=0) + 1
            elif version in tracked or version in on_disk:
                raise AlreadyExists(
                    f"Model {name} already has version {version}; pick another version, or leave it "
                    "out to take the next free one"
                )
            servable = make(version)
            if model is None:
                model = self._models[name] = _Model(ModelConfig(name, ""))
                model.configured = False
            rec = model.versions[version] = _Version(version, "", live=True)
            rec.servable = servable
            for state in (ServableState.START, ServableState.LOADING, ServableState.AVAILABLE):
                self._set_state(name, rec, state)
            self._publish(name, model)
            self._changed.notify_all()
        self._dispatch()
        return version

    def remove_live(self, name: str, version: int | None = None) -> list[int]:
        """Unload one live version of ``name``, or all of them; returns the versions unloaded."""
        with self._lock:
            model = self._models.get(name)
            recs = [
                r
                for r in (model.versions.values() if model is not None else ())
                if r.live and r.state == ServableState.AVAILABLE and version in (None, r.version)
            ]
            if model is None or not recs:
                which = "live versions" if version is None else f"live version {version}"
                live = sorted(v for v, r in (model.versions.items() if model else ()) if r.live)
                raise NotFound(f"Model {name} has no {which} (live versions: {live or 'none'})")
            for rec in recs:
                self._set_state(name, rec, ServableState.UNLOADING)
            self._publish(name, model)
        self._dispatch()
        for rec in recs:
            self._unload(name, model, rec)
        return sorted(r.version for r in recs)

    def live_versions(self) -> dict[str, list[int]]:
        """Every model with live versions, and those versions (ascending)."""
        with self._lock:
            live = {
                name: sorted(v for v, r in model.versions.items() if r.live)
                for name, model in self._models.items()
            }
        return {name: versions for name, versions in live.items() if versions}

    def wait_unloaded(self, name: str, timeout: float | None = None) -> None:
        """Block until no version of ``name`` from a base path is loaded or unloading any more."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                model = self._models.get(name)
                if model is None or self._stopped or all(r.live for r in model.versions.values()):
                    return
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded(f"Model {name} did not unload in time")
                self._changed.wait(remaining)

    def add_listener(self, callback: Listener) -> None:
        """Call ``callback(model_name, VersionStatus)`` on every state change (from manager threads)."""
        with self._lock:
            self._listeners.append(callback)

    def remove_listener(self, callback: Listener) -> None:
        with self._lock:
            self._listeners.remove(callback)

    # ---- lookups (hot path) ----------------------------------------------------------------------

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> Servable:
        """The AVAILABLE servable for a request: a version, a label, or else the highest version."""
        route = self._routes.get(name)  # an immutable snapshot; no lock needed
        if label is not None:
            if version is not None:
                raise InvalidArgument("A request may name a version or a version label, not both")
            version = route.labels.get(label) if route is not None else None
            if version is None:
                raise InvalidArgument(f"Unrecognized servable version label: {label}")
        if version is None:
            if route is None or route.latest is None:
                raise NotFound(f"Servable not found for request: Latest({name})")
            return route.latest
        found = route.available.get(version) if route is not None else None
        if found is None:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return found

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Every version ever tracked (descending, END ones included), or just ``version``."""
        with self._lock:
            history = self._history.get(name)
            if not history:
                raise NotFound(f"Could not find any versions of model {name}")
            if version is None:
                return [history[v] for v in sorted(history, reverse=True)]
            if version not in history:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [history[version]]

    # ---- polling ---------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """List every base path and move each model toward its aspired versions. A missing base
        path raises (InvalidArgument) and, as in TF Serving, nothing changes for any model."""
        try:
            with self._poll_lock:
                self._poll_locked()
        finally:
            self._dispatch()

    def _poll_loop(self) -> None:
        reported = ""
        while not self._stop_event.wait(self._poll_wait):
            try:
                self.poll_once()
                reported = ""
            except ServingError as e:
                if e.message != reported:  # once per distinct error, not every poll
                    log.error("FileSystemSource encountered a filesystem access error: %s", e)
                    reported = e.message
            except Exception:
                log.exception("Polling the model base paths failed")

    def _poll_locked(self) -> None:
        with self._lock:
            if self._stopped:
                return
            configs = list(self._configs)
        try:
            listings = {c.name: self._source.list_versions(c.name, c.base_path) for c in configs}
        except ServingError as e:
            self.last_poll_error = e
            raise
        self.last_poll_error = None
        with self._lock:
            if self._stopped:
                return
            for config in configs:
                self._apply_listing(config.name, listings[config.name])

    def _apply_listing(self, name: str, on_disk: dict[int, str]) -> None:
        model = self._models.get(name)
        if model is None or not model.configured:
            return
        live = {v for v, r in model.versions.items() if r.live}
        # A live version hides a disk version with its number until remove_live.
        aspired = aspired_versions(set(on_disk) - live, model.config.policy)
        for version, rec in list(model.versions.items()):
            if version not in aspired and not rec.live:
                rec.aspired = False
                # Never-started and failed versions are forgotten (a reappearing dir loads afresh).
                if rec.state in (ServableState.START, ServableState.END):
                    if rec.state == ServableState.START:
                        self._set_state(name, rec, ServableState.END)
                    del model.versions[version]
        for version in sorted(aspired):
            path = on_disk[version]
            rec = model.versions.get(version)
            if rec is None:
                rec = model.versions[version] = _Version(version, path)
                self._set_state(name, rec, ServableState.START)
            else:
                rec.aspired = True
                # A failed version is retried only once its directory changed.
                if rec.state == ServableState.END and rec.stamp != version_stamp(path):
                    rec.path, rec.error = path, None
                    self._set_state(name, rec, ServableState.START)
        self._step(name, model)

    # ---- transitions (all called with self._lock held) -------------------------------------------

    def _step(self, name: str, model: _Model) -> None:
        """Start the next unloads and load, following the AvailabilityPreservingPolicy."""
        if self._stopped:
            return
        changed = False
        while True:
            unaspired_ready = sorted(
                v for v, r in model.versions.items() if not r.aspired and r.state == ServableState.AVAILABLE
            )
            if not unaspired_ready:
                break
            aspired = [r for r in model.versions.values() if r.aspired and not r.live]
            aspired_ready = any(r.state == ServableState.AVAILABLE for r in aspired)
            # Keep the last un-aspired version serving until an aspired one can take over.
            if aspired and not aspired_ready and len(unaspired_ready) == 1:
                break
            rec = model.versions[unaspired_ready[0]]
            self._set_state(name, rec, ServableState.UNLOADING)
            self._spawn(self._unload, name, model, rec)
            changed = True
        if changed:
            self._publish(name, model)
        if not model.loading:
            waiting = [r for r in model.versions.values() if r.aspired and r.state == ServableState.START]
            if waiting:
                rec = max(waiting, key=lambda r: r.version)
                model.loading = True
                self._set_state(name, rec, ServableState.LOADING)
                self._spawn(self._load, name, model, rec)

    def _load(self, name: str, model: _Model, rec: _Version) -> None:
        stamp = version_stamp(rec.path)
        servable: Servable | None = None
        error: ServingError | None = None
        try:
            servable = self._loader(name, rec.version, rec.path)
        except ServingError as e:
            error = e
        except Exception as e:
            error = Unknown(f"Failed to load {name} version {rec.version} from {rec.path}: {e}")
        if error is not None:
            log.warning("Loading %s version %d failed: %s", name, rec.version, error)
        with self._lock:
            model.loading = False
            discard = servable is not None and self._stopped
            if servable is not None and not discard:
                rec.servable = servable
                self._set_state(name, rec, ServableState.AVAILABLE)
                self._publish(name, model)
            else:
                rec.error = error or Unknown("The manager stopped during the load")
                rec.stamp = stamp
                self._set_state(name, rec, ServableState.END)
                if not rec.aspired and model.versions.get(rec.version) is rec:
                    del model.versions[rec.version]  # un-aspired meanwhile: nothing to retry
            self._step(name, model)
            self._forget_if_gone(name, model)
            self._changed.notify_all()
        if discard:
            servable.unload()
        self._dispatch()

    def _unload(self, name: str, model: _Model, rec: _Version) -> None:
        self._unload_servable(name, rec)
        with self._lock:
            rec.servable = None
            self._set_state(name, rec, ServableState.END)
            if model.versions.get(rec.version) is rec:
                del model.versions[rec.version]
            self._step(name, model)
            if rec.live:
                self._publish(name, model)
            self._forget_if_gone(name, model)
            self._changed.notify_all()
        self._dispatch()
        # A loaded SavedModel is a web of reference cycles: free it now, as TF Serving frees an
        # unloaded session, not at the next full collection (RSS grew ~2 MB per hot swap).
        gc.collect()

    def _unload_servable(self, name: str, rec: _Version) -> None:
        try:
            if rec.servable is not None:
                rec.servable.unload()
        except Exception:
            log.exception("Unloading %s version %d failed", name, rec.version)

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        def run() -> None:
            try:
                target(*args)
            except Exception:
                log.exception("Manager worker failed")
            finally:
                with self._lock:
                    self._workers.discard(thread)

        thread = threading.Thread(target=run, name=f"nbserve-{target.__name__.strip('_')}", daemon=True)
        self._workers.add(thread)
        thread.start()

    def _set_state(
        self, name: str, rec: _Version, state: ServableState, error: ServingError | None = None
    ) -> None:
        rec.state = state
        error = error or (rec.error if state == ServableState.END else None)
        status = VersionStatus(rec.version, state, *((error.code, error.message) if error else ()))
        self._history.setdefault(name, {})[rec.version] = status
        self._events.append((name, status))

    def _publish(self, name: str, model: _Model) -> None:
        routes = dict(self._routes)
        if model.serving:
            available = {
                v: r.servable
                for v, r in sorted(model.versions.items())
                if r.state == ServableState.AVAILABLE and r.servable is not None
            }
            latest = available[max(available)] if available else None
            routes[name] = _Route(available, latest, dict(model.config.version_labels))
        else:
            routes.pop(name, None)
        self._routes = routes

    def _forget_if_gone(self, name: str, model: _Model) -> None:
        if not model.configured and not model.versions and self._models.get(name) is model:
            del self._models[name]

    def _swap_configs(self, configs: list[ModelConfig]) -> None:
        new_names = {c.name for c in configs}
        for name, model in list(self._models.items()):
            if name not in new_names and model.configured:
                model.configured = False
                for version, rec in list(model.versions.items()):
                    if rec.live:
                        continue
                    rec.aspired = False
                    if rec.state == ServableState.START:
                        self._set_state(name, rec, ServableState.END)
                    if rec.state == ServableState.END:
                        del model.versions[version]
                self._step(name, model)
                self._publish(name, model)
                self._forget_if_gone(name, model)
        for config in configs:
            model = self._models.get(config.name)
            if model is None:
                model = self._models[config.name] = _Model(config)
            model.config, model.configured = config, True
            self._publish(config.name, model)
        self._configs = configs

    def _set_labels(self, model: _Model, labels: dict[str, int]) -> None:
        name = model.config.name
        model.config = replace(model.config, version_labels=labels)
        self._configs = [model.config if c.name == name else c for c in self._configs]
        self._publish(name, model)

    def _check_labels(self, name: str, labels: dict[str, int]) -> None:
        """TF's UpdateModelVersionLabelMap rule: a label must point at an AVAILABLE version; with
        the flag, a new label or one keeping its version may point at any version."""
        model = self._models.get(name)
        current = model.config.version_labels if model is not None and model.serving else {}
        history = self._history.get(name, {})
        for label, version in labels.items():
            if self._allow_unavailable_labels and current.get(label, version) == version:
                continue
            status = history.get(version)
            if status is None or status.state != ServableState.AVAILABLE:
                raise FailedPrecondition(
                    f"Request to assign label to version {version} of model {name}, "
                    "which is not currently available for inference"
                )

    def _configured(self, name: str) -> _Model:
        model = self._models.get(name)
        if model is None or not model.serving:
            raise NotFound(f"Could not find model {name} in the model config")
        return model

    # ---- waiting and events ----------------------------------------------------------------------

    def _wait_available(
        self,
        names: list[str],
        poll_error: ServingError | None,
        timeout: float | None,
        settle: frozenset[str] = frozenset(),
    ) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                pending, failed = False, []
                for name in names:
                    model = self._models.get(name)
                    if model is None or not model.configured:
                        continue
                    recs = [
                        r
                        for r in model.versions.values()
                        if not r.live and (r.aspired or r.servable is not None)
                    ]
                    busy = any(r.state in (ServableState.START, ServableState.LOADING) for r in recs)
                    ready = any(r.state == ServableState.AVAILABLE for r in recs)
                    if ready and not (busy and name in settle):
                        continue
                    if busy:
                        pending = True
                    elif recs:
                        top = max(recs, key=lambda r: r.version)
                        failed.append((f"{{name: {name} version: {top.version}}}", top.error))
                    else:
                        failed.append((f"{{name: {name}}}", poll_error or self._no_versions(model)))
                if not pending or self._stopped:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise DeadlineExceeded(f"Models {', '.join(names)} did not become available in time")
                self._changed.wait(remaining)
        if failed:
            parts = "".join(
                "{" + sid + (f" due to error: {e.code}: {e.message}" if e else "") + "}, "
                for sid, e in failed
            )
            raise Unknown(f"{len(failed)} model(s) did not become available: {{{parts}}}")

    @staticmethod
    def _no_versions(model: _Model) -> ServingError:
        return NotFound(
            f"No versions of servable {model.config.name} found under base path {model.config.base_path}. "
            "Did you forget to name your leaf directory as a number (eg. '/1/')?"
        )

    def _dispatch(self) -> None:
        """Deliver queued state changes to listeners, in order, outside the manager lock."""
        with self._dispatch_lock:
            with self._lock:
                events, self._events = self._events, []
                listeners = list(self._listeners)
            for name, status in events:
                for listener in listeners:
                    try:
                        listener(name, status)
                    except Exception:
                        log.exception("Manager listener %r failed", listener)
