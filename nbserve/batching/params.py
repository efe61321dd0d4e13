"""TF Serving's ``BatchingParameters`` as a small frozen dataclass, read from its text-proto form."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import text_format

from nbserve.errors import InvalidArgument
from nbserve.protos.tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

__all__ = ["BatchingParameters", "parse_batching_parameters", "read_batching_parameters"]

# Fields that are google.protobuf wrappers in the proto (unset -> the scheduler's default).
_WRAPPED = (
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
    "thread_pool_name",
    "enable_large_batch_splitting",
    "max_execution_batch_size",
)


def _default_threads() -> int:
    return os.cpu_count() or 1


@dataclass(frozen=True)
class BatchingParameters:
    """``tensorflow.serving.BatchingParameters`` with TF Serving's defaults.

    With ``enable_large_batch_splitting`` (as in TF), ``max_batch_size`` bounds one *request* and
    ``max_execution_batch_size`` (default: ``max_batch_size``) bounds an executed *batch*; a request larger
    than the room left in the open batch is split across batches. Without splitting,
    ``max_execution_batch_size`` is ignored and ``max_batch_size`` bounds both.
    """

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=_default_threads)
    thread_pool_name: str = "batch_threads"
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.allowed_batch_sizes, tuple):  # accept a list, keep the dataclass hashable
            object.__setattr__(self, "allowed_batch_sizes", tuple(self.allowed_batch_sizes))

    @property
    def batch_cap(self) -> int:
        """Most rows one executed batch may hold."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    def validate(self) -> BatchingParameters:
        """Raise ``InvalidArgument`` (TF's messages) when the parameters cannot be used; return ``self``."""
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) <= 0:
                raise InvalidArgument(f"{name} must be positive; was {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise InvalidArgument(
                f"batch_timeout_micros must be non-negative; was {self.batch_timeout_micros}"
            )
        cap_name = "max_batch_size"
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            cap_name = "max_execution_batch_size"
            if self.max_execution_batch_size <= 0:
                raise InvalidArgument(
                    f"max_execution_batch_size must be positive; was {self.max_execution_batch_size}"
                )
            if self.max_execution_batch_size > self.max_batch_size:
                raise InvalidArgument(
                    "When enable_large_batch_splitting is true, max_batch_size must be greater than or "
                    f"equal to max_execution_batch_size; was {self.max_batch_size} < "
                    f"{self.max_execution_batch_size}"
                )
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(s <= 0 for s in sizes):
                raise InvalidArgument(f"allowed_batch_sizes entries must be positive; got {list(sizes)}")
            if any(b <= a for a, b in zip(sizes, sizes[1:], strict=False)):
                raise InvalidArgument(
                    f"allowed_batch_sizes entries must be monotonically increasing; got {list(sizes)}"
                )
            if sizes[-1] != self.batch_cap:
                raise InvalidArgument(
                    f"Last entry in allowed_batch_sizes must match {cap_name}; last entry was {sizes[-1]}; "
                    f"expected {self.batch_cap}"
                )
        return self

    @classmethod
    def from_proto(cls, msg: session_bundle_config_pb2.BatchingParameters) -> BatchingParameters:
        """Map the proto message; unset wrapper fields take the defaults."""
        kwargs: dict[str, object] = {
            name: getattr(msg, name).value for name in _WRAPPED if msg.HasField(name)
        }
        return cls(
            allowed_batch_sizes=tuple(msg.allowed_batch_sizes),
            pad_variable_length_inputs=msg.pad_variable_length_inputs,
            **kwargs,  # type: ignore[arg-type]
        )

    def to_proto(self) -> session_bundle_config_pb2.BatchingParameters:
        msg = session_bundle_config_pb2.BatchingParameters()
        for name in _WRAPPED:
            value = getattr(self, name)
            if value is not None:
                getattr(msg, name).value = value
        msg.allowed_batch_sizes.extend(self.allowed_batch_sizes)
        msg.pad_variable_length_inputs = self.pad_variable_length_inputs
        return msg


def parse_batching_parameters(text: str, source: str = "<string>") -> BatchingParameters:
    """Parse ``BatchingParameters`` protobuf text (``max_batch_size { value: 128 } ...``).

    Raises ``InvalidArgument`` naming ``source`` and the offending line/field. Does not call
    ``validate()``: TF Serving checks the values when the model loads.
    """
    msg = session_bundle_config_pb2.BatchingParameters()
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        raise InvalidArgument(f"Invalid BatchingParameters text in {source}: {e}") from e
    return BatchingParameters.from_proto(msg)


def read_batching_parameters(path: str | os.PathLike[str]) -> BatchingParameters:
    """Read a ``--batching_parameters_file`` (protobuf text)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"Cannot read batching parameters file {os.fspath(path)}: {e}") from e
    return parse_batching_parameters(text, source=os.fspath(path))
