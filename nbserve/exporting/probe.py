"""Validation of a written version: load it back as the server does and run every signature once."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nbserve.codecs.dtypes import numpy_dtype
from nbserve.errors import FailedPrecondition, ServingError
from nbserve.exporting.images import ImageGeometry, probe_png
from nbserve.servables.function import probe_array
from nbserve.servables.saved_model import SavedModelServable
from nbserve.signature import Signature

__all__ = ["probe_version"]


def probe_version(
    name: str, version: int, path: str, keys: list[str], images: Mapping[str, ImageGeometry]
) -> dict[str, Signature]:
    """Load ``path`` and run the signatures ``keys`` on a batch of one: a generated PNG for the
    image-bytes signatures in ``images``, zeros for the others. Returns those signatures."""
    servable = SavedModelServable.load(name, version, path)
    for key in keys:
        signature = servable.signatures[key]
        if key in images:
            what = "a generated PNG"
            inputs = {alias: np.array([probe_png(images[key])], object) for alias in signature.inputs}
        else:
            what = "zeros"
            inputs = {a: probe_array(i.shape, numpy_dtype(i.dtype)) for a, i in signature.inputs.items()}
        try:
            servable.run(signature, inputs, [])
        except ServingError as e:
            raise FailedPrecondition(
                f"The export of {name} version {version} failed its probe: signature '{key}' on {what} "
                f"raised {e.code}: {e.message}. Nothing was written; fix the model, or pass "
                "probe=False to skip this check."
            ) from e
    return {key: servable.signatures[key] for key in keys}
