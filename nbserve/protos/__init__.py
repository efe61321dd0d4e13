"""Generated protobuf / gRPC modules for TF Serving's API (package ``nbserve.protos``).

Everything below this package is generated from ``protos/**/*.proto`` by::

    python protos/generate.py

(``make protos``); do not edit by hand. Modules mirror the proto paths, e.g.
``nbserve.protos.tensorflow_serving.apis.predict_pb2`` or
``nbserve.protos.tensorflow.core.framework.tensor_pb2``. All descriptors live in the
private pool ``nbserve.protos._pool.POOL``, never protobuf's default pool, so these
modules coexist with ``tensorflow`` and ``tensorflow_serving.apis`` in one process.
The messages are wire-compatible with TF Serving's (same packages, names, numbers), but
their classes differ from tensorflow's / google.protobuf's same-named ones (including
google.protobuf wrappers and Any inside our messages): convert through bytes, e.g.
``ours.ParseFromString(tf.make_tensor_proto(a).SerializeToString())``; ``CopyFrom``
across the two raises TypeError.
"""

# The grpcio-tools release that produced these files (`tests/unit/test_protos.py` compares).
GENERATED_WITH_GRPCIO_TOOLS = "1.85.1"
