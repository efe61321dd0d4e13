"""A servable that wraps another (batching, metrics): same name, version and signatures, delegated unload."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nbserve.servables.base import Servable
from nbserve.signature import Signature


class WrappedServable(Servable):
    """Runs ``inner``; subclasses override ``run`` to add behaviour around it."""

    def __init__(self, inner: Servable) -> None:
        self.inner = inner
        self.name = inner.name
        self.version = inner.version
        self.signatures = inner.signatures

    def run(
        self, signature: Signature, inputs: Mapping[str, np.ndarray], output_keys: Sequence[str]
    ) -> dict[str, np.ndarray]:
        return self.inner.run(signature, inputs, output_keys)

    def unload(self) -> None:
        self.inner.unload()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} of {self.inner!r}>"
