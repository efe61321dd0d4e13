"""The server's batching layer (``--enable_batching``), TF Serving's batching session: every batched model
version runs through one shared BatchScheduler, one queue per (model, version, signature, output keys)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from nbserve.batching.params import BatchingParameters, read_batching_parameters
from nbserve.batching.scheduler import BatchRecord, BatchScheduler, RunFn
from nbserve.errors import InvalidArgument
from nbserve.servables.base import Servable
from nbserve.servables.wrapped import WrappedServable
from nbserve.signature import Signature

if TYPE_CHECKING:
    from nbserve.manager.manager import Loader

__all__ = ["BATCHING_PARAMS_FILE", "BatchingServable", "ServerBatching"]

BATCHING_PARAMS_FILE = "batching_params.pbtxt"


class BatchingServable(WrappedServable):
    """Submits every ``run`` to the shared scheduler; the batch thread runs ``inner`` on the merged batch."""

    def __init__(self, inner: Servable, scheduler: BatchScheduler, params: BatchingParameters) -> None:
        super().__init__(inner)
        self.params = params
        self._scheduler = scheduler
        self._runs: dict[tuple, RunFn] = {}  # queue key -> the batch's run function

    def run(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_keys: Sequence[str]
    ) -> dict[str, np.ndarray]:
        key = (self.name, self.version, signature.name, tuple(output_keys))
        run_batch = self._runs.get(key)
        if run_batch is None:
            run_batch = self._runs[key] = self._batch_runner(signature, list(output_keys))
        return self._scheduler.submit(key, run_batch, inputs, self.params).outputs

    def _batch_runner(self, signature: Signature, output_keys: list[str]) -> RunFn:
        inner = self.inner

        def run_batch(merged: dict[str, np.ndarray]) -> Mapping[str, np.ndarray]:
            return inner.run(signature, merged, output_keys)

        return run_batch

    def unload(self) -> None:
        for key in list(self._runs):
            self._scheduler.remove(key)
        super().unload()


class ServerBatching:
    """One BatchScheduler whose thread pool comes from ``params`` (the ``--batching_parameters_file``).

    With ``per_model`` (``--enable_per_model_batching_parameters``), as in TF Serving, a version is batched
    only when its directory holds ``batching_params.pbtxt``, with those parameters; ``params`` then only
    supplies the thread pool.
    """

    def __init__(
        self,
        params: BatchingParameters,
        per_model: bool = False,
        listener: Callable[[BatchRecord], None] | None = None,
    ) -> None:
        self.params = params
        self.per_model = per_model
        # Queue parameters are checked per version when it loads (a bad file fails that load, as in TF).
        pool = BatchingParameters(
            num_batch_threads=params.num_batch_threads, thread_pool_name=params.thread_pool_name
        )
        self.scheduler = BatchScheduler(pool, listener=listener)

    def loader(self, load: Loader) -> Loader:
        """Wrap a ``loader(name, version, path)`` so the servables it loads run batched."""

        def load_batched(name: str, version: int, path: str) -> Servable:
            params = self.version_parameters(path)
            if params is None:
                return load(name, version, path)
            return BatchingServable(load(name, version, path), self.scheduler, params)

        return load_batched

    def version_parameters(self, path: str) -> BatchingParameters | None:
        """The validated parameters a version directory is batched with, or None when it is not batched."""
        if self.per_model:
            source = os.path.join(path, BATCHING_PARAMS_FILE)
            if not os.path.isfile(source):
                return None
            params = read_batching_parameters(source)
        else:
            source, params = "--batching_parameters_file", self.params
        try:
            return params.validate()
        except InvalidArgument as error:
            raise InvalidArgument(f"{error} (fix {source})") from error

    def stats(self, model: str | None = None) -> list[dict[str, Any]]:
        """One record per batching queue (of ``model``, or of every model): ``model``, ``version``,
        ``signature``, ``output_keys`` and the queue statistics of ``BatchScheduler.stats``."""
        records = [
            {"model": name, "version": version, "signature": signature, "output_keys": list(keys), **snap}
            for (name, version, signature, keys), snap in self.scheduler.stats().items()
            if model is None or name == model
        ]
        return sorted(records, key=lambda r: (r["model"], r["version"], r["signature"], r["output_keys"]))

    def close(self) -> None:
        """Stop the batch threads; queued requests fail UNAVAILABLE."""
        self.scheduler.close()
