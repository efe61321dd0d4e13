"""Models saved to files: a Keras file (``.keras``, or legacy ``.h5``) or a TF checkpoint restored into
the model a ``build_fn`` builds."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from nbserve.errors import InvalidArgument, NotFound

__all__ = ["KERAS_SUFFIXES", "load_model_file"]

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
_NOT_OBJECTS = {"_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter"}


def load_model_file(path: str | os.PathLike[str], build_fn: Callable[[], Any] | None = None) -> Any:
    """The model saved at ``path``: a Keras file is loaded (uncompiled); a checkpoint (its prefix,
    e.g. ``ckpt/ckpt-3``, or a directory: its latest checkpoint) is restored into ``build_fn()``."""
    path = os.fspath(path)
    if path.lower().endswith(KERAS_SUFFIXES):
        if build_fn is not None:
            raise InvalidArgument(f"{path} is a Keras file, which holds its own model: leave out build_fn")
        return _load_keras(path)
    prefix = tf.train.latest_checkpoint(path) if os.path.isdir(path) else path
    if not prefix or not tf.io.gfile.exists(prefix + ".index"):
        raise NotFound(
            f"{path} is neither a Keras file ({', '.join(KERAS_SUFFIXES)}) nor a TF checkpoint. Pass a "
            "checkpoint prefix (the path tf.train.Checkpoint.save returned) or its directory."
        )
    if build_fn is None:
        raise InvalidArgument(
            f"{prefix} is a TF checkpoint, which holds weights only: pass build_fn, a function "
            "returning the model (built, with its variables) to restore them into"
        )
    model = build_fn()
    _restore(model, prefix)
    return model


def _load_keras(path: str) -> Any:
    import keras

    if not os.path.isfile(path):
        raise NotFound(f"No Keras file at {path}")
    try:
        return keras.saving.load_model(path, compile=False)
    except (ValueError, TypeError) as e:
        raise InvalidArgument(
            f"Cannot load the Keras file {path}: {e}. Custom layers must be registered with "
            "@keras.saving.register_keras_serializable() before export."
        ) from e


def _restore(model: Any, prefix: str) -> None:
    """Restore ``model`` from whichever top-level checkpoint object matches it (``model`` first:
    ``tf.train.Checkpoint(model=model).save(prefix)`` is the usual way to write one)."""
    if not getattr(model, "variables", None):
        raise InvalidArgument(
            "build_fn returned a model without variables: build it (give it a keras.Input, or call it "
            "once) so the checkpoint has something to restore into"
        )
    names = {name.split("/", 1)[0] for name, _ in tf.train.list_variables(prefix)} - _NOT_OBJECTS
    for name in sorted(names, key=lambda n: (n != "model", n)):
        try:
            status = tf.train.Checkpoint(**{name: model}).restore(prefix).expect_partial()
            status.assert_existing_objects_matched()
        except AssertionError:
            continue
        except ValueError as e:  # a variable of another shape
            raise InvalidArgument(f"build_fn's model does not match checkpoint {prefix}: {e}") from e
        return
    raise InvalidArgument(
        f"No object in checkpoint {prefix} (it holds: {', '.join(sorted(names)) or 'nothing'}) matches "
        "the variables of build_fn's model. Build the same architecture, or save it with "
        "tf.train.Checkpoint(model=model).save(prefix)."
    )
