"""A TensorFlow SavedModel as a servable.

Signature metadata comes straight from the MetaGraphDef in ``saved_model.pb`` (what TF Serving
reports); running goes through the concrete signature functions of ``tf.saved_model.load``.
TensorFlow is imported on first load, so importing this module stays cheap.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import numpy as np

from nbserve.cancellation import RunControl, current_control
from nbserve.errors import (
    DataLoss,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ServingError,
    Unknown,
    error_for_code,
)
from nbserve.servables.base import Servable
from nbserve.signature import Signature, TensorInfo

# Index = TF status code number.
_CODE_NAMES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip

# Eager wrappers add a Python-side prefix and an op suffix that TF Serving's C++ session never shows.
_EAGER_PREFIX = re.compile(
    r"^Graph execution error:\s*(?:Detected at node .*? defined at \(most recent call last\):\n"
    r"<stack traces unavailable>\n)?",
    re.DOTALL,
)
_EAGER_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


def tf_error(exc: BaseException, context: str = "") -> ServingError:
    """Map a TensorFlow exception to a ServingError with TF's status code and a clean message."""
    code = getattr(exc, "error_code", None)
    message = getattr(exc, "message", None) or str(exc)
    message = _EAGER_SUFFIX.sub("", _EAGER_PREFIX.sub("", message))
    if context:
        message = f"{context}: {message}"
    if isinstance(code, int) and 0 < code < len(_CODE_NAMES):
        return error_for_code(_CODE_NAMES[code], message)
    return Unknown(message)


_thread = threading.local()


@cache
def _tf_cancellation() -> Any:
    """TF's eager cancellation module, made per-thread (TF keeps one process-wide active manager,
    which concurrent requests would share). None if this TF build lacks it: runs are then not
    cancellable."""
    try:
        from tensorflow.python.eager import cancellation
    except ImportError:
        return None
    original = getattr(cancellation, "context", None)
    if original is None or not hasattr(cancellation, "CancellationManager"):
        return None

    def context() -> Any:
        return getattr(_thread, "manager", None) or original()

    cancellation.context = context
    return cancellation


def _watch(control: RunControl) -> Any:
    """Route this thread's next TF calls through a CancellationManager that ``control`` cancels."""
    cancellation = _tf_cancellation()
    manager = None if cancellation is None else cancellation.CancellationManager()
    if control.cancelled or (manager is not None and not control.add_hook(manager.start_cancel)):
        raise DeadlineExceeded(control.reason or "Deadline Exceeded")
    _thread.manager = manager
    return manager


def _unwatch(control: RunControl, manager: Any) -> None:
    _thread.manager = None
    if manager is not None:
        control.remove_hook(manager.start_cancel)


def read_meta_graph(path: str, tags: Sequence[str] = ("serve",)) -> Any:
    """Return the ``tensorflow.MetaGraphDef`` whose tag set equals ``tags`` from a SavedModel dir."""
    from google.protobuf import message as pb_message
    from google.protobuf import text_format
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel()
    pb, pbtxt = os.path.join(path, "saved_model.pb"), os.path.join(path, "saved_model.pbtxt")
    if os.path.isfile(pb):
        source = pb
        try:
            with open(pb, "rb") as f:
                saved_model.ParseFromString(f.read())
        except (OSError, pb_message.DecodeError) as e:
            raise DataLoss(f"Can't parse {pb} as binary proto: {e}") from e
    elif os.path.isfile(pbtxt):
        source = pbtxt
        try:
            with open(pbtxt, encoding="utf-8") as f:
                text_format.Parse(f.read(), saved_model)
        except (OSError, UnicodeDecodeError, text_format.ParseError) as e:
            raise DataLoss(f"Can't parse {pbtxt} as text proto: {e}") from e
    else:
        raise NotFound(
            f"Could not find SavedModel .pb or .pbtxt at supplied export directory path: {path}. "
            "Check that the directory exists and that you have the right permissions for accessing it."
        )
    if not saved_model.meta_graphs:
        raise DataLoss(f"Can't parse {source} as a SavedModel: it holds no MetaGraphDef")
    wanted = set(tags)
    for meta_graph in saved_model.meta_graphs:
        if set(meta_graph.meta_info_def.tags) == wanted:
            return meta_graph
    available = ", ".join("{ " + " ".join(mg.meta_info_def.tags) + " }" for mg in saved_model.meta_graphs)
    raise NotFound(
        f"Could not find meta graph def matching supplied tags: {{ {' '.join(tags)} }} in {source} "
        f"(available tag-sets: {available}). To inspect available tag-sets in the SavedModel, "
        "please use the SavedModel CLI: `saved_model_cli`"
    )


