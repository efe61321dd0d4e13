"""The numpy side of batching: checking a task's inputs, merging and padding a batch, checking and
reassembling outputs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from nbserve.batching.params import BatchingParameters
from nbserve.errors import Internal, InvalidArgument

__all__ = ["check_outputs", "concat_outputs", "inspect_inputs", "merge_inputs", "pad_same_rank", "pad_to"]


def inspect_inputs(
    inputs: Mapping[str, np.ndarray], p: BatchingParameters
) -> tuple[int, tuple, dict[str, np.ndarray]]:
    """Task size (dim 0) and batching signature; raise InvalidArgument before the task joins a queue."""
    if not inputs:
        raise InvalidArgument("Batching Run() must have at least one input tensor")
    owned = type(inputs) is not dict
    if owned:
        inputs = dict(inputs)
    size = -1
    sig = []
    for name in sorted(inputs):
        a = inputs[name]
        if not isinstance(a, np.ndarray):
            if not owned:  # never mutate the caller's dict
                inputs, owned = dict(inputs), True
            a = inputs[name] = np.asarray(a)
        if a.ndim == 0:
            raise InvalidArgument(
                "Batching Run() input tensors must have at least one dimension; input "
                f"'{name}' is a scalar (batching joins requests along dimension 0: send it with a leading "
                "batch dimension, e.g. shape [1], or serve this model without batching)"
            )
        if size < 0:
            size = a.shape[0]
        elif a.shape[0] != size:
            got = ", ".join(f"'{k}': {np.shape(v)[0] if np.ndim(v) else 'scalar'}" for k, v in inputs.items())
            raise InvalidArgument(
                f"Batching Run() input tensors must have equal 0th-dimension size; got {got}"
            )
        dt = a.dtype
        # Fixed-width strings of different widths concatenate fine, so only their kind matters.
        sig.append(
            (
                name,
                dt.kind if dt.kind in "SU" else dt,
                a.ndim if p.pad_variable_length_inputs else a.shape[1:],
            )
        )
    if size > p.max_batch_size:
        if p.enable_large_batch_splitting:
            hint = (
                "send smaller requests or raise max_batch_size; executed batches stay within "
                "max_execution_batch_size"
            )
        else:
            hint = (
                f"send requests of at most {p.max_batch_size} rows, or raise max_batch_size (with "
                "enable_large_batch_splitting and max_execution_batch_size to keep executed batches small)"
            )
        raise InvalidArgument(
            f"Task size {size} is larger than maximum input batch size {p.max_batch_size} ({hint})"
        )
    return size, tuple(sig), inputs


def pad_to(a: np.ndarray, trailing: tuple[int, ...]) -> np.ndarray:
    """Pad dims >= 1 of ``a`` up to ``trailing`` with its first element (TF's variable-length padding)."""
    if a.shape[1:] == trailing:
        return a
    if a.size == 0:
        return np.empty((a.shape[0], *trailing), dtype=a.dtype)
    out = np.full((a.shape[0], *trailing), a.flat[0], dtype=a.dtype)
    out[tuple(slice(0, n) for n in a.shape)] = a
    return out


def pad_same_rank(parts: list[np.ndarray]) -> list[np.ndarray]:
    trailing = tuple(max(dims) for dims in zip(*(a.shape[1:] for a in parts), strict=True))
    return [pad_to(a, trailing) for a in parts]


def merge_inputs(
    inputs: list[dict[str, np.ndarray]], sizes: list[int], exec_size: int, pad_variable_length: bool
) -> dict[str, np.ndarray]:
    """Concatenate the tasks' inputs along dim 0, padding to ``exec_size`` rows with copies of row 0 of
    the last non-empty task (TF's allowed_batch_sizes padding)."""
    pad = exec_size - sum(sizes)
    source = max(i for i, n in enumerate(sizes) if n) if pad else -1
    merged = {}
    for name in inputs[0]:
        parts = [t[name] for t in inputs]
        if pad_variable_length:
            parts = pad_same_rank(parts)
        if pad:
            parts.append(np.repeat(parts[source][:1], pad, axis=0))
        merged[name] = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return merged


def check_outputs(out: Mapping[str, Any], n: int) -> dict[str, np.ndarray]:
    """The batch outputs as arrays whose dim 0 is the executed batch size ``n`` (else Internal)."""
    if not isinstance(out, Mapping):
        raise Internal(f"Batched run returned {type(out).__name__}, expected a mapping of output tensors")
    checked = {}
    for name, v in out.items():
        if not isinstance(v, np.ndarray):
            v = np.asarray(v)
        if v.ndim == 0 or v.shape[0] != n:
            raise Internal(
                f"Batched output tensor '{name}' has shape {list(v.shape)}, but its 0th dimension must equal "
                f"the batch size {n} to be split back into the batched requests"
            )
        checked[name] = v
    return checked


def concat_outputs(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Reassemble a split request's outputs from its chunks, in order."""
    outputs = {}
    for name in parts[0]:
        pieces = [p[name] for p in parts]
        try:
            if len({a.shape[1:] for a in pieces}) > 1:  # chunks padded to different lengths
                pieces = pad_same_rank(pieces)
            outputs[name] = np.concatenate(pieces)
        except ValueError as e:
            raise Internal(f"Cannot reassemble output tensor '{name}' of a split request: {e}") from e
    return outputs
