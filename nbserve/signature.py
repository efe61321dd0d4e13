"""What a servable promises: its signatures, with TF Serving's names for inputs, outputs and dtypes."""

from __future__ import annotations

from dataclasses import dataclass, field

DEFAULT_SERVING_SIGNATURE = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"


@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a signature.

    ``dtype`` is the ``tensorflow.DataType`` enum value (DT_FLOAT = 1, DT_STRING = 7, ...);
    ``shape`` is ``None`` for unknown rank, with ``-1`` for each unknown dimension.
    """

    name: str
    dtype: int
    shape: tuple[int, ...] | None


@dataclass(frozen=True)
class Signature:
    """A named SignatureDef of a servable. ``definition`` is the serialized ``tensorflow.SignatureDef``
    exactly as the model declares it (what GetModelMetadata reports)."""

    name: str
    inputs: dict[str, TensorInfo]
    outputs: dict[str, TensorInfo]
    method_name: str = PREDICT_METHOD
    definition: bytes = field(default=b"", repr=False, compare=False)