def _tensor_info(info: Any) -> TensorInfo:
    if not info.HasField("tensor_shape"):
        shape: tuple[int, ...] | None = ()
    elif info.tensor_shape.unknown_rank:
        shape = None
    else:
        shape = tuple(int(d.size) for d in info.tensor_shape.dim)
    return TensorInfo(name=info.name, dtype=int(info.dtype), shape=shape)


def signature_from_def(key: str, signature_def: Any) -> Signature:
    """Build a Signature from a ``tensorflow.SignatureDef`` message, keeping its serialized bytes."""
    return Signature(
        name=key,
        inputs={alias: _tensor_info(i) for alias, i in sorted(signature_def.inputs.items())},
        outputs={alias: _tensor_info(o) for alias, o in sorted(signature_def.outputs.items())},
        method_name=signature_def.method_name,
        definition=signature_def.SerializeToString(deterministic=True),
    )


def _describe(arr: np.ndarray) -> str:
    kind = arr.dtype.kind
    return {"U": "str", "S": "bytes", "O": "object", "b": "bool"}.get(kind, arr.dtype.name)


class _Feed:
    """Converts one input to the exact tensor dtype the signature declares."""

    __slots__ = ("alias", "np_dtype", "dt_name", "dtype_arg", "kinds", "constant", "label")

    def __init__(self, tf: Any, signature: Signature, alias: str) -> None:
        from tensorflow.core.framework import types_pb2

        info = signature.inputs[alias]
        self.alias = alias
        self.label = f"Input '{alias}' of signature '{signature.name}'"
        if info.dtype == types_pb2.DT_INVALID:  # a composite (sparse/ragged) input: fed as given
            self.np_dtype, self.kinds, self.constant = None, "", None
            return
        tf_dtype = tf.dtypes.as_dtype(info.dtype)
        # Numeric arrays already have the exact dtype here; only strings need TF told (object arrays).
        self.dtype_arg = tf.string if tf_dtype == tf.string else None
        self.dt_name = types_pb2.DataType.Name(info.dtype)
        self.constant = tf.constant
        if tf_dtype == tf.string:
            self.np_dtype, self.kinds = np.dtype(object), "OSU"
        else:
            self.np_dtype = np.dtype(tf_dtype.as_numpy_dtype)
            if tf_dtype.is_bool:
                self.kinds = "b"
            elif tf_dtype.is_complex:
                self.kinds = "iufc"
            elif tf_dtype.is_floating:
                self.kinds = "iuf"
            elif tf_dtype.is_integer:
                self.kinds = "iu"
            else:
                self.kinds = ""

    def __call__(self, value: Any) -> Any:
        if self.constant is None:
            return value
        arr = value if type(value) is np.ndarray else np.asarray(value)
        if arr.dtype != self.np_dtype:
            arr = self._cast(arr)
        try:
            return self.constant(arr, self.dtype_arg)
        except (TypeError, ValueError) as e:
            raise InvalidArgument(f"{self.label} expects {self.dt_name}: {e}") from e

    def _cast(self, arr: np.ndarray) -> np.ndarray:
        kind = arr.dtype.kind
        if kind not in self.kinds:
            raise InvalidArgument(
                f"{self.label} expects {self.dt_name} but got values of type {_describe(arr)}"
            )
        if kind in "OSU":
            return arr  # tf.constant encodes str and bytes itself
        if kind in "iu" and self.np_dtype.kind in "iu" and arr.size:
            limits = np.iinfo(self.np_dtype)
            if arr.min() < limits.min or arr.max() > limits.max:
                raise InvalidArgument(
                    f"{self.label} expects {self.dt_name} but got {arr.dtype.name} values outside its range"
                )
        return arr.astype(self.np_dtype)


