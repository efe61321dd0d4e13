"""A model held in Python as one serving ``tf.function``: named inputs with a fixed input signature
(so it traces once, whatever the batch size) and a dict of named outputs.

Export saves that function as a SignatureDef; live serving runs its concrete function. Accepted:
Keras 3 models, ``tf.Module``s (their ``__call__``), ``tf.function``s and plain Python callables
(numpy in, numpy or a dict of numpy out; live serving only, through ``tf.numpy_function``).

Calling convention, from the input signature: one ``TensorSpec`` -> ``f(x)``; a sequence ->
``f(x0, x1, ...)``; a mapping -> ``f(**inputs)``. A Keras model takes a sequence as a list and a
mapping as a dict, as ``Model.__call__`` does; a multi-input Keras model gets a dict keyed by its
input names.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import tensorflow as tf

from nbserve.errors import InvalidArgument

__all__ = ["InputSignature", "ServingFunction", "probe_array", "serving_function"]

InputSignature = tf.TensorSpec | Sequence[tf.TensorSpec] | Mapping[str, tf.TensorSpec]
Kind = Literal["keras", "module", "function", "python"]
Style = Literal["single", "positional", "named"]


@dataclass(frozen=True)
class ServingFunction:
    """``function`` takes the inputs (keyword = alias) and returns ``{output alias: tensor}``."""

    function: Any  # tf.types.experimental.PolymorphicFunction with a full input_signature
    kind: Kind
    # What holds the variables the function reads: the object a SavedModel must track.
    trackable: Any

    @property
    def concrete(self) -> Any:
        """The one concrete function (traced on first use)."""
        return self.function.get_concrete_function()

    @property
    def inputs(self) -> dict[str, tf.TensorSpec]:
        return {spec.name: spec for spec in self.function.input_signature}

    @property
    def outputs(self) -> dict[str, tf.TensorSpec]:
        return {alias: tf.TensorSpec.from_tensor(t) for alias, t in self.concrete.structured_outputs.items()}


def probe_array(shape: Sequence[int | None] | None, dtype: np.dtype) -> np.ndarray:
    """A zero (or empty-string) batch of ``shape``, with every unknown dimension (None, -1) as 1."""
    dims = (1,) if shape is None else tuple(1 if d is None or d < 0 else int(d) for d in shape)
    if np.dtype(dtype).kind in "OSU":
        return np.full(dims, b"", dtype=object)
    return np.zeros(dims, dtype)


def serving_function(
    obj: Any,
    *,
    input_signature: InputSignature | None = None,
    input_name: str | None = None,
    output_name: str | None = None,
) -> ServingFunction:
    """Wrap ``obj`` as a ServingFunction. The input signature comes from the object (a Keras model's
    inputs, a ``tf.function``'s ``input_signature``) unless ``input_signature`` is given.
    ``input_name`` / ``output_name`` rename the alias of a single input / output."""
    kind = _kind(obj)
    specs, style, keys = _input_specs(obj, kind, input_signature)
    aliases = _aliases(obj, kind, specs, style, keys)
    if input_name is not None:
        if len(aliases) != 1:
            raise InvalidArgument(
                f"input_name renames a single input; this model has {len(aliases)}: {aliases}. "
                "Name them in input_signature instead."
            )
        aliases = [input_name]
    call = _caller(obj, kind, style, keys, specs)
    output_names = _keras_output_names(obj) if kind == "keras" else None

    def serve(*tensors: tf.Tensor) -> dict[str, tf.Tensor]:
        outputs = _named_outputs(call(list(tensors)), output_names)
        if output_name is not None:
            if len(outputs) != 1:
                raise InvalidArgument(
                    f"output_name renames a single output; this model has {len(outputs)}: {list(outputs)}"
                )
            outputs = {output_name: next(iter(outputs.values()))}
        return outputs

    signature = [tf.TensorSpec(s.shape, s.dtype, name=a) for a, s in zip(aliases, specs, strict=True)]
    function = tf.function(serve, input_signature=signature)
    concrete = function.get_concrete_function()
    trackable = {"keras": obj, "module": obj, "function": list(concrete.variables), "python": None}[kind]
    return ServingFunction(function, kind, trackable)


def _kind(obj: Any) -> Kind:
    import keras

    if isinstance(obj, keras.Model):
        return "keras"
    if isinstance(obj, tf.types.experimental.PolymorphicFunction | tf.types.experimental.ConcreteFunction):
        return "function"
    if isinstance(obj, tf.Module):
        return "module"
    if callable(obj):
        return "python"
    raise InvalidArgument(
        f"Cannot serve a {type(obj).__name__}: pass a Keras model, a tf.Module, a tf.function or a callable"
    )


def _input_specs(
    obj: Any, kind: Kind, given: InputSignature | None
) -> tuple[list[tf.TensorSpec], Style, list[str]]:
    """The input specs, how the object takes them, and the keys of a mapping (Keras names)."""
    if given is None:
        given = _declared_signature(obj, kind)
    if isinstance(given, tf.TensorSpec):
        return [given], "single", []
    if isinstance(given, Mapping):
        _check_specs(given.values())
        return list(given.values()), "named", [str(k) for k in given]
    if isinstance(given, Sequence) and given:
        _check_specs(given)
        return list(given), "positional", []
    raise InvalidArgument(f"input_signature must be a tf.TensorSpec, a list or a dict of them; got {given!r}")


def _check_specs(specs: Any) -> None:
    for spec in specs:
        if not isinstance(spec, tf.TensorSpec):
            raise InvalidArgument(f"input_signature holds {spec!r}; use tf.TensorSpec(shape, dtype)")


def _declared_signature(obj: Any, kind: Kind) -> InputSignature:
    hint = "pass input_signature=tf.TensorSpec([None, ...], tf.float32) (a list or dict for several inputs)"
    if kind == "keras":
        inputs = getattr(obj, "inputs", None)  # Keras raises AttributeError until the model is built
        if not inputs:
            raise InvalidArgument(f"Keras model {obj.name!r} has no known inputs (never built): {hint}")
        specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in inputs]
        return specs[0] if len(specs) == 1 else {s.name: s for s in specs}
    if kind == "function" and isinstance(obj, tf.types.experimental.ConcreteFunction):
        args, kwargs = obj.structured_input_signature
        if kwargs:
            raise InvalidArgument(f"Concrete function {obj.name} takes keyword-only inputs: {hint}")
        return list(args)
    target = obj.__call__ if kind == "module" else obj
    declared = getattr(target, "input_signature", None)
    if not declared:
        raise InvalidArgument(f"{type(obj).__name__} {_label(obj)} declares no input signature: {hint}")
    return list(declared)


def _label(obj: Any) -> str:
    return repr(getattr(obj, "name", None) or getattr(obj, "__name__", "") or type(obj).__name__)


def _aliases(obj: Any, kind: Kind, specs: list[tf.TensorSpec], style: Style, keys: list[str]) -> list[str]:
    if style == "named":
        return keys
    params = _parameter_names(obj, kind)
    fallback = ["inputs"] if style == "single" else [f"input_{i}" for i in range(len(specs))]
    names = [spec.name or (params[i] if i < len(params) else fallback[i]) for i, spec in enumerate(specs)]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"Input names {names} are not unique: name them in input_signature")
    return names


def _parameter_names(obj: Any, kind: Kind) -> list[str]:
    if kind == "keras":
        return []
    target = {"function": getattr(obj, "python_function", None), "module": obj.__call__}.get(kind, obj)
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return []
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in positional and p.name != "self"]


def _caller(
    obj: Any, kind: Kind, style: Style, keys: list[str], specs: list[tf.TensorSpec]
) -> Callable[[list[Any]], Any]:
    """``call(inputs_in_order)`` in the object's own convention."""
    if kind == "python":
        return _numpy_caller(obj, style, keys, specs)
    if kind == "keras":

        def invoke(*args: Any, **kwargs: Any) -> Any:
            model_input = kwargs if kwargs else (list(args) if style == "positional" else args[0])
            return obj(model_input, training=False)
    else:
        invoke = obj
    return lambda inputs: _apply(invoke, style, keys, inputs)


def _apply(fn: Callable[..., Any], style: Style, keys: list[str], inputs: list[Any]) -> Any:
    if style == "named":
        return fn(**dict(zip(keys, inputs, strict=True)))
    return fn(*inputs)


def _numpy_caller(
    fn: Callable[..., Any], style: Style, keys: list[str], specs: list[tf.TensorSpec]
) -> Callable[[list[Any]], dict[str, Any]]:
    """A Python callable inside the graph through ``tf.numpy_function``. One call on a zero batch
    tells the output names and dtypes; calls are serialized, as arbitrary Python code may not be
    thread-safe."""
    sample = _named_outputs(
        _apply(fn, style, keys, [probe_array(s.shape, s.dtype.as_numpy_dtype) for s in specs]), None
    )
    arrays = {alias: np.asarray(value) for alias, value in sample.items()}
    dtypes = [tf.string if a.dtype.kind in "OSU" else tf.as_dtype(a.dtype) for a in arrays.values()]
    lock = threading.Lock()

    def run(*inputs: np.ndarray) -> list[np.ndarray]:
        with lock:
            result = _named_outputs(_apply(fn, style, keys, list(inputs)), list(arrays))
        try:
            return [
                np.asarray(result[alias], dtype.as_numpy_dtype)
                for alias, dtype in zip(arrays, dtypes, strict=True)
            ]
        except KeyError as e:
            raise InvalidArgument(f"The callable stopped returning output {e.args[0]!r}") from None

    def call(inputs: list[Any]) -> dict[str, Any]:
        outputs = tf.numpy_function(run, inputs, dtypes, stateful=True)
        for tensor, array in zip(outputs, arrays.values(), strict=True):
            tensor.set_shape([None] * array.ndim)
        return dict(zip(arrays, outputs, strict=True))

    return call


def _keras_output_names(model: Any) -> list[str] | None:
    """Functional models name their outputs, a Sequential model's output is its last layer;
    a subclassed model's outputs have no names."""
    import keras

    if isinstance(model, keras.Sequential):
        return [model.layers[-1].name] if model.layers else None
    names = getattr(model, "output_names", None)
    return list(names) if names else None


def _named_outputs(result: Any, names: list[str] | None) -> dict[str, Any]:
    """A dict stays; a list or tuple takes ``names`` (else ``output_<i>``); one value takes
    ``names[0]`` (else ``output_0``, as ``tf.saved_model.save`` names it)."""
    if isinstance(result, Mapping):
        return {str(k): v for k, v in result.items()}
    values = list(result) if isinstance(result, list | tuple) else [result]
    if not names or len(names) != len(values):
        names = [f"output_{i}" for i in range(len(values))]
    return dict(zip(names, values, strict=True))
