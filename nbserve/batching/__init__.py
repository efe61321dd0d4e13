"""Request batching with TF Serving's semantics (``BatchingParameters``, shared batch scheduler); numpy only.

``BatchScheduler.submit(key, run, inputs, params)`` queues one request per call on the queue of ``key``
(``BatchingServable`` uses ``(model, version, signature, output_keys)``), merges queued requests along dim 0,
pads to ``allowed_batch_sizes``, runs the batch once on a shared batch thread and hands every caller its
own rows. See ``scheduler`` for the threading model. ``ServerBatching`` is the server's layer on top
(``--enable_batching``): one scheduler for all models, and ``BatchingServable`` wrappers around the
servables it loads.
"""

from nbserve.batching.params import BatchingParameters, parse_batching_parameters, read_batching_parameters
from nbserve.batching.scheduler import (
    QUEUE_FULL,
    SHUTTING_DOWN,
    BatchedResult,
    BatchRecord,
    BatchScheduler,
    RunFn,
)
from nbserve.batching.servable import BATCHING_PARAMS_FILE, BatchingServable, ServerBatching

__all__ = [
    "BATCHING_PARAMS_FILE",
    "QUEUE_FULL",
    "SHUTTING_DOWN",
    "BatchRecord",
    "BatchScheduler",
    "BatchingServable",
    "BatchedResult",
    "BatchingParameters",
    "RunFn",
    "ServerBatching",
    "parse_batching_parameters",
    "read_batching_parameters",
]