class _Runner:
    """One signature's concrete function with its inputs in flat-argument order."""

    __slots__ = ("signature", "fn", "feeds", "flat", "outputs")

    def __init__(self, tf: Any, signature: Signature, fn: Any) -> None:
        self.signature = signature
        self.fn = fn
        keywords = list(getattr(fn, "_arg_keywords", None) or sorted(signature.inputs))
        self.feeds = tuple(_Feed(tf, signature, alias) for alias in keywords if alias in signature.inputs)
        # _call_flat skips the Python-side shape check, so, as in TF Serving's session, any shape
        # the graph accepts runs; it is private, hence the fallback to the public call.
        n_flat = len(getattr(fn, "inputs", ())) - len(getattr(fn, "captured_inputs", ()))
        self.flat = (
            hasattr(fn, "_call_flat")
            and sorted(keywords) == sorted(signature.inputs)
            and n_flat == len(keywords)
            and all(feed.constant is not None for feed in self.feeds)
        )
        self.outputs = tuple(signature.outputs)

    def __call__(self, inputs: Mapping[str, Any], output_keys: Sequence[str]) -> dict[str, np.ndarray]:
        if len(inputs) != len(self.feeds):
            self._check_input_names(inputs)
        try:
            tensors = [feed(inputs[feed.alias]) for feed in self.feeds]
        except KeyError:
            self._check_input_names(inputs)
            raise
        fn = self.fn
        control = current_control()
        manager = None if control is None else _watch(control)
        try:
            if self.flat:
                result = fn._call_flat(tensors, fn.captured_inputs)
            else:
                result = fn(**{feed.alias: t for feed, t in zip(self.feeds, tensors, strict=True)})
        except (TypeError, ValueError) as e:
            raise InvalidArgument(str(e)) from e
        except Exception as e:
            if control is not None and control.cancelled:
                raise DeadlineExceeded(control.reason or "Deadline Exceeded") from None
            raise tf_error(e) from e
        finally:
            if control is not None:
                _unwatch(control, manager)
        try:
            outputs = {key: result[key].numpy() for key in (output_keys or self.outputs)}
        except KeyError as e:
            raise InvalidArgument(
                f"output tensor alias not found in signature: {e.args[0]} Outputs expected to be in the set "
                f"{{{','.join(self.outputs)}}}."
            ) from None
        for key, value in outputs.items():
            if type(value) is not np.ndarray:  # rank-0 outputs come back as numpy scalars
                outputs[key] = np.asarray(value)
        return outputs

    def _check_input_names(self, inputs: Mapping[str, Any]) -> None:
        expected = {feed.alias for feed in self.feeds}
        missing, extra = sorted(expected - set(inputs)), sorted(set(inputs) - expected)
        if missing or extra:
            raise InvalidArgument(
                f"Signature '{self.signature.name}' expects inputs {{{','.join(sorted(expected))}}}; "
                f"missing: {{{','.join(missing)}}}, unexpected: {{{','.join(extra)}}}"
            )


class SavedModelServable(Servable):
    """A SavedModel version loaded with ``tf.saved_model.load``."""

    def __init__(
        self,
        name: str,
        version: int,
        path: str,
        signatures: dict[str, Signature],
        runners: dict[str, _Runner],
        root: Any,
    ) -> None:
        self.name = name
        self.version = version
        self.path = path
        self.signatures = signatures
        self._runners = runners
        # Signature functions read variables owned by the root object: it must outlive every call.
        self._root = root
        self.unloaded = False

    @classmethod
    def load(cls, name: str, version: int, path: str, tags: Sequence[str] = ("serve",)) -> SavedModelServable:
        """Load the SavedModel in ``path``; raise a ServingError naming the path if that fails."""
        meta_graph = read_meta_graph(path, tags)
        signatures = {
            key: signature_from_def(key, sig_def) for key, sig_def in sorted(meta_graph.signature_def.items())
        }
        import tensorflow as tf

        try:
            root = tf.saved_model.load(path, tags=list(tags))
        except Exception as e:
            raise tf_error(e, f"Failed to load SavedModel at {path}") from e
        runners = {
            key: _Runner(tf, signatures[key], fn) for key, fn in root.signatures.items() if key in signatures
        }
        return cls(name, version, path, signatures, runners, root)

    def run(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_keys: Sequence[str]
    ) -> dict[str, np.ndarray]:
        runner = self._runners.get(signature.name)
        if runner is None:
            raise InvalidArgument(
                f"Signature '{signature.name}' of model {self.name} version {self.version} cannot be run"
            )
        return runner(inputs, output_keys)

    def unload(self) -> None:
        # In-flight requests keep running on this object; memory goes with the last reference.
        self.unloaded = True
